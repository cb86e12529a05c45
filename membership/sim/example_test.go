package sim_test

import (
	"fmt"
	"time"

	"github.com/lfnet/lfnet/membership"
	"github.com/lfnet/lfnet/membership/sim"
)

// Build a 1,000-node overlay, crash half of it at once and watch it heal.
func Example() {
	s, err := sim.New(sim.Config{
		Nodes:                 1000,
		Seed:                  1,
		Membership:            membership.DefaultConfig(),
		Heal:                  true,
		ForwardToNewNeighbors: true,
	})
	if err != nil {
		panic(err)
	}
	if err := s.Bootstrap(); err != nil {
		panic(err)
	}
	s.RunFor(3 * time.Minute)
	m := s.Measure()
	fmt.Printf("before: %d nodes, %d component, symmetry %.0f%%\n", m.Live, m.Components, 100*m.Symmetry)

	s.CrashFraction(0.5)
	s.Broadcast(s.RandomLive(), 5*time.Second)
	s.RunFor(2 * time.Minute)
	m = s.Measure()
	r := s.Broadcast(s.RandomLive(), 5*time.Second)
	fmt.Printf("after: %d nodes, %d component, reliability %.0f%%\n", m.Live, m.Components, 100*r.Reliability())
	// Output:
	// before: 1000 nodes, 1 component, symmetry 100%
	// after: 500 nodes, 1 component, reliability 100%
}
