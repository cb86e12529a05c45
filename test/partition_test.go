package test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
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
	"github.com/lfnet/lfnet/topics/gossip"
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
	n       *lfnet.Node
	self    peer.ID
	logs    map[topics.Topic]*lfnet.LogSync
	gossips map[topics.Topic]*gossip.Handle

	mu    sync.Mutex
	heard map[topics.Topic]map[string]int // gossip received: topic -> text -> copies
}

// listen counts every gossip message n receives on tp until ctx ends.
func (m *meshNode) listen(ctx context.Context, readers *sync.WaitGroup, tp topics.Topic) {
	sub := m.gossips[tp].Subscribe()
	readers.Add(1)
	go func() {
		defer readers.Done()
		defer sub.Close()
		for {
			msg, err := sub.Next(ctx)
			if err != nil {
				return
			}
			m.mu.Lock()
			if m.heard[tp] == nil {
				m.heard[tp] = map[string]int{}
			}
			m.heard[tp][string(msg.Data)]++
			m.mu.Unlock()
		}
	}()
}

// gossipRound waits until, for every topic, the gossip meshes let each node of a group
// reach every other node of its group holding the topic, then has every node publish one
// message per topic and checks that each node of the group receives each of the others'
// exactly once, and never its own. groups partitions the node indices.
func gossipRound(t *testing.T, nodes []*meshNode, round string, groups [][]int) {
	t.Helper()
	holders := func(group []int, tp topics.Topic) []int {
		var out []int
		for _, i := range group {
			if nodes[i].gossips[tp] != nil {
				out = append(out, i)
			}
		}
		return out
	}
	reachable := func(members []int, tp topics.Topic) bool {
		index := map[peer.ID]int{}
		for _, i := range members {
			index[nodes[i].self] = i
		}
		for _, from := range members {
			seen := map[int]bool{from: true}
			queue := []int{from}
			for len(queue) > 0 {
				i := queue[0]
				queue = queue[1:]
				for _, p := range nodes[i].gossips[tp].MeshPeers() {
					// Only a mutual link counts: a GRAFT that reached a peer before that
					// peer had the sender in its view was ignored, and until the peer
					// grafts back it drops what arrives over the link if the sender
					// was never its neighbour (gossip's WasNeighbor rule).
					if j, ok := index[p]; ok && !seen[j] && slices.Contains(nodes[j].gossips[tp].MeshPeers(), nodes[i].self) {
						seen[j] = true
						queue = append(queue, j)
					}
				}
			}
			if len(seen) != len(members) {
				return false
			}
		}
		return true
	}
	topicsOf := map[topics.Topic]bool{}
	for _, m := range nodes {
		for tp := range m.gossips {
			topicsOf[tp] = true
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ready := true
		for _, g := range groups {
			for tp := range topicsOf {
				if !reachable(holders(g, tp), tp) {
					ready = false
				}
			}
		}
		if ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the gossip meshes never connected each group:\n%s", round, meshReport(nodes, groups, holders, reachable))
		}
		time.Sleep(50 * time.Millisecond)
	}
	text := func(i int) string { return fmt.Sprintf("%s gossip from %d", round, i) }
	for _, g := range groups {
		for _, i := range g {
			for _, h := range nodes[i].gossips {
				if err := h.Publish(context.Background(), []byte(text(i))); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	deadline = time.Now().Add(2 * time.Minute)
	for {
		missing := ""
		for _, g := range groups {
			for tp := range topicsOf {
				members := holders(g, tp)
				for _, i := range members {
					m := nodes[i]
					m.mu.Lock()
					for _, j := range members {
						n := m.heard[tp][text(j)]
						switch {
						case j == i && n != 0:
							m.mu.Unlock()
							t.Fatalf("%s: node %d received its own gossip", round, i)
						case j != i && n > 1:
							m.mu.Unlock()
							t.Fatalf("%s: node %d received node %d's gossip %d times", round, i, j, n)
						case j != i && n == 0 && missing == "":
							missing = fmt.Sprintf("node %d lacks node %d's gossip on %s", i, j, tp.Short())
						}
					}
					m.mu.Unlock()
				}
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s", round, missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
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

// TestPartitionedMeshConvergesAfterHealing is issue 7's scenario: 20 nodes on random
// subsets of three topics, all syncing logs and gossiping. They converge, are split in two
// (gossip keeps working within each side, logs diverge), and after healing converge again
// and gossip reaches every node of its topics.
func TestPartitionedMeshConvergesAfterHealing(t *testing.T) {
	if testing.Short() {
		t.Skip("20 nodes")
	}
	rng := rand.New(rand.NewPCG(2026, 11))
	room := []topics.Topic{topics.FromString("mesh a"), topics.FromString("mesh b"), topics.FromString("mesh c")}
	part := &partition{side: map[peer.ID]int{}}
	var nodes []*meshNode
	listenCtx, stopListening := context.WithCancel(context.Background())
	defer stopListening()
	var readers sync.WaitGroup
	for i := range 20 {
		m := &meshNode{
			logs:    map[topics.Topic]*lfnet.LogSync{},
			gossips: map[topics.Topic]*gossip.Handle{},
			heard:   map[topics.Topic]map[string]int{},
		}
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
			g, err := n.Gossip(context.Background(), tp)
			if err != nil {
				t.Fatal(err)
			}
			m.gossips[tp] = g
			m.listen(listenCtx, &readers, tp)
		}
		nodes = append(nodes, m)
	}
	defer func() {
		stopListening()
		readers.Wait()
		var wg sync.WaitGroup
		for _, m := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, g := range m.gossips {
					_ = g.Close()
				}
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

	start := time.Now()
	phase := func(what string) {
		t.Logf("%s after %v", what, time.Since(start).Round(time.Millisecond))
	}
	publish("before", want)
	converged("before the partition", func(_ int, tp topics.Topic) int { return want[tp] })
	phase("converged before the partition")

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
	// Gossip keeps working within each side while split.
	var sides [2][]int
	for i := range nodes {
		sides[i%2] = append(sides[i%2], i)
	}
	gossipRound(t, nodes, "split", sides[:])
	phase("gossip delivered within each side")

	part.mu.Lock()
	part.split = false
	part.mu.Unlock()
	converged("after healing", func(_ int, tp topics.Topic) int {
		return want[tp] + sideOps[0][tp] + sideOps[1][tp]
	})
	phase("converged after healing")
	// And gossip from any node reaches every node of its topics again.
	gossipRound(t, nodes, "healed", [][]int{append(sides[0], sides[1]...)})
	phase("gossip delivered to every node")
}

// meshReport describes, for every group and topic whose mesh is not connected, each
// holder's overlay neighbours and GossipSub mesh peers, by node index.
func meshReport(nodes []*meshNode, groups [][]int, holders func([]int, topics.Topic) []int, reachable func([]int, topics.Topic) bool) string {
	index := map[peer.ID]int{}
	for i, m := range nodes {
		index[m.self] = i
	}
	names := func(ids []peer.ID) []int {
		out := make([]int, 0, len(ids))
		for _, p := range ids {
			if i, ok := index[p]; ok {
				out = append(out, i)
			} else {
				out = append(out, -1)
			}
		}
		slices.Sort(out)
		return out
	}
	var b strings.Builder
	seen := map[topics.Topic]bool{}
	for _, m := range nodes {
		for tp := range m.gossips {
			seen[tp] = true
		}
	}
	for gi, g := range groups {
		for tp := range seen {
			members := holders(g, tp)
			if reachable(members, tp) {
				continue
			}
			fmt.Fprintf(&b, "group %d, topic %s:\n", gi, tp.Short())
			for _, i := range members {
				fmt.Fprintf(&b, "  node %d: neighbours %v, mesh %v\n", i, names(nodes[i].n.Neighbors(tp)), names(nodes[i].gossips[tp].MeshPeers()))
			}
		}
	}
	return b.String()
}
