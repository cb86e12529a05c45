package gossip

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

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
	views := boundedGraph(benchNodes, benchViewSize, rng)

	// lfnet: one router per host, views from the bounded graph.
	lfnet := make([]publisher, benchNodes)
	lfRecv := newLatencyRecorder(benchNodes)
	room := topics.FromString("benchmark room")
	routers := make([]*Router, benchNodes)
	for i, h := range hs {
		routers[i] = newRouter(b, h, &staticMembership{view: peerSet(hs, views[i])})
	}
	// plain: stock GossipSub, default protocol ids and options.
	plain := make([]publisher, benchNodes)
	plRecv := newLatencyRecorder(benchNodes)
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
	connectAll(b, hs)

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
				lfRecv.record(i, m.Data, m.ReceivedAt)
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
					plRecv.record(i, m.Data, now)
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

	var lf, pl roundResult
	b.ResetTimer()
	for n := range b.N {
		// Both run at once on the same schedule, so background load on this shared machine
		// hits them alike. Plain GossipSub sends more copies and so burdens lfnet more than
		// lfnet burdens it: if anything the comparison leans against lfnet.
		res := runRound(b, n, [][]publisher{lfnet, plain}, []*latencyRecorder{lfRecv, plRecv}, newSchedule(rng))
		lf.add(res[0])
		pl.add(res[1])
	}
	b.StopTimer()

	lfP50, lfP99 := lf.percentile(0.50), lf.percentile(0.99)
	plP50, plP99 := pl.percentile(0.50), pl.percentile(0.99)
	b.ReportMetric(ms(lfP50), "lfnet-p50-ms")
	b.ReportMetric(ms(lfP99), "lfnet-p99-ms")
	b.ReportMetric(100*lf.ratio(), "lfnet-delivery-%")
	b.ReportMetric(ms(plP50), "plain-p50-ms")
	b.ReportMetric(ms(plP99), "plain-p99-ms")
	b.ReportMetric(100*pl.ratio(), "plain-delivery-%")
	b.ReportMetric(float64(lfP99)/float64(plP99), "p99-ratio")
	var drops Stats
	for _, r := range routers {
		s := r.Stats()
		drops.Undeliverable += s.Undeliverable
		drops.DroppedSends += s.DroppedSends
	}
	b.Logf("lfnet: p50 %v p99 %v delivered %d/%d; plain GossipSub: p50 %v p99 %v delivered %d/%d; "+
		"p99 ratio %.2f (limit 1.5); lfnet drops %+v; %d rounds",
		lfP50, lfP99, lf.received, lf.expected, plP50, plP99, pl.received, pl.expected,
		float64(lfP99)/float64(plP99), drops, b.N)
}

type publisher func(ctx context.Context, data []byte) error

// schedule is when each node publishes each of its messages, as offsets into the window.
type schedule [benchNodes][benchPerNode]time.Duration

var benchWindow = func() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("LFNET_BENCH_WINDOW")); err == nil {
		return d
	}
	return 20 * time.Second
}()

func newSchedule(rng *rand.Rand) *schedule {
	var s schedule
	for i := range s {
		for j := range s[i] {
			s[i][j] = time.Duration(rng.Int64N(int64(benchWindow)))
		}
		slices.Sort(s[i][:])
	}
	return &s
}

type roundResult struct {
	latencies          []time.Duration
	received, expected int
}

func (r *roundResult) add(o roundResult) {
	r.latencies = append(r.latencies, o.latencies...)
	r.received += o.received
	r.expected += o.expected
}

func (r *roundResult) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	s := slices.Clone(r.latencies)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func (r *roundResult) ratio() float64 {
	if r.expected == 0 {
		return 0
	}
	return float64(r.received) / float64(r.expected)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// runRound publishes the schedule through every system at once and waits until every node
// of each has every other node's messages or the deadline passes.
func runRound(b *testing.B, round int, systems [][]publisher, recs []*latencyRecorder, s *schedule) []roundResult {
	for _, rec := range recs {
		rec.reset(round)
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
					if err := pub(context.Background(), benchMessage(round, i, seq)); err != nil {
						b.Errorf("node %d publish: %v", i, err)
					}
				}
			}()
		}
	}
	wg.Wait()
	expected := benchNodes * (benchNodes - 1) * benchPerNode
	deadline := time.Now().Add(benchDeadline)
	out := make([]roundResult, len(recs))
	for i, rec := range recs {
		for rec.count() < expected && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // polling interval
		}
		out[i] = rec.result(expected)
	}
	return out
}

// benchMessage is round, author, sequence number and send time, padded to benchPayload.
func benchMessage(round, node, seq int) []byte {
	m := make([]byte, benchPayload)
	binary.BigEndian.PutUint32(m[0:], uint32(round))
	binary.BigEndian.PutUint16(m[4:], uint16(node))
	binary.BigEndian.PutUint16(m[6:], uint16(seq))
	binary.BigEndian.PutUint64(m[8:], uint64(time.Now().UnixNano()))
	return m
}

// latencyRecorder collects one round's deliveries at every node.
type latencyRecorder struct {
	mu        sync.Mutex
	round     int
	seen      []map[uint32]bool // per receiving node: author<<16|seq
	latencies []time.Duration
	dups      int
}

func newLatencyRecorder(nodes int) *latencyRecorder {
	return &latencyRecorder{seen: make([]map[uint32]bool, nodes)}
}

func (r *latencyRecorder) reset(round int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.round = round
	for i := range r.seen {
		r.seen[i] = map[uint32]bool{}
	}
	r.latencies = r.latencies[:0]
}

func (r *latencyRecorder) record(node int, data []byte, at time.Time) {
	if len(data) < 16 {
		return
	}
	round := int(binary.BigEndian.Uint32(data))
	key := binary.BigEndian.Uint32(data[4:])
	sent := time.Unix(0, int64(binary.BigEndian.Uint64(data[8:])))
	r.mu.Lock()
	defer r.mu.Unlock()
	if round != r.round {
		return // a straggler from an earlier round
	}
	if r.seen[node][key] {
		r.dups++
		return
	}
	r.seen[node][key] = true
	r.latencies = append(r.latencies, at.Sub(sent))
}

func (r *latencyRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.latencies)
}

func (r *latencyRecorder) result(expected int) roundResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dups > 0 {
		panic(fmt.Sprintf("%d duplicate deliveries", r.dups))
	}
	return roundResult{latencies: slices.Clone(r.latencies), received: len(r.latencies), expected: expected}
}

// boundedGraph returns a connected random graph on n nodes in which no node has more than
// maxDegree neighbours: a ring, then random extra edges between nodes with room left.
func boundedGraph(n, maxDegree int, rng *rand.Rand) [][]int {
	adj := make([]map[int]bool, n)
	for i := range adj {
		adj[i] = map[int]bool{}
	}
	link := func(a, c int) { adj[a][c], adj[c][a] = true, true }
	for i := range n {
		link(i, (i+1)%n)
	}
	for range 50 * n {
		a, c := rng.IntN(n), rng.IntN(n)
		if a != c && !adj[a][c] && len(adj[a]) < maxDegree && len(adj[c]) < maxDegree {
			link(a, c)
		}
	}
	out := make([][]int, n)
	for i, m := range adj {
		for j := range m {
			out[i] = append(out[i], j)
		}
		slices.Sort(out[i])
	}
	return out
}

// connectAll connects every pair of hosts, a few dials at a time.
func connectAll(tb testing.TB, hs []host.Host) {
	var wg sync.WaitGroup
	errs := make(chan error, len(hs)*len(hs))
	sem := make(chan struct{}, 8)
	for i := range hs {
		for j := i + 1; j < len(hs); j++ {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if err := hs[i].Connect(ctx, peer.AddrInfo{ID: hs[j].ID(), Addrs: hs[j].Addrs()}); err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatalf("connect: %v", err)
	}
}
