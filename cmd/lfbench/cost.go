package main

// The cost scenario measures what one idle node costs, each figure in a fresh child
// process (lfbench re-executed with a hidden subcommand) so that it is the node's own and
// not the harness's: resident memory (VmRSS) and goroutines of a node holding 0, 1, 10 and
// 100 topics (each opened with LogSync, live, and Gossip, as cmd/lfchat opens its room),
// after --settle of idling next to one peer that holds every topic; and the start-up time
// from lfnet.New to the first NeighborUp of a node opening one topic, bootstrapping from
// that peer.
//
//	(a) RSS with N topics; target for 10 topics: < 40 MiB
//	(b) goroutines with N topics; target for 10 topics: < 200
//	(c) start-up time to the first NeighborUp (no target)
//
// A child without a node (topics "-1" in --topics) shows what the Go runtime and the
// binary cost before any node starts.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/lfnet/lfnet"
	"github.com/lfnet/lfnet/topics"
	"github.com/lfnet/lfnet/topics/gossip"
)

func init() {
	register(scenario{
		name:    "cost",
		summary: "cost per idle node (each in its own process): RSS and goroutines with 0, 1, 10, 100 topics; start-up time to the first NeighborUp",
		setup:   setupCost,
	})
}

// Targets of the issue for an idle node with costTargetTopics topics.
const (
	costTargetTopics = 10
	rssBound         = 40 * mib
	goroutineBound   = 200
)

// childCommand is the hidden subcommand that runs one measured node in a child process.
const childCommand = "__cost-node"

type costOptions struct {
	topics  string
	settle  time.Duration
	timeout time.Duration
}

func setupCost(fs *flag.FlagSet) runFunc {
	o := &costOptions{}
	fs.StringVar(&o.topics, "topics", "-1,0,1,10,100", "comma-separated topic counts, one child process each (-1: a child without a node)")
	fs.DurationVar(&o.settle, "settle", 5*time.Second, "how long each node idles before it is measured")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "give up on one child after this long")
	return o.run
}

// childResult is what a child prints as its last line.
type childResult struct {
	Topics       int     `json:"topics"`
	RSSBytes     uint64  `json:"rss_bytes"`
	PeakRSSBytes uint64  `json:"peak_rss_bytes"`
	Goroutines   int     `json:"goroutines"`
	HeapLive     uint64  `json:"heap_live_bytes"`
	GoTotal      uint64  `json:"go_total_bytes"`
	Neighbours   int     `json:"neighbours"`
	StartSeconds float64 `json:"start_seconds"` // lfnet.New to the first NeighborUp
}

func costTopic(i int) topics.Topic { return topics.FromString(fmt.Sprintf("lfbench cost topic %d", i)) }

func (o *costOptions) run(ctx context.Context, e *env) (err error) {
	var counts []int
	for _, f := range strings.Split(o.topics, ",") {
		n, convErr := strconv.Atoi(strings.TrimSpace(f))
		if convErr != nil || n < -1 {
			return fmt.Errorf("--topics %q: want counts >= -1", o.topics)
		}
		counts = append(counts, n)
	}
	if o.settle < 0 || o.timeout <= 0 {
		return errors.New("--settle must not be negative and --timeout must be positive")
	}
	e.report.Config["topic_counts"], e.report.Config["settle"] = counts, o.settle.String()
	e.report.Config["topic_handles"] = "LogSync (live) + Gossip per topic"

	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	// The peer every child meets: it holds every topic a child may open.
	peer, err := lfnet.New(ctx, nodeOptions(nil, 0)...)
	if err != nil {
		return fmt.Errorf("peer node: %w", err)
	}
	defer func() { err = errors.Join(err, peer.Close()) }()
	most := 0
	for _, c := range counts {
		most = max(most, c)
	}
	closeHandles, err := openTopics(ctx, peer, most)
	defer closeHandles()
	if err != nil {
		return fmt.Errorf("peer node: %w", err)
	}

	for _, c := range counts {
		args := []string{childCommand, "--topics", strconv.Itoa(c), "--boot", bootAddr(peer), "--settle", o.settle.String()}
		if e.prof != nil {
			args = append(args, "--heap-profile", e.prof.path(fmt.Sprintf("topics%d", c), "heap"),
				"--cpu-profile", e.prof.path(fmt.Sprintf("topics%d", c), "cpu"))
		}
		res, err := runChild(ctx, o.timeout, self, args)
		if err != nil {
			return fmt.Errorf("child with %d topics: %w", c, err)
		}
		addCostFigures(e, res)
	}
	return nil
}

func addCostFigures(e *env, r childResult) {
	tag := fmt.Sprintf("%d topics", r.Topics)
	if r.Topics < 0 {
		tag = "no node"
	}
	details := map[string]float64{
		"peak_rss_mib": mibOf(r.PeakRSSBytes), "heap_live_mib": mibOf(r.HeapLive), "go_total_mib": mibOf(r.GoTotal),
		"neighbours": float64(r.Neighbours), "goroutines": float64(r.Goroutines),
	}
	judged := r.Topics == costTargetTopics
	e.add(Figure{ID: "a", Name: "idle RSS", Transport: tag, Unit: "MiB", Measured: mibOf(r.RSSBytes),
		Limit: mibOf(rssBound), LimitName: "issue", Target: 1, Informational: !judged, Details: details})
	e.add(Figure{ID: "b", Name: "idle goroutines", Transport: tag, Unit: "goroutines", Measured: float64(r.Goroutines),
		Limit: goroutineBound, LimitName: "issue", Target: 1, Informational: !judged})
	if r.Topics > 0 {
		e.add(Figure{ID: "c", Name: "start-up to first NeighborUp", Transport: tag, Unit: "ms", Measured: 1000 * r.StartSeconds,
			Informational: true, LimitName: "none"})
	}
}

// runChild runs one child and returns its result, with its stderr in the error.
func runChild(ctx context.Context, timeout time.Duration, self string, args []string) (childResult, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, self, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return childResult{}, fmt.Errorf("%w; stderr: %s", err, strings.TrimSpace(stderr.String()))
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var res childResult
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		return childResult{}, fmt.Errorf("child output %q: %w", stdout.String(), err)
	}
	return res, nil
}

// openTopics opens LogSync (live) and Gossip on count topics of n; the returned function
// closes them.
func openTopics(ctx context.Context, n *lfnet.Node, count int) (func(), error) {
	var logs []*lfnet.LogSync
	var gs []*gossip.Handle
	closeAll := func() {
		for _, g := range gs {
			_ = g.Close()
		}
		for _, l := range logs {
			_ = l.Close()
		}
	}
	for i := range count {
		l, err := n.LogSync(ctx, costTopic(i), true)
		if err != nil {
			return closeAll, fmt.Errorf("log sync on topic %d: %w", i, err)
		}
		logs = append(logs, l)
		g, err := n.Gossip(ctx, costTopic(i))
		if err != nil {
			return closeAll, fmt.Errorf("gossip on topic %d: %w", i, err)
		}
		gs = append(gs, g)
	}
	return closeAll, nil
}

// runCostChild is the child process: start a node, open the topics, time the first
// NeighborUp, idle, measure, print the result as one JSON line on stdout.
func runCostChild(ctx context.Context, args []string, stdout io.Writer) (err error) {
	fs := flag.NewFlagSet(childCommand, flag.ContinueOnError)
	count := fs.Int("topics", 0, "topics to open (-1: no node)")
	boot := fs.String("boot", "", "bootstrap address")
	settle := fs.Duration("settle", 5*time.Second, "idle time before measuring")
	heapProfile := fs.String("heap-profile", "", "write a heap profile here after measuring")
	cpuProfile := fs.String("cpu-profile", "", "write a CPU profile of start-up and idling here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	res := childResult{Topics: *count}
	if *cpuProfile != "" {
		stop, err := cpuProfileTo(*cpuProfile)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, stop()) }()
	}
	if *count >= 0 {
		gauge, metricsOpt := newNeighbourGauge()
		start := time.Now()
		n, err := lfnet.New(ctx, append(nodeOptions(nil, 0, *boot), metricsOpt)...)
		if err != nil {
			return fmt.Errorf("node: %w", err)
		}
		defer func() { err = errors.Join(err, n.Close()) }()
		closeHandles, err := openTopics(ctx, n, *count)
		defer closeHandles()
		if err != nil {
			return err
		}
		if *count > 0 {
			err := pollUntil(ctx, time.Minute, time.Millisecond, "first NeighborUp", func() (bool, error) {
				nb, err := gauge.neighbours()
				return nb > 0, err
			})
			if err != nil {
				return err
			}
			res.StartSeconds = time.Since(start).Seconds()
		}
		select {
		case <-time.After(*settle): // idling is what is measured
		case <-ctx.Done():
			return ctx.Err()
		}
		if res.Neighbours, err = gauge.neighbours(); err != nil {
			return err
		}
		if err := measureProcess(&res, *heapProfile); err != nil {
			return err
		}
	} else if err := measureProcess(&res, *heapProfile); err != nil {
		return err
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", b)
	return err
}

// measureProcess fills in the process's own figures. The GC first, so that RSS is not
// inflated by garbage the next cycle would free; RSS still includes what the runtime
// keeps mapped but unused until the scavenger returns it.
func measureProcess(res *childResult, heapProfile string) error {
	runtime.GC()
	res.Goroutines = runtime.NumGoroutine()
	m := readMetrics()
	res.HeapLive, res.GoTotal = metricValue(m[1]), metricValue(m[2])
	var err error
	if res.RSSBytes, res.PeakRSSBytes, err = procRSS(); err != nil {
		return err
	}
	if heapProfile != "" {
		return heapProfileTo(heapProfile)
	}
	return nil
}

// procRSS returns VmRSS and VmHWM of /proc/self/status in bytes.
func procRSS() (rss, peak uint64, err error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0, fmt.Errorf("rss: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("rss: %s: %w", k, err)
		}
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			peak = kb << 10
		}
	}
	if rss == 0 {
		return 0, 0, errors.New("rss: no VmRSS in /proc/self/status")
	}
	return rss, peak, sc.Err()
}
