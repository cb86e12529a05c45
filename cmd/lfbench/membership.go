package main

// The membership scenario is the membership issue's HyParView table, from the
// deterministic simulator (membership/sim) exactly as cmd/lfsim prints it, for each of
// --n (1,000 and 10,000 nodes), plus the targets as figures:
//
//	(a) quiescent overlay: broadcast reliability 100%
//	(b) crash 50% at once: first broadcast reliability >= 99% (mean over trials)
//	(c) crash 80% at once: first broadcast reliability >= 90% (mean over trials)
//	(d) two shuffle periods after crashing up to 90%: reliability 100% (worst trial)
//	(e) 10,000 nodes, joins + settling + 10 broadcast rounds simulated in < 60 s
//
// Figures are in virtual time and reproducible for a seed, except (e), which is wall time.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lfnet/lfnet/internal/benchkit"
	"github.com/lfnet/lfnet/membership"
	"github.com/lfnet/lfnet/membership/sim"
)

func init() {
	register(scenario{
		name:    "membership",
		summary: "HyParView massive-failure table (simulated) for N = 1,000 and 10,000, and the 10,000-node timing target",
		setup:   setupMembership,
	})
}

// simTimingLimit is the membership issue's limit for simulating 10,000 nodes with 10
// broadcast rounds.
const simTimingLimit = 60 * time.Second

type membershipOptions struct {
	sizes, failures, heal string
	seed                  uint64
	trials                int
	timingNodes           int
	timingRounds          int
}

func setupMembership(fs *flag.FlagSet) runFunc {
	o := &membershipOptions{}
	fs.StringVar(&o.sizes, "n", "1000,10000", "comma-separated network sizes")
	fs.StringVar(&o.failures, "fail", "10,30,50,70,80,90,95", "comma-separated percentages of nodes crashed at once")
	fs.StringVar(&o.heal, "heal", "1,2,5", "comma-separated shuffle periods of healing to measure after")
	fs.Uint64Var(&o.seed, "seed", 1, "random seed")
	fs.IntVar(&o.trials, "trials", 10, "crash trials per failure level")
	fs.IntVar(&o.timingNodes, "timing-n", 10000, "(e) nodes of the timing run (0: skip it)")
	fs.IntVar(&o.timingRounds, "timing-rounds", 10, "(e) broadcast rounds of the timing run")
	return o.run
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("invalid number %q", f)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty list %q", s)
	}
	return out, nil
}

func simConfig(n int, seed uint64) sim.Config {
	return sim.Config{Nodes: n, Seed: seed, Membership: membership.DefaultConfig(), Heal: true, ForwardToNewNeighbors: true}
}

func (o *membershipOptions) run(ctx context.Context, e *env) error {
	sizes, err := intList(o.sizes)
	if err != nil {
		return fmt.Errorf("--n: %w", err)
	}
	pcts, err := intList(o.failures)
	if err != nil || slices.ContainsFunc(pcts, func(p int) bool { return p > 100 }) {
		return fmt.Errorf("--fail %q: want percentages", o.failures)
	}
	heal, err := intList(o.heal)
	if err != nil {
		return fmt.Errorf("--heal: %w", err)
	}
	if o.trials < 1 {
		return fmt.Errorf("--trials %d: want at least 1", o.trials)
	}
	failures := make([]float64, len(pcts))
	for i, p := range pcts {
		failures[i] = float64(p) / 100
	}
	e.report.Config["sizes"], e.report.Config["fail_percent"], e.report.Config["heal_periods"] = sizes, pcts, heal
	e.report.Config["seed"], e.report.Config["trials"] = o.seed, o.trials

	for _, n := range sizes {
		if err := ctx.Err(); err != nil {
			return err
		}
		stop, err := e.prof.startCPU(fmt.Sprintf("n%d", n))
		if err != nil {
			return err
		}
		start := time.Now()
		res, err := sim.Experiment{Config: simConfig(n, o.seed), Failures: failures, HealPeriods: heal, Trials: o.trials}.Run()
		wall := time.Since(start)
		if err := stop(); err != nil {
			return err
		}
		if err != nil {
			return fmt.Errorf("N = %d: %w", n, err)
		}
		if err := e.prof.writeHeap(fmt.Sprintf("n%d-end", n)); err != nil {
			return err
		}
		var table strings.Builder
		if err := (benchkit.HyParViewTable{Seed: o.seed, Trials: o.trials, Heal: heal, Wall: wall}).Write(&table, res); err != nil {
			return err
		}
		e.report.Tables = append(e.report.Tables, table.String())
		addMembershipFigures(e, n, res, pcts, heal, wall)
	}
	if o.timingNodes > 0 {
		stop, err := e.prof.startCPU("timing")
		if err != nil {
			return err
		}
		t, err := benchkit.TimeRounds(simConfig(o.timingNodes, o.seed), o.timingRounds)
		if err := errors.Join(err, stop()); err != nil {
			return err
		}
		e.add(Figure{
			ID: "e", Name: fmt.Sprintf("simulate N = %d: joins, settling, %d broadcast rounds", t.Nodes, t.Rounds),
			Unit: "s", Measured: t.Seconds, Limit: simTimingLimit.Seconds(), LimitName: "issue limit", Target: 1,
			Details: map[string]float64{"min_reliability": t.MinReliability},
		})
	}
	return nil
}

// addMembershipFigures judges one size's result against the targets; a target
// whose failure level or healing point was not run is left out.
func addMembershipFigures(e *env, n int, res sim.ExperimentResult, pcts, heal []int, wall time.Duration) {
	tag := fmt.Sprintf("N=%d", n)
	q := res.Quiescent
	e.add(Figure{ID: "a", Name: "quiescent broadcast reliability", Transport: tag, Unit: "%",
		Measured: 100 * q.Reliability, Limit: 100, LimitName: "issue", Target: 1, AtLeast: true,
		Details: map[string]float64{"components": float64(q.Metrics.Components), "symmetry_percent": 100 * q.Metrics.Symmetry, "wall_seconds": wall.Seconds()}})
	for _, c := range []struct {
		id    string
		pct   int
		bound float64
	}{{"b", 50, 99}, {"c", 80, 90}} {
		i := slices.Index(pcts, c.pct)
		if i < 0 {
			continue
		}
		f := res.Failures[i]
		e.add(Figure{ID: c.id, Name: fmt.Sprintf("crash %d%%: first broadcast reliability (mean)", c.pct), Transport: tag, Unit: "%",
			Measured: 100 * f.First.MeanReliability, Limit: c.bound, LimitName: "issue", Target: 1, AtLeast: true,
			Details: map[string]float64{"worst_trial_percent": 100 * f.First.MinReliability, "max_components": float64(f.First.MaxComponents)}})
	}
	if h := slices.Index(heal, 2); h >= 0 {
		worst, comps := 1.0, 0
		for i, p := range pcts {
			if p <= 90 {
				worst = min(worst, res.Failures[i].Healed[h].MinReliability)
				comps = max(comps, res.Failures[i].Healed[h].MaxComponents)
			}
		}
		e.add(Figure{ID: "d", Name: "2 shuffles after crashing <= 90%: reliability (worst trial)", Transport: tag, Unit: "%",
			Measured: 100 * worst, Limit: 100, LimitName: "issue", Target: 1, AtLeast: true,
			Details: map[string]float64{"max_components": float64(comps)}})
	}
}
