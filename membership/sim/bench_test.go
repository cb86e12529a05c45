package sim

import (
	"testing"
	"time"

	"github.com/lfnet/lfnet/membership"
)

// BenchmarkTenThousandTenRounds measures the performance target: 10,000 nodes join,
// settle for three shuffle periods, and flood 10 broadcasts. The limit is 60 s per op.
func BenchmarkTenThousandTenRounds(b *testing.B) {
	start := time.Now()
	for b.Loop() {
		s, err := New(Config{Nodes: 10000, Seed: 1, Membership: membership.DefaultConfig(), Heal: true, ForwardToNewNeighbors: true})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Bootstrap(); err != nil {
			b.Fatal(err)
		}
		s.RunFor(3 * time.Minute)
		for range 10 {
			if r := s.Broadcast(s.RandomLive(), 5*time.Second); r.Reliability() != 1 {
				b.Fatalf("reliability %v at quiescence", r.Reliability())
			}
		}
	}
	b.ReportMetric(time.Since(start).Seconds()/float64(b.N), "s/op")
	b.ReportMetric(60, "limit-s/op")
}
