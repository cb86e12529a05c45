package gossip

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"go.uber.org/goleak"

	"github.com/lfnet/lfnet/topics"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testProtocolID namespaces protocol ids the way host.ProtocolID does, for a test network.
func testProtocolID(name, version string) protocol.ID {
	return protocol.ID("/lfnet/0011223344556677/" + name + "/" + version)
}

// newHost starts a libp2p host on TCP loopback only.
func newHost(tb testing.TB) host.Host {
	tb.Helper()
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.NoTransports,
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		// go-libp2p v0.51's observed-address manager stops reading its identify
		// subscription without closing it; with many peers still pushing identify updates
		// while a host shuts down, the event bus then blocks and Host.Close hangs. Loopback
		// test hosts have no use for observed addresses.
		libp2p.DisableIdentifyAddressDiscovery(),
	)
	if err != nil {
		tb.Fatalf("libp2p.New: %v", err)
	}
	tb.Cleanup(func() { _ = h.Close() })
	return h
}

func newHosts(tb testing.TB, n int) []host.Host {
	hs := make([]host.Host, n)
	for i := range hs {
		hs[i] = newHost(tb)
	}
	return hs
}

func connect(tb testing.TB, a, b host.Host) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		tb.Fatalf("connect: %v", err)
	}
}

// quietLogger keeps pubsub's and the router's logs out of test output unless -v asks.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newRouter(tb testing.TB, h host.Host, m Membership, tweak ...func(*Config)) *Router {
	tb.Helper()
	cfg := Config{ProtocolID: testProtocolID, Membership: m, Logger: quietLogger()}
	for _, f := range tweak {
		f(&cfg)
	}
	r, err := New(context.Background(), h, cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() {
		if err := r.Close(); err != nil {
			tb.Errorf("Router.Close: %v", err)
		}
	})
	return r
}

func stream(tb testing.TB, r *Router, t topics.Topic) *Handle {
	tb.Helper()
	h, err := r.Stream(context.Background(), t)
	if err != nil {
		tb.Fatalf("Stream: %v", err)
	}
	return h
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}

// staticMembership is a stand-in for the membership layer: each topic's active view is a
// set of peers the test sets, and former holds peers that left it but count as former
// neighbours. It records joins and leaves.
type staticMembership struct {
	view   []peer.ID
	former []peer.ID

	mu     sync.Mutex
	joins  int
	leaves int
}

// drop moves p from the active view to the former neighbours.
func (m *staticMembership) drop(p peer.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.view = slices.DeleteFunc(slices.Clone(m.view), func(q peer.ID) bool { return q == p })
	m.former = append(m.former, p)
}

func (m *staticMembership) Join(context.Context, topics.Topic) (Overlay, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.joins++
	return staticOverlay{m}, nil
}

func (m *staticMembership) counts() (joins, leaves int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.joins, m.leaves
}

type staticOverlay struct{ m *staticMembership }

func (o staticOverlay) ActiveView() []peer.ID {
	o.m.mu.Lock()
	defer o.m.mu.Unlock()
	return o.m.view
}

func (o staticOverlay) WasNeighbor(p peer.ID) bool {
	o.m.mu.Lock()
	defer o.m.mu.Unlock()
	return slices.Contains(o.m.view, p) || slices.Contains(o.m.former, p)
}

func (o staticOverlay) Leave(context.Context) error {
	o.m.mu.Lock()
	defer o.m.mu.Unlock()
	o.m.leaves++
	return nil
}

// sparseGraph returns a connected undirected graph on n nodes: a ring plus `chords` random
// extra edges per node, as a neighbour list per node.
func sparseGraph(n, chords int, rng *rand.Rand) [][]int {
	adj := make([]map[int]bool, n)
	for i := range adj {
		adj[i] = map[int]bool{}
	}
	link := func(a, b int) {
		if a != b {
			adj[a][b], adj[b][a] = true, true
		}
	}
	for i := range n {
		link(i, (i+1)%n)
		for range chords {
			link(i, rng.IntN(n))
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

// peerSet returns the sorted ids of hosts idx.
func peerSet(hs []host.Host, idx []int) []peer.ID {
	out := make([]peer.ID, 0, len(idx))
	for _, i := range idx {
		out = append(out, hs[i].ID())
	}
	slices.Sort(out)
	return out
}

// rawPubSub starts a plain GossipSub on h that speaks lfnet's protocol id: a node that
// knows a topic's derived name but not the topic.
func rawPubSub(tb testing.TB, h host.Host) *pubsub.PubSub {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	ps, err := pubsub.NewGossipSub(ctx, h,
		pubsub.WithGossipSubProtocols([]protocol.ID{testProtocolID(ProtocolName, ProtocolVersion)}, supportsFeature),
		pubsub.WithLogger(quietLogger()),
	)
	if err != nil {
		tb.Fatalf("raw gossipsub: %v", err)
	}
	return ps
}

// collector reads a subscription in the background and indexes what arrives.
type collector struct {
	mu    sync.Mutex
	msgs  []Message
	count map[string]int
	done  chan struct{}
}

func collect(sub *Subscription) *collector {
	c := &collector{count: map[string]int{}, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			m, err := sub.Next(context.Background())
			if err != nil {
				return
			}
			c.mu.Lock()
			c.msgs = append(c.msgs, m)
			c.count[string(m.Data)]++
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *collector) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.count)
}

func (c *collector) snapshot() []Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.msgs)
}

func payloadOf(node, seq int) string { return fmt.Sprintf("node %02d message %02d", node, seq) }
