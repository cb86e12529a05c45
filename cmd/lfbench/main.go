// Command lfbench is lfnet's benchmark harness. Each scenario prints every figure it
// measures next to the limit that figure is judged against, measured in the same run on the
// same machine where the limit is a machine property (a signature verification rate, a raw
// stream's throughput), so that a figure from a loaded or slow machine is still meaningful.
//
// Usage:
//
//	lfbench <scenario> [flags]
//	lfbench help                 list the scenarios
//	lfbench <scenario> --help    list a scenario's flags
//
// Flags every scenario takes:
//
//	--json FILE     also write the report as JSON to FILE
//	--profile DIR   write CPU and heap profiles of the timed phases into DIR
//	--fail-on-miss  exit with status 3 when a figure misses its target
//
// Scenarios (each file's comment gives its figures, flags and default sizes):
//
//	sync         initial sync throughput against the ed25519 verification limit, large-body
//	             sync throughput against raw libp2p stream throughput, and peak heap while
//	             syncing a million operations (sync.go)
//	convergence  50 and 100 real nodes on 1 and 10 topics publishing steadily: time until
//	             every node holds each operation (p50, p99) and wire bytes per delivered
//	             operation (convergence.go)
//	gossip       50 nodes, lfnet gossip beside plain GossipSub on the same hosts in the
//	             same run, steady and under 20% churn (gossipscenario.go)
//	membership   the HyParView massive-failure table for N = 1,000 and 10,000 from the
//	             simulator, and the 10,000-node timing target (membership.go)
//	cost         an idle node's RSS and goroutines with 0, 1, 10 and 100 topics, each in
//	             its own child process, and start-up time to the first NeighborUp (cost.go)
//
// The network scenarios run real lfnet.Node instances in this process, listening on
// 127.0.0.1 only, joined through bootstrap addresses and discovery (nodes.go).
//
// Example:
//
//	go run ./cmd/lfbench sync --transport both --json sync.json
//	go run ./cmd/lfbench convergence --nodes 100 --topics 1 --profile prof
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

// Exit statuses besides 0 and 1 (a failed run).
const (
	exitUsage = 2 // bad command line
	exitMiss  = 3 // --fail-on-miss and a figure missed its target
)

// errUsage marks command line errors; the message was already printed with the usage.
var errUsage = errors.New("usage error")

// errMissed is returned with --fail-on-miss when a figure missed its target.
var errMissed = errors.New("a figure missed its target")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		os.Exit(exitUsage)
	case errors.Is(err, errMissed):
		fmt.Fprintln(os.Stderr, "lfbench:", err)
		os.Exit(exitMiss)
	default:
		fmt.Fprintln(os.Stderr, "lfbench:", err)
		os.Exit(1)
	}
}

// scenario is one benchmark of the harness. setup registers the scenario's own flags and
// returns the function that runs it once the flags are parsed.
type scenario struct {
	name    string
	summary string
	setup   func(fs *flag.FlagSet) runFunc
}

// runFunc runs a scenario, handing each figure to env.add as soon as it is measured so that
// a failure later in the run still leaves the earlier figures in the report.
type runFunc func(ctx context.Context, env *env) error

// scenarios is the registry; each scenario's file adds itself in an init function.
var scenarios = map[string]scenario{}

func register(s scenario) {
	if _, dup := scenarios[s.name]; dup {
		panic("lfbench: scenario registered twice: " + s.name)
	}
	scenarios[s.name] = s
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: lfbench <scenario> [flags]   (lfbench <scenario> --help lists its flags)")
	fmt.Fprintln(w, "\nscenarios:")
	names := make([]string, 0, len(scenarios))
	for n := range scenarios {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, scenarios[n].summary)
	}
	fmt.Fprintln(w, "\nflags of every scenario:")
	fmt.Fprintln(w, "  --json FILE     also write the report as JSON to FILE")
	fmt.Fprintln(w, "  --profile DIR   write CPU and heap profiles of the timed phases into DIR")
	fmt.Fprintln(w, "  --fail-on-miss  exit with status 3 when a figure misses its target")
}

// run is main without the process exit: the table goes to stdout, progress to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return errUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return nil
	case childCommand: // the cost scenario's child process, not for people
		return runCostChild(ctx, args[1:], stdout)
	}
	sc, ok := scenarios[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "lfbench: unknown scenario %q\n\n", args[0])
		usage(stderr)
		return errUsage
	}
	fs := flag.NewFlagSet("lfbench "+sc.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	jsonPath := fs.String("json", "", "also write the report as JSON to `FILE`")
	profileDir := fs.String("profile", "", "write CPU and heap profiles of the timed phases into `DIR`")
	failOnMiss := fs.Bool("fail-on-miss", false, "exit with status 3 when a figure misses its target")
	runner := sc.setup(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: lfbench %s [flags]\n\n%s\n\nflags:\n", sc.name, sc.summary)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "lfbench %s: unexpected arguments %q\n", sc.name, fs.Args())
		fs.Usage()
		return errUsage
	}

	e := &env{progress: stderr, report: newReport(sc.name, args)}
	if *profileDir != "" {
		if err := os.MkdirAll(*profileDir, 0o755); err != nil {
			return fmt.Errorf("profile directory: %w", err)
		}
		e.prof = &profiler{dir: *profileDir, prefix: sc.name}
	}
	runErr := runner(ctx, e)
	e.report.finish()
	if err := e.report.writeTable(stdout); err != nil {
		return errors.Join(runErr, fmt.Errorf("write table: %w", err))
	}
	if *jsonPath != "" {
		if err := e.report.writeJSON(*jsonPath); err != nil {
			return errors.Join(runErr, err)
		}
	}
	if runErr != nil {
		return fmt.Errorf("%s: %w", sc.name, runErr)
	}
	if *failOnMiss && e.report.missed() > 0 {
		return fmt.Errorf("%w: %d of %d", errMissed, e.report.missed(), len(e.report.Figures))
	}
	return nil
}

// env is what a running scenario reports to.
type env struct {
	progress io.Writer
	report   *Report
	prof     *profiler // nil without --profile
}

// logf prints a progress line; progress never goes to the table's writer.
func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.progress, "lfbench %s: %s\n", e.report.Scenario, fmt.Sprintf(format, args...))
}

// add records a measured figure and echoes it at once, so a long run shows results early.
func (e *env) add(f Figure) {
	f.finish()
	e.report.Figures = append(e.report.Figures, f)
	e.logf("%s [%s]: %s", f.Name, f.Transport, strings.TrimSpace(f.summary()))
}

// note adds a line to the report's notes.
func (e *env) note(format string, args ...any) {
	e.report.Notes = append(e.report.Notes, fmt.Sprintf(format, args...))
}
