package main

import "github.com/lfnet/lfnet/internal/benchkit"

// The scenarios' CPU clocks; they live in benchkit, which the package benchmarks share.
var (
	processCPU = benchkit.ProcessCPU
	threadCPU  = benchkit.ThreadCPU
)
