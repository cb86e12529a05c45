//go:build !linux

package main

// minorFaults is not measured on this platform.
func minorFaults() (uint64, bool) { return 0, false }
