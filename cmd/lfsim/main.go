// Command lfsim runs the HyParView massive-failure experiment of the membership package in
// the deterministic simulator and prints, per network size, the reliability of the first
// broadcast after crashing a fraction of the nodes at once and after some shuffle periods
// of healing, plus the active views' in-degree.
//
// Usage:
//
//	go run ./cmd/lfsim -n 1000,10000 -seed 1
//
// Flags choose the sizes (-n), failure levels (-fail, percent), healing points (-heal,
// shuffle periods), trials per level (-trials) and the model: -detect (how fast neighbours
// notice a crash without sending to it; 0 = only sends detect, as in the paper),
// -strict-flood, -no-heal, -paper (the paper's Neighbor priority rule), -loss. -json prints
// every sample instead of the tables. A timing run (-perf) checks the 10,000-node,
// 10-round target against its 60 s limit in the same run.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/lfnet/lfnet/internal/benchkit"
	"github.com/lfnet/lfnet/membership"
	"github.com/lfnet/lfnet/membership/sim"
)

// perfLimit is the limit for simulating 10,000 nodes with 10 broadcast rounds.
const perfLimit = 60 * time.Second

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "lfsim:", err)
		os.Exit(1)
	}
}

type options struct {
	sizes      []int
	seed       uint64
	failures   []float64
	heal       []int
	json       bool
	loss       float64
	detect     time.Duration
	strict     bool
	noHeal     bool
	perf       bool
	trials     int
	paper      bool
	perfNodes  int
	perfRounds int
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("lfsim", flag.ContinueOnError)
	sizes := fs.String("n", "1000,10000", "comma-separated network sizes")
	failures := fs.String("fail", "10,30,50,70,80,90,95", "comma-separated failure percentages")
	heal := fs.String("heal", "1,2,5", "comma-separated shuffle periods of healing to measure after")
	var o options
	fs.Uint64Var(&o.seed, "seed", 1, "random seed")
	fs.BoolVar(&o.json, "json", false, "print JSON instead of a table")
	fs.Float64Var(&o.loss, "loss", 0, "message loss probability")
	fs.DurationVar(&o.detect, "detect", 0, "neighbours learn of a crash within this time (0: only sends detect, as in the paper)")
	fs.BoolVar(&o.strict, "strict-flood", false, "forward a broadcast only on receipt, not to neighbours gained while it runs")
	fs.BoolVar(&o.noHeal, "no-heal", false, "do not answer NeedContacts with a Join to a live node")
	fs.IntVar(&o.trials, "trials", 10, "crash trials per failure level (each crashes a different random set)")
	fs.BoolVar(&o.paper, "paper", false, "paper-faithful promotion: high priority only with an empty active view (UrgentReplacement off)")
	fs.BoolVar(&o.perf, "perf", true, "also time N nodes with R broadcast rounds against the 60 s limit")
	fs.IntVar(&o.perfNodes, "perf-n", 10000, "nodes for the timing run")
	fs.IntVar(&o.perfRounds, "perf-rounds", 10, "broadcast rounds for the timing run")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	var err error
	if o.sizes, err = parseList(*sizes, strconv.Atoi); err != nil {
		return o, fmt.Errorf("-n: %w", err)
	}
	pcts, err := parseList(*failures, func(s string) (float64, error) { return strconv.ParseFloat(s, 64) })
	if err != nil {
		return o, fmt.Errorf("-fail: %w", err)
	}
	for _, p := range pcts {
		if p < 0 || p > 100 {
			return o, fmt.Errorf("-fail: %v%% out of range", p)
		}
		o.failures = append(o.failures, p/100)
	}
	if o.heal, err = parseList(*heal, strconv.Atoi); err != nil {
		return o, fmt.Errorf("-heal: %w", err)
	}
	return o, nil
}

func parseList[T any](s string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := parse(f)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

func (o options) simConfig(n int) sim.Config {
	mc := membership.DefaultConfig()
	mc.UrgentReplacement = !o.paper
	return sim.Config{
		Nodes:                 n,
		Seed:                  o.seed,
		Membership:            mc,
		Loss:                  o.loss,
		CrashDetection:        o.detect,
		Heal:                  !o.noHeal,
		ForwardToNewNeighbors: !o.strict,
	}
}

type report struct {
	Seed     uint64         `json:"seed"`
	Machine  string         `json:"machine"`
	Results  []sizeResult   `json:"results"`
	Perf     *perfResult    `json:"perf,omitempty"`
	Settings map[string]any `json:"settings"`
}

type sizeResult struct {
	sim.ExperimentResult
	WallSeconds float64 `json:"wall_seconds"`
}

type perfResult struct {
	benchkit.Timing
	LimitSeconds float64 `json:"limit_seconds"`
}

func run(args []string, w io.Writer) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	rep := report{
		Seed:    o.seed,
		Machine: fmt.Sprintf("%s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version()),
		Settings: map[string]any{
			"loss": o.loss, "crash_detection": o.detect.String(), "strict_flood": o.strict, "heal": !o.noHeal, "trials": o.trials, "urgent_replacement": !o.paper,
		},
	}
	for _, n := range o.sizes {
		start := time.Now()
		res, err := sim.Experiment{Config: o.simConfig(n), Failures: o.failures, HealPeriods: o.heal, Trials: o.trials}.Run()
		if err != nil {
			return err
		}
		rep.Results = append(rep.Results, sizeResult{ExperimentResult: res, WallSeconds: time.Since(start).Seconds()})
		if !o.json {
			table := benchkit.HyParViewTable{Seed: o.seed, Trials: o.trials, Heal: o.heal, Wall: time.Since(start)}
			if err := table.Write(w, res); err != nil {
				return err
			}
		}
	}
	if o.perf {
		t, err := benchkit.TimeRounds(o.simConfig(o.perfNodes), o.perfRounds)
		if err != nil {
			return err
		}
		p := perfResult{Timing: t, LimitSeconds: perfLimit.Seconds()}
		rep.Perf = &p
		if !o.json {
			verdict := "OK"
			if p.Seconds >= p.LimitSeconds {
				verdict = "OVER LIMIT"
			}
			fmt.Fprintf(w, "timing: N=%d, join + settle + %d broadcast rounds: %.1f s (limit %.0f s) %s; min reliability %.2f%%\n",
				p.Nodes, p.Rounds, p.Seconds, p.LimitSeconds, verdict, 100*p.MinReliability)
		}
	}
	if o.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintln(w, rep.Machine)
	return nil
}
