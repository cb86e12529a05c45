package main

import (
	"bytes"
	"os"
	"strconv"
	"strings"
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

// processCPU returns the user plus system CPU time this process has used so far; set
// against wall time it shows whether a phase kept the cores busy or waited (for the disk,
// the network, or other processes on a shared machine).
func processCPU() (time.Duration, bool) { return rusageCPU(syscall.RUSAGE_SELF) }

// threadCPU returns the CPU time of the calling OS thread; callers lock their goroutine to
// it. It measures a single-core rate without counting the time other processes held the
// core.
func threadCPU() (time.Duration, bool) { return rusageCPU(rusageThread) }

// minorFaults returns the process's minor page faults so far (field 10 of /proc/self/stat):
// touching freshly mapped memory, for instance large buffers the runtime had returned to
// the OS, costs one per page, and shows up in CPU profiles as the copy that touched it.
func minorFaults() (uint64, bool) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may contain spaces; the fields after it are plain.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	fields := strings.Fields(string(b[i+1:]))
	// fields[0] is field 3 (state), so field 10 is fields[7].
	if len(fields) < 8 {
		return 0, false
	}
	n, err := strconv.ParseUint(fields[7], 10, 64)
	return n, err == nil
}
