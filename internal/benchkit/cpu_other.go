//go:build !linux

package benchkit

import "time"

// ProcessCPU is not measured on this platform; figures then omit CPU times.
func ProcessCPU() (time.Duration, bool) { return 0, false }

// ThreadCPU is not measured on this platform.
func ThreadCPU() (time.Duration, bool) { return 0, false }
