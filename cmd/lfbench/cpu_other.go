//go:build !linux

package main

import "time"

// processCPU is not measured on this platform; figures then omit CPU times.
func processCPU() (time.Duration, bool) { return 0, false }

// threadCPU is not measured on this platform.
func threadCPU() (time.Duration, bool) { return 0, false }

// minorFaults is not measured on this platform.
func minorFaults() (uint64, bool) { return 0, false }
