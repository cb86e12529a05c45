package gossip

import (
	"context"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"

	"github.com/lfnet/lfnet/internal/benchkit"
	"github.com/lfnet/lfnet/topics"
)

// Benchmark workload: every node publishes benchPerNode messages of benchPayload bytes at
// random moments spread over benchWindow, in each system (default 20 s: 50 nodes offer 25
// messages per second to each, 50 in all; LFNET_BENCH_WINDOW=10s doubles the rate).
const (
	benchNodes    = 50
	benchPerNode  = 10
	benchPayload  = 256
	benchViewSize = 5 // HyParView's default active view
	benchDeadline = 30 * time.Second
)

// BenchmarkGossip50 measures delivery latency (p50, p99) and delivery ratio for 50 nodes on
// one topic, for lfnet gossip (each topic limited to a sparse active view of at most 5, as
// membership gives it) and for plain go-libp2p-pubsub GossipSub with default options, on
// the same 50 fully connected loopback hosts, with the same publication schedule, at the
// same time. Run it with:
//
//	go test -run '^$' -bench BenchmarkGossip50 -benchtime 1x ./topics/gossip/
func BenchmarkGossip50(b *testing.B) {
	rng := rand.New(rand.NewPCG(50, 1))
	hs := newHosts(b, benchNodes)
	views := benchkit.BoundedGraph(benchNodes, benchViewSize, rng)

	// lfnet: one router per host, views from the bounded graph.
	lfnet := make([]publisher, benchNodes)
	lfRecv := benchkit.NewRecorder(benchNodes)
	room := topics.FromString("benchmark room")
	routers := make([]*Router, benchNodes)
	for i, h := range hs {
		routers[i] = newRouter(b, h, &staticMembership{view: peerSet(hs, views[i])})
	}
	// plain: stock GossipSub, default protocol ids and options.
	plain := make([]publisher, benchNodes)
	plRecv := benchkit.NewRecorder(benchNodes)
	plainTrackers := make([]*tracker, benchNodes)
	plainTopics := make([]*pubsub.Topic, benchNodes)
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	for i, h := range hs {
		plainTrackers[i] = newTracker()
		ps, err := pubsub.NewGossipSub(ctx, h, pubsub.WithRawTracer(plainTrackers[i]), pubsub.WithLogger(quietLogger()))
		if err != nil {
			b.Fatal(err)
		}
		if plainTopics[i], err = ps.Join("plain benchmark room"); err != nil {
			b.Fatal(err)
		}
	}
	connectCtx, connectCancel := context.WithTimeout(ctx, time.Minute)
	if err := benchkit.ConnectAll(connectCtx, hs); err != nil {
		b.Fatal(err)
	}
	connectCancel()

	var readers sync.WaitGroup
	for i := range hs {
		hd := stream(b, routers[i], room)
		b.Cleanup(func() { _ = hd.Close() })
		lfnet[i] = hd.Publish
		sub := hd.Subscribe()
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				m, err := sub.Next(ctx)
				if err != nil {
					return
				}
				lfRecv.Record(i, m.Data, m.ReceivedAt)
			}
		}()

		t := plainTopics[i]
		psub, err := t.Subscribe()
		if err != nil {
			b.Fatal(err)
		}
		plain[i] = func(ctx context.Context, data []byte) error { return t.Publish(ctx, data) }
		self := hs[i].ID()
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				m, err := psub.Next(ctx)
				if err != nil {
					return
				}
				now := time.Now()
				if m.GetFrom() != self {
					plRecv.Record(i, m.Data, now)
				}
			}
		}()
	}
	b.Cleanup(func() {
		cancel() // ends the readers
		readers.Wait()
	})

	for i := range hs {
		want := peerSet(hs, views[i])
		eventually(b, "lfnet meshes to cover the views", func() bool {
			return slices.Equal(routers[i].tracker.meshPeers(pubsubTopicName(room)), want)
		})
		eventually(b, "plain meshes to form", func() bool {
			return len(plainTopics[i].ListPeers()) == benchNodes-1 &&
				len(plainTrackers[i].meshPeers("plain benchmark room")) >= 5
		})
	}

	var lf, pl benchkit.Result
	b.ResetTimer()
	for n := range b.N {
		// Both run at once on the same schedule, so background load on this shared machine
		// hits them alike. Plain GossipSub sends more copies and so burdens lfnet more than
		// lfnet burdens it: if anything the comparison leans against lfnet.
		res := runRound(b, n, [][]publisher{lfnet, plain}, []*benchkit.Recorder{lfRecv, plRecv}, benchkit.NewSchedule(rng, benchNodes, benchPerNode, benchWindow))
		lf.Add(res[0])
		pl.Add(res[1])
	}
	b.StopTimer()

	lfP50, lfP99 := lf.Percentile(0.50), lf.Percentile(0.99)
	plP50, plP99 := pl.Percentile(0.50), pl.Percentile(0.99)
	b.ReportMetric(ms(lfP50), "lfnet-p50-ms")
	b.ReportMetric(ms(lfP99), "lfnet-p99-ms")
	b.ReportMetric(100*lf.Ratio(), "lfnet-delivery-%")
	b.ReportMetric(ms(plP50), "plain-p50-ms")
	b.ReportMetric(ms(plP99), "plain-p99-ms")
	b.ReportMetric(100*pl.Ratio(), "plain-delivery-%")
	b.ReportMetric(float64(lfP99)/float64(plP99), "p99-ratio")
	var drops Stats
	for _, r := range routers {
		s := r.Stats()
		drops.Undeliverable += s.Undeliverable
		drops.DroppedSends += s.DroppedSends
	}
	b.Logf("lfnet: p50 %v p99 %v delivered %d/%d; plain GossipSub: p50 %v p99 %v delivered %d/%d; "+
		"p99 ratio %.2f (limit 1.5); lfnet drops %+v; %d rounds",
		lfP50, lfP99, lf.Received, lf.Expected, plP50, plP99, pl.Received, pl.Expected,
		float64(lfP99)/float64(plP99), drops, b.N)
}

type publisher func(ctx context.Context, data []byte) error

var benchWindow = func() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("LFNET_BENCH_WINDOW")); err == nil {
		return d
	}
	return 20 * time.Second
}()

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// runRound publishes the schedule through every system at once and waits until every node
// of each has every other node's messages or the deadline passes.
func runRound(b *testing.B, round int, systems [][]publisher, recs []*benchkit.Recorder, s benchkit.Schedule) []benchkit.Result {
	for _, rec := range recs {
		rec.Reset(uint32(round), nil)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, pubs := range systems {
		for i, pub := range pubs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for seq, at := range s[i] {
					if wait := time.Until(start.Add(at)); wait > 0 {
						time.Sleep(wait) // pacing the workload, not synchronisation
					}
					if err := pub(context.Background(), benchkit.Message(uint32(round), uint16(i), uint16(seq), benchPayload)); err != nil {
						b.Errorf("node %d publish: %v", i, err)
					}
				}
			}()
		}
	}
	wg.Wait()
	expected := benchNodes * (benchNodes - 1) * benchPerNode
	deadline := time.Now().Add(benchDeadline)
	out := make([]benchkit.Result, len(recs))
	for i, rec := range recs {
		for rec.Count() < expected && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // polling interval
		}
		out[i] = rec.Result(expected)
		if out[i].Duplicates > 0 {
			b.Fatalf("system %d: %d duplicate deliveries", i, out[i].Duplicates)
		}
	}
	return out
}
