package test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/goleak"

	"github.com/lfnet/lfnet"
	lfhost "github.com/lfnet/lfnet/host"
	"github.com/lfnet/lfnet/syncproto"
	"github.com/lfnet/lfnet/syncproto/logsync"
	"github.com/lfnet/lfnet/topics"
	"github.com/lfnet/lfnet/topics/discovery"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// partition is a connection gater shared by all nodes of a test: while split, nodes on
// different sides can neither dial nor accept each other.
type partition struct {
	mu    sync.Mutex
	side  map[peer.ID]int
	split bool
}

func (p *partition) allowed(a, b peer.ID) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.split || p.side[a] == p.side[b]
}

// nodeGater is one node's view of the partition; self is set once the node exists (the
// host dials before New returns, so it is read atomically).
type nodeGater struct {
	p    *partition
	self atomic.Pointer[peer.ID]
}

func (g *nodeGater) allowed(id peer.ID) bool {
	self := g.self.Load()
	return self == nil || g.p.allowed(*self, id)
}

func (g *nodeGater) InterceptPeerDial(id peer.ID) bool                 { return g.allowed(id) }
func (g *nodeGater) InterceptAddrDial(id peer.ID, _ ma.Multiaddr) bool { return g.allowed(id) }
func (g *nodeGater) InterceptAccept(network.ConnMultiaddrs) bool       { return true }
func (g *nodeGater) InterceptSecured(_ network.Direction, id peer.ID, _ network.ConnMultiaddrs) bool {
	return g.allowed(id)
}
func (g *nodeGater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

type meshNode struct {
	n    *lfnet.Node
	self peer.ID
	logs map[topics.Topic]*lfnet.LogSync
}

// fastOptions shorten every interval so that a 20-node test settles in seconds.
func fastOptions() []lfnet.Option {
	d := discovery.DefaultConfig()
	d.StepInterval = 200 * time.Millisecond
	d.Walker.BackoffBase = 200 * time.Millisecond
	s := syncproto.DefaultCoordinatorConfig()
	s.RetryBase = 200 * time.Millisecond
	s.RetryMax = 2 * time.Second
	return []lfnet.Option{
		lfnet.WithListenAddrs("/ip4/127.0.0.1/tcp/0"),
		lfnet.WithDiscoveryConfig(d),
		lfnet.WithSyncConfig(s),
		lfnet.WithAntiEntropy(500 * time.Millisecond),
	}
}

// opsOf counts, per topic, the operations n stores.
func opsOf(t *testing.T, m *meshNode) map[topics.Topic]int {
	out := map[topics.Topic]int{}
	for tp, l := range m.logs {
		err := l.Range(context.Background(), func(logsync.Entry) error { out[tp]++; return nil })
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestPartitionedMeshConvergesAfterHealing(t *testing.T) {
	if testing.Short() {
		t.Skip("20 nodes")
	}
	rng := rand.New(rand.NewPCG(2026, 11))
	room := []topics.Topic{topics.FromString("mesh a"), topics.FromString("mesh b"), topics.FromString("mesh c")}
	part := &partition{side: map[peer.ID]int{}}
	var nodes []*meshNode
	for i := range 20 {
		m := &meshNode{logs: map[topics.Topic]*lfnet.LogSync{}}
		gater := &nodeGater{p: part}
		opts := append(fastOptions(), lfnet.WithHostOptions(
			lfhost.WithNATPortMap(false),
			lfhost.WithConnectionGater(gater),
		))
		if i > 0 {
			opts = append(opts, lfnet.WithBootstrap(nodes[0].n.Addrs()[0].String()))
		}
		n, err := lfnet.New(context.Background(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		m.n, m.self = n, n.ID()
		part.mu.Lock()
		part.side[m.self] = i % 2
		part.mu.Unlock()
		gater.self.Store(&m.self)
		// Random subscriptions: every topic with probability 1/2, at least one.
		for _, tp := range room {
			if rng.IntN(2) == 0 {
				m.logs[tp] = nil
			}
		}
		if len(m.logs) == 0 {
			m.logs[room[rng.IntN(3)]] = nil
		}
		for tp := range m.logs {
			l, err := n.LogSync(context.Background(), tp, true)
			if err != nil {
				t.Fatal(err)
			}
			m.logs[tp] = l
		}
		nodes = append(nodes, m)
	}
	defer func() {
		var wg sync.WaitGroup
		for _, m := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, l := range m.logs {
					l.Close()
				}
				if err := m.n.Close(); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}()

	// want[topic] = operations every holder must end with; onSide[side][topic] likewise
	// for operations published while split.
	want := map[topics.Topic]int{}
	publish := func(round string, count map[topics.Topic]int) {
		for i, m := range nodes {
			for tp, l := range m.logs {
				if _, err := l.Publish(context.Background(), []byte(fmt.Sprintf("%s from %d", round, i))); err != nil {
					t.Fatal(err)
				}
				count[tp]++
			}
		}
	}
	converged := func(what string, expect func(i int, tp topics.Topic) int) {
		t.Helper()
		deadline := time.Now().Add(120 * time.Second)
		for {
			missing := ""
			for i, m := range nodes {
				got := opsOf(t, m)
				for tp := range m.logs {
					if w := expect(i, tp); got[tp] != w && missing == "" {
						missing = fmt.Sprintf("node %d holds %d of %d operations on %s", i, got[tp], w, tp.Short())
					}
				}
			}
			if missing == "" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s", what, missing)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	publish("before", want)
	converged("before the partition", func(_ int, tp topics.Topic) int { return want[tp] })

	part.mu.Lock()
	part.split = true
	part.mu.Unlock()
	for _, m := range nodes {
		for _, p := range m.n.Host().Libp2p().Network().Peers() {
			if !part.allowed(m.self, p) {
				_ = m.n.Host().Libp2p().Network().ClosePeer(p)
			}
		}
	}
	sideOps := []map[topics.Topic]int{{}, {}}
	for i, m := range nodes {
		for tp, l := range m.logs {
			if _, err := l.Publish(context.Background(), []byte(fmt.Sprintf("split from %d", i))); err != nil {
				t.Fatal(err)
			}
			sideOps[i%2][tp]++
		}
	}
	for _, m := range nodes {
		for _, p := range m.n.Host().Libp2p().Network().Peers() {
			if !part.allowed(m.self, p) {
				t.Fatalf("connection across the partition survived")
			}
		}
	}

	part.mu.Lock()
	part.split = false
	part.mu.Unlock()
	converged("after healing", func(_ int, tp topics.Topic) int {
		return want[tp] + sideOps[0][tp] + sideOps[1][tp]
	})
}
