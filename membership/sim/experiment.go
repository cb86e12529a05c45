package sim

import (
	"fmt"
	"time"
)

// Experiment is the paper's massive-failure experiment: build an overlay, let it settle,
// crash a fraction of the nodes at once, and measure the first broadcast after the crash
// and the overlay after some shuffle periods of healing. Each failure level is repeated
// Trials times on copies of the same settled overlay, each crashing a different random set.
type Experiment struct {
	// Config describes the network.
	Config Config
	// Failures are the fractions of nodes crashed at once (e.g. 0.5 for 50%).
	Failures []float64
	// HealPeriods lists, in increasing order, after how many shuffle periods since the
	// crash the overlay is measured again.
	HealPeriods []int
	// Trials is how many times each failure level is run (default 1).
	Trials int
	// SettlePeriods is how many shuffle periods the overlay runs after the joins before it is
	// measured at quiescence (default 3).
	SettlePeriods int
	// BroadcastWindow is how long a broadcast may run before the nodes reached are counted
	// (default 5 s of virtual time).
	BroadcastWindow time.Duration
}

// Sample is one measurement: the active-view graph and the reliability of a broadcast
// from a random live node started right after the graph was measured.
type Sample struct {
	Metrics     Metrics
	Reliability float64
}

// Summary aggregates the samples of all trials taken at the same point.
type Summary struct {
	// MeanReliability and MinReliability are over trials.
	MeanReliability float64
	MinReliability  float64
	// MaxComponents is the worst number of components over trials.
	MaxComponents int
	// MinSymmetry is the worst active-view symmetry over trials.
	MinSymmetry float64
	// InDegreeMean is averaged over trials; InDegreeMax is the maximum over trials.
	InDegreeMean float64
	InDegreeMax  int
	Samples      []Sample
}

func (s *Summary) add(x Sample) {
	if len(s.Samples) == 0 {
		s.MinReliability, s.MinSymmetry = x.Reliability, x.Metrics.Symmetry
	}
	s.Samples = append(s.Samples, x)
	n := float64(len(s.Samples))
	s.MeanReliability += (x.Reliability - s.MeanReliability) / n
	s.InDegreeMean += (x.Metrics.InDegreeMean - s.InDegreeMean) / n
	s.MinReliability = min(s.MinReliability, x.Reliability)
	s.MinSymmetry = min(s.MinSymmetry, x.Metrics.Symmetry)
	s.MaxComponents = max(s.MaxComponents, x.Metrics.Components)
	s.InDegreeMax = max(s.InDegreeMax, x.Metrics.InDegreeMax)
}

// FailureResult is the outcome for one failure level.
type FailureResult struct {
	Failure float64
	// Crashed is the number of nodes crashed per trial.
	Crashed int
	// First is the first broadcast right after the crash (the graph is measured just
	// before it, with the dead links not yet detected).
	First Summary
	// Healed[i] is measured HealPeriods[i] shuffle periods after the crash.
	Healed []Summary
}

// ExperimentResult is the outcome of an Experiment.
type ExperimentResult struct {
	Nodes int
	// Quiescent is the overlay after joins and settling, before any crash.
	Quiescent Sample
	Failures  []FailureResult
}

// Run executes the experiment. It is deterministic for a given Experiment.
func (e Experiment) Run() (ExperimentResult, error) {
	if e.SettlePeriods == 0 {
		e.SettlePeriods = 3
	}
	if e.BroadcastWindow == 0 {
		e.BroadcastWindow = 5 * time.Second
	}
	if e.Trials == 0 {
		e.Trials = 1
	}
	for i := 1; i < len(e.HealPeriods); i++ {
		if e.HealPeriods[i] <= e.HealPeriods[i-1] {
			return ExperimentResult{}, fmt.Errorf("%w: HealPeriods must increase", ErrInvalid)
		}
	}
	base, err := New(e.Config)
	if err != nil {
		return ExperimentResult{}, err
	}
	if err := base.Bootstrap(); err != nil {
		return ExperimentResult{}, err
	}
	base.RunFor(time.Duration(e.SettlePeriods) * base.cfg.Membership.ShuffleInterval)
	res := ExperimentResult{Nodes: e.Config.Nodes}
	// The quiescent broadcast runs on a copy so that every trial starts from the same state.
	res.Quiescent = base.Clone(splitmix64(e.Config.Seed)).sample(e.BroadcastWindow)
	for i, f := range e.Failures {
		r := FailureResult{Failure: f, Healed: make([]Summary, len(e.HealPeriods))}
		for t := 0; t < e.Trials; t++ {
			s := base.Clone(splitmix64(e.Config.Seed ^ uint64(i+1)<<32 ^ uint64(t+1)))
			r.Crashed = e.runTrial(s, f, &r)
		}
		res.Failures = append(res.Failures, r)
	}
	return res, nil
}

func (e Experiment) runTrial(s *Sim, f float64, r *FailureResult) int {
	crashedAt := s.Now()
	crashed := len(s.CrashFraction(f))
	r.First.add(s.sample(e.BroadcastWindow))
	period := s.cfg.Membership.ShuffleInterval
	for i, p := range e.HealPeriods {
		if wait := crashedAt + time.Duration(p)*period - s.Now(); wait > 0 {
			s.RunFor(wait)
		}
		r.Healed[i].add(s.sample(e.BroadcastWindow))
	}
	return crashed
}

// sample measures the graph, then broadcasts from a random live node.
func (s *Sim) sample(window time.Duration) Sample {
	m := s.Measure()
	if len(s.live) == 0 {
		return Sample{Metrics: m}
	}
	b := s.Broadcast(s.RandomLive(), window)
	return Sample{Metrics: m, Reliability: b.Reliability()}
}
