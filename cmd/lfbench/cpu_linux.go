package main

import (
	"bytes"
	"os"
	"strconv"
	"strings"
)

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
