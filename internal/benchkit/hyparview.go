package benchkit

import (
	"fmt"
	"io"
	"time"

	"github.com/lfnet/lfnet/membership/sim"
)

// HyParViewTable describes how a massive-failure experiment was run, for its table.
type HyParViewTable struct {
	Seed   uint64
	Trials int
	// Heal are the experiment's HealPeriods.
	Heal []int
	// Wall is how long the experiment took.
	Wall time.Duration
}

// Write prints res as the membership issue's table: reliability of the first broadcast
// after the crash and after each healing point, components, and in-degree.
func (t HyParViewTable) Write(w io.Writer, res sim.ExperimentResult) error {
	if len(t.Heal) == 0 {
		return fmt.Errorf("%w: a table needs at least one healing point", sim.ErrInvalid)
	}
	q := res.Quiescent
	fmt.Fprintf(w, "N = %d (seed %d, %d trials per level, %.1f s wall)\n", res.Nodes, t.Seed, t.Trials, t.Wall.Seconds())
	fmt.Fprintf(w, "quiescent: components %d, symmetry %.2f%%, reliability %.2f%%, in-degree mean %.2f max %d\n\n",
		q.Metrics.Components, 100*q.Metrics.Symmetry, 100*q.Reliability, q.Metrics.InDegreeMean, q.Metrics.InDegreeMax)
	fmt.Fprintf(w, "| failed | first broadcast mean (min) |")
	for _, p := range t.Heal {
		fmt.Fprintf(w, " after %d shuffle mean (min) |", p)
	}
	fmt.Fprintf(w, " components first")
	for _, p := range t.Heal {
		fmt.Fprintf(w, " / %d", p)
	}
	fmt.Fprintf(w, " (max) | in-degree mean / max after %d |\n", t.Heal[len(t.Heal)-1])
	fmt.Fprintf(w, "|---|---|")
	for range t.Heal {
		fmt.Fprintf(w, "---|")
	}
	fmt.Fprintln(w, "---|---|")
	for _, f := range res.Failures {
		fmt.Fprintf(w, "| %2.0f%% | %s |", 100*f.Failure, pct(f.First))
		comps := fmt.Sprint(f.First.MaxComponents)
		for _, h := range f.Healed {
			fmt.Fprintf(w, " %s |", pct(h))
			comps += fmt.Sprintf(" / %d", h.MaxComponents)
		}
		last := f.Healed[len(f.Healed)-1]
		fmt.Fprintf(w, " %s | %.2f / %d |\n", comps, last.InDegreeMean, last.InDegreeMax)
	}
	_, err := fmt.Fprintln(w)
	return err
}

func pct(s sim.Summary) string {
	return fmt.Sprintf("%.2f%% (%.2f%%)", 100*s.MeanReliability, 100*s.MinReliability)
}

// Timing is one timing run of the simulator.
type Timing struct {
	Nodes          int     `json:"nodes"`
	Rounds         int     `json:"rounds"`
	Seconds        float64 `json:"seconds"`
	MinReliability float64 `json:"min_reliability"`
}

// TimeRounds measures the membership issue's performance target: build and settle an
// overlay of cfg.Nodes nodes, then run rounds broadcasts, timed together.
func TimeRounds(cfg sim.Config, rounds int) (Timing, error) {
	start := time.Now()
	s, err := sim.New(cfg)
	if err != nil {
		return Timing{}, err
	}
	if err := s.Bootstrap(); err != nil {
		return Timing{}, err
	}
	s.RunFor(3 * cfg.Membership.ShuffleInterval)
	minRel := 1.0
	for range rounds {
		minRel = min(minRel, s.Broadcast(s.RandomLive(), 5*time.Second).Reliability())
	}
	return Timing{Nodes: cfg.Nodes, Rounds: rounds, Seconds: time.Since(start).Seconds(), MinReliability: minRel}, nil
}
