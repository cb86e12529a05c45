package benchkit

import (
	"syscall"
	"time"
)

// rusageThread is Linux's RUSAGE_THREAD, which package syscall does not name.
const rusageThread = 1

func rusageCPU(who int) (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}

// ProcessCPU returns the user plus system CPU time this process has used so far; set
// against wall time it shows whether a phase kept the cores busy or waited (for the disk,
// the network, or other processes on a shared machine).
func ProcessCPU() (time.Duration, bool) { return rusageCPU(syscall.RUSAGE_SELF) }

// ThreadCPU returns the CPU time of the calling OS thread; callers lock their goroutine to
// it. It measures a single-core rate without counting the time other processes held the
// core.
func ThreadCPU() (time.Duration, bool) { return rusageCPU(rusageThread) }
