package gossip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/lfnet/lfnet/topics"
)

// TestThirtyNodesDeliverExactlyOnce is the delivery scenario with a fixed sparse
// overlay standing in for membership (the facade's tests drive it with real membership and
// discovery): 30 nodes each publish 10 messages; every node receives the other 290 exactly
// once and none of its own. A 31st node connected to the group, subscribed to the topic's
// derived name through its own GossipSub but not in anyone's view, receives nothing, and
// the junk it publishes is delivered nowhere.
func TestThirtyNodesDeliverExactlyOnce(t *testing.T) {
	const nodes, perNode = 30, 10
	room := topics.FromString("thirty nodes")
	hs := newHosts(t, nodes+1)
	group, spy := hs[:nodes], hs[nodes]
	graph := sparseGraph(nodes, 1, rand.New(rand.NewPCG(1, 2)))
	// Routers start before their hosts connect, as in a node.
	routers := make([]*Router, nodes)
	for i := range group {
		routers[i] = newRouter(t, group[i], &staticMembership{view: peerSet(group, graph[i])})
	}
	// The spy knows the derived name (not the key) and subscribes through plain GossipSub.
	spyPS := rawPubSub(t, spy)
	for i, nbrs := range graph {
		for _, j := range nbrs {
			if i < j {
				connect(t, group[i], group[j])
			}
		}
	}
	for _, i := range []int{0, 10, 20} {
		connect(t, spy, group[i])
	}

	handles := make([]*Handle, nodes)
	got := make([]*collector, nodes)
	for i := range group {
		handles[i] = stream(t, routers[i], room)
		got[i] = collect(handles[i].Subscribe())
	}
	name := pubsubTopicName(room)
	spyTopic, err := spyPS.Join(name)
	if err != nil {
		t.Fatal(err)
	}
	spySub, err := spyTopic.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	var spyGot atomic.Int64
	spyDone := make(chan struct{})
	go func() {
		defer close(spyDone)
		for {
			m, err := spySub.Next(context.Background())
			if err != nil {
				return
			}
			if m.GetFrom() != spy.ID() {
				spyGot.Add(1)
			}
		}
	}()
	defer func() {
		spySub.Cancel()
		<-spyDone
	}()

	for i := range group {
		want := peerSet(group, graph[i])
		eventually(t, fmt.Sprintf("node %d's mesh to equal its view", i), func() bool {
			return slices.Equal(handles[i].MeshPeers(), want)
		})
	}
	// The known limit, observed: the spy sees that its contacts hold the derived name.
	eventually(t, "spy to see the group's subscriptions", func() bool {
		return len(spyTopic.ListPeers()) == 3
	})
	// The spy's junk: it believes its contacts are in its mesh and sends to them until one
	// of them has provably received and dropped it.
	notNeighbour := func() (n uint64) {
		for _, r := range routers {
			n += r.Stats().NotNeighbour
		}
		return n
	}
	eventually(t, "the group to drop the spy's messages", func() bool {
		if err := spyTopic.Publish(context.Background(), []byte("junk")); err != nil {
			t.Fatal(err)
		}
		return notNeighbour() > 0
	})

	var wg sync.WaitGroup
	for i := range group {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range perNode {
				if err := handles[i].Publish(context.Background(), []byte(payloadOf(i, seq))); err != nil {
					t.Errorf("node %d publish: %v", i, err)
				}
			}
		}()
	}
	wg.Wait()

	want := (nodes - 1) * perNode
	for i := range group {
		eventually(t, fmt.Sprintf("node %d to receive %d messages", i, want), func() bool {
			return got[i].distinct() >= want
		})
	}
	for i := range group {
		msgs := got[i].snapshot()
		if len(msgs) != want {
			t.Errorf("node %d: %d deliveries, want exactly %d", i, len(msgs), want)
		}
		seen := map[string]bool{}
		for _, m := range msgs {
			var from, seq int
			if _, err := fmt.Sscanf(string(m.Data), "node %d message %d", &from, &seq); err != nil || from < 0 || from >= nodes {
				t.Fatalf("node %d: unexpected payload %q", i, m.Data)
			}
			if from == i {
				t.Errorf("node %d received its own message %q", i, m.Data)
			}
			if m.From != group[from].ID() {
				t.Errorf("node %d: %q attributed to %s, want its author", i, m.Data, m.From)
			}
			if seen[string(m.Data)] {
				t.Errorf("node %d received %q twice", i, m.Data)
			}
			seen[string(m.Data)] = true
		}
	}
	if n := spyGot.Load(); n != 0 {
		t.Errorf("the spy received %d messages; want none", n)
	}
	for i, r := range routers {
		if s := r.Stats(); s.Undeliverable != 0 || s.DroppedSends != 0 {
			t.Errorf("node %d dropped messages: %+v", i, s)
		}
	}
}

// TestExcludedPeerGetsNothing: P holds the topic (and its key) and tries to take part, but
// A and B's views exclude it, so it receives nothing and nothing it sends is delivered.
func TestExcludedPeerGetsNothing(t *testing.T) {
	room := topics.FromString("excluded")
	hs := newHosts(t, 3)
	a, b, p := hs[0], hs[1], hs[2]
	ra := newRouter(t, a, &staticMembership{view: peerSet(hs, []int{1})})
	rb := newRouter(t, b, &staticMembership{view: peerSet(hs, []int{0})})
	rp := newRouter(t, p, nil) // P would talk to anyone
	connect(t, a, b)
	connect(t, a, p)
	connect(t, b, p)
	ha, hb, hp := stream(t, ra, room), stream(t, rb, room), stream(t, rp, room)
	gotB, gotP := collect(hb.Subscribe()), collect(hp.Subscribe())
	gotA := collect(ha.Subscribe())

	eventually(t, "A and B to mesh with each other only", func() bool {
		return slices.Equal(ha.MeshPeers(), []peer.ID{b.ID()}) && slices.Equal(hb.MeshPeers(), []peer.ID{a.ID()})
	})
	eventually(t, "P to graft A and B from its side", func() bool {
		return len(hp.MeshPeers()) == 2
	})
	// P sends to A and B (its mesh); wait until both provably dropped something of it.
	eventually(t, "A and B to drop P's messages", func() bool {
		if err := hp.Publish(context.Background(), []byte("from P")); err != nil {
			t.Fatal(err)
		}
		return ra.Stats().NotNeighbour > 0 && rb.Stats().NotNeighbour > 0
	})
	const n = 5
	for i := range n {
		if err := ha.Publish(context.Background(), []byte(payloadOf(0, i))); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "B to receive A's messages", func() bool { return gotB.distinct() == n })
	if m := gotP.snapshot(); len(m) != 0 {
		t.Errorf("excluded peer received %d messages", len(m))
	}
	for _, m := range append(gotA.snapshot(), gotB.snapshot()...) {
		if m.From == p.ID() {
			t.Errorf("a message from the excluded peer was delivered: %q", m.Data)
		}
	}
}

// TestFormerNeighbourStillDelivers: GossipSub keeps the mesh link between A and B after B
// leaves A's active view, so both keep forwarding over it; A must take B's messages (B is a
// former neighbour) rather than lose every message for which the link is the only path.
func TestFormerNeighbourStillDelivers(t *testing.T) {
	room := topics.FromString("former")
	hs := newHosts(t, 2)
	a, b := hs[0], hs[1]
	memA := &staticMembership{view: peerSet(hs, []int{1})}
	ra := newRouter(t, a, memA)
	rb := newRouter(t, b, &staticMembership{view: peerSet(hs, []int{0})})
	connect(t, a, b)
	ha, hb := stream(t, ra, room), stream(t, rb, room)
	gotA, gotB := collect(ha.Subscribe()), collect(hb.Subscribe())
	eventually(t, "A and B to mesh", func() bool {
		return len(ha.MeshPeers()) == 1 && len(hb.MeshPeers()) == 1
	})
	memA.drop(b.ID())
	const n = 5
	for i := range n {
		if err := hb.Publish(context.Background(), []byte(payloadOf(1, i))); err != nil {
			t.Fatal(err)
		}
		if err := ha.Publish(context.Background(), []byte(payloadOf(0, i))); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "A to receive the former neighbour's messages", func() bool { return gotA.distinct() == n })
	eventually(t, "B to receive A's messages", func() bool { return gotB.distinct() == n })
	if s := ra.Stats(); s.NotNeighbour != 0 {
		t.Errorf("A dropped %d messages of a former neighbour", s.NotNeighbour)
	}
}

// TestNodeWithoutKeyReadsNothing: with no view limits at all, a node that knows the derived
// name but not the topic receives the ciphertexts but can read none of them, and what it
// publishes is rejected rather than delivered or forwarded.
func TestNodeWithoutKeyReadsNothing(t *testing.T) {
	room, other := topics.FromString("sealed"), topics.FromString("another room")
	hs := newHosts(t, 4)
	a, b, spy, c := hs[0], hs[1], hs[2], hs[3]
	ra, rb, rc := newRouter(t, a, nil), newRouter(t, b, nil), newRouter(t, c, nil)
	spyPS := rawPubSub(t, spy)
	connect(t, a, b)
	connect(t, a, spy)
	connect(t, b, spy)
	connect(t, c, spy)
	ha, hb, hc := stream(t, ra, room), stream(t, rb, room), stream(t, rc, other)
	gotA, gotB, gotC := collect(ha.Subscribe()), collect(hb.Subscribe()), collect(hc.Subscribe())

	spyTopic, err := spyPS.Join(pubsubTopicName(room))
	if err != nil {
		t.Fatal(err)
	}
	spySub, err := spyTopic.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer spySub.Cancel()
	spyOther, err := spyPS.Join(pubsubTopicName(other))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "A to mesh with B and the spy", func() bool { return len(ha.MeshPeers()) == 2 })
	// The spy only publishes on the other topic (GossipSub fanout): it needs to know C.
	eventually(t, "the spy to see C on the other topic", func() bool { return len(spyOther.ListPeers()) == 1 })

	secret := []byte("the meeting is at noon")
	if err := ha.Publish(context.Background(), secret); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sealed, err := spySub.Next(ctx)
	if err != nil {
		t.Fatalf("spy got no ciphertext: %v", err)
	}
	if bytes.Contains(sealed.Data, secret) || len(sealed.Data) != len(secret)+sealOverhead {
		t.Errorf("spy saw %d bytes %x; want only a sealed form of the secret", len(sealed.Data), sealed.Data)
	}
	eventually(t, "B to read the secret", func() bool { return gotB.distinct() == 1 })

	// Forgeries: junk signed by the spy, and A's genuine ciphertext replayed by the spy
	// under another topic's name. Both are rejected (counted), never delivered.
	eventually(t, "A and B to reject the spy's junk", func() bool {
		if err := spyTopic.Publish(context.Background(), []byte("forged")); err != nil {
			t.Fatal(err)
		}
		return ra.Stats().Unopenable > 0 && rb.Stats().Unopenable > 0
	})
	eventually(t, "C to reject the replayed ciphertext", func() bool {
		if err := spyOther.Publish(context.Background(), sealed.Data); err != nil {
			t.Fatal(err)
		}
		return rc.Stats().Unopenable > 0
	})
	for _, m := range slices.Concat(gotA.snapshot(), gotB.snapshot(), gotC.snapshot()) {
		if m.From == spy.ID() {
			t.Errorf("a message from the spy was delivered: %q", m.Data)
		}
	}
}

func TestPublishTooLarge(t *testing.T) {
	h := newHost(t)
	r := newRouter(t, h, nil, func(c *Config) { c.MaxMessageSize = 100 })
	hd := stream(t, r, topics.FromString("large"))
	err := hd.Publish(context.Background(), make([]byte, 101))
	if !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("Publish(101 bytes) = %v, want ErrMessageTooLarge", err)
	}
	if err := hd.Publish(context.Background(), make([]byte, 100)); err != nil {
		t.Fatalf("Publish at the limit: %v", err)
	}

	def := newRouter(t, newHost(t), nil)
	hd2 := stream(t, def, topics.FromString("large"))
	if err := hd2.Publish(context.Background(), make([]byte, DefaultMaxMessageSize+1)); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("default limit: %v", err)
	}
}

// TestReferenceCounting: the topic stays joined while any handle is open, the last Close
// leaves both the pubsub topic (peers see us go) and the overlay, and a new Stream joins
// again.
func TestReferenceCounting(t *testing.T) {
	room := topics.FromString("refcount")
	hs := newHosts(t, 2)
	mem := &staticMembership{view: peerSet(hs, []int{1})}
	ra := newRouter(t, hs[0], mem)
	rb := newRouter(t, hs[1], &staticMembership{view: peerSet(hs, []int{0})})
	connect(t, hs[0], hs[1])
	hb := stream(t, rb, room)
	gotB := collect(hb.Subscribe())
	name := pubsubTopicName(room)
	bSees := func() bool { return slices.Contains(rb.ps.ListPeers(name), hs[0].ID()) }

	h1, h2 := stream(t, ra, room), stream(t, ra, room)
	if j, _ := mem.counts(); j != 1 {
		t.Fatalf("two handles joined the overlay %d times", j)
	}
	sub2 := h2.Subscribe()
	got2 := collect(sub2)
	eventually(t, "B to see A subscribed", bSees)
	eventually(t, "the mesh between A and B", func() bool {
		return len(h2.MeshPeers()) == 1 && len(hb.MeshPeers()) == 1
	})

	// A sibling handle's publication is this node's own message: not delivered back.
	if err := h1.Publish(context.Background(), []byte("from h1")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "B to receive h1's message", func() bool { return gotB.distinct() == 1 })

	if err := h1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h1.Publish(context.Background(), []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish on a closed handle = %v, want ErrClosed", err)
	}
	if _, l := mem.counts(); l != 0 {
		t.Fatal("closing one of two handles left the overlay")
	}
	if !slices.Contains(ra.ps.GetTopics(), name) {
		t.Fatal("closing one of two handles left the pubsub topic")
	}
	if err := hb.Publish(context.Background(), []byte("to the remaining handle")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the remaining handle to receive", func() bool { return got2.distinct() == 1 })
	for _, m := range got2.snapshot() {
		if string(m.Data) == "from h1" {
			t.Error("a handle received its sibling's message")
		}
	}

	if err := h2.Close(); err != nil {
		t.Fatal(err)
	}
	if _, l := mem.counts(); l != 1 {
		t.Fatalf("last Close left the overlay %d times, want 1", l)
	}
	if slices.Contains(ra.ps.GetTopics(), name) {
		t.Fatal("last Close did not leave the pubsub topic")
	}
	eventually(t, "B to see A unsubscribe", func() bool { return !bSees() })
	if _, err := sub2.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close = %v, want ErrClosed", err)
	}
	if err := h2.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	// Re-opening joins again, and the mesh re-forms without waiting out a long backoff.
	h3 := stream(t, ra, room)
	defer h3.Close()
	if j, _ := mem.counts(); j != 2 {
		t.Fatalf("re-opening joined the overlay %d times in total, want 2", j)
	}
	got3 := collect(h3.Subscribe())
	eventually(t, "B to see A subscribed again", bSees)
	eventually(t, "the mesh to re-form", func() bool { return len(hb.MeshPeers()) == 1 })
	if err := hb.Publish(context.Background(), []byte("welcome back")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the re-opened handle to receive", func() bool { return got3.distinct() == 1 })
}

// TestSlowSubscriberLosesOldest: a subscription nobody reads keeps the latest messages up to
// its buffer and reports the rest as dropped; the router and other readers are unaffected.
func TestSlowSubscriberLosesOldest(t *testing.T) {
	const buffer, total = 4, 20
	room := topics.FromString("slow")
	hs := newHosts(t, 2)
	ra := newRouter(t, hs[0], nil)
	rb := newRouter(t, hs[1], nil, func(c *Config) { c.SubscriptionBuffer = buffer })
	connect(t, hs[0], hs[1])
	ha, hb := stream(t, ra, room), stream(t, rb, room)
	slow := hb.Subscribe()
	fast := hb.Subscribe()
	eventually(t, "the mesh", func() bool { return len(ha.MeshPeers()) == 1 })
	for i := range total {
		if err := ha.Publish(context.Background(), []byte(payloadOf(0, i))); err != nil {
			t.Fatal(err)
		}
	}
	// Both subscriptions are fed together: once the fast one has accounted for every
	// message (read or dropped), the slow one has been offered all of them too.
	read := 0
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for read+int(fast.Dropped()) < total {
		if _, err := fast.Next(ctx); err != nil {
			t.Fatalf("fast reader: %v (read %d, dropped %d)", err, read, fast.Dropped())
		}
		read++
	}
	var last []string
	for range buffer {
		m, err := slow.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		last = append(last, string(m.Data))
	}
	if slow.Dropped() != total-buffer {
		t.Errorf("slow subscriber dropped %d, want %d", slow.Dropped(), total-buffer)
	}
	// GossipSub validates on several workers, so arrival order is not publication order;
	// the kept messages are the last to arrive, each once.
	slices.Sort(last)
	if len(slices.Compact(last)) != buffer {
		t.Errorf("slow subscriber kept %q, want %d distinct messages", last, buffer)
	}
	slow.Close()
	if _, err := slow.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Subscription.Close = %v", err)
	}
}

func TestRouterClose(t *testing.T) {
	mem := &staticMembership{}
	r, err := New(context.Background(), newHost(t), Config{ProtocolID: testProtocolID, Membership: mem, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	h1 := stream(t, r, topics.FromString("one"))
	h2 := stream(t, r, topics.FromString("two"))
	sub := h1.Subscribe()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, l := mem.counts(); l != 2 {
		t.Fatalf("Close left %d overlays, want 2", l)
	}
	if _, err := sub.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after router Close = %v", err)
	}
	if err := h2.Publish(context.Background(), []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish after router Close = %v", err)
	}
	if _, err := r.Stream(context.Background(), topics.FromString("three")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Stream after router Close = %v", err)
	}
	if err := h1.Close(); err != nil {
		t.Fatalf("handle Close after router Close: %v", err)
	}
	if _, l := mem.counts(); l != 2 {
		t.Fatal("a handle closed after the router left its overlay again")
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

type failingMembership struct{}

var errNoOverlay = errors.New("no overlay")

func (failingMembership) Join(context.Context, topics.Topic) (Overlay, error) {
	return nil, errNoOverlay
}

func TestStreamFailsCleanly(t *testing.T) {
	r := newRouter(t, newHost(t), failingMembership{})
	room := topics.FromString("fails")
	if _, err := r.Stream(context.Background(), room); !errors.Is(err, errNoOverlay) {
		t.Fatalf("Stream = %v, want the membership error", err)
	}
	r.viewsMu.RLock()
	views := len(r.views)
	r.viewsMu.RUnlock()
	if slices.Contains(r.ps.GetTopics(), pubsubTopicName(room)) || views != 0 {
		t.Fatal("a failed Stream left state behind")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Stream(ctx, room); !errors.Is(err, context.Canceled) {
		t.Fatalf("Stream with a cancelled context = %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	h := newHost(t)
	if _, err := New(context.Background(), h, Config{}); !errors.Is(err, ErrConfig) {
		t.Fatalf("no ProtocolID: %v", err)
	}
	if _, err := New(context.Background(), h, Config{ProtocolID: testProtocolID, MaxMessageSize: -1}); !errors.Is(err, ErrConfig) {
		t.Fatalf("negative size: %v", err)
	}
}

// TestNamespacedProtocol: the router speaks only its network's protocol id, so stock
// GossipSub (and other lfnet networks) never exchange pubsub traffic with it.
func TestNamespacedProtocol(t *testing.T) {
	h := newHost(t)
	newRouter(t, h, nil)
	var ids []string
	for _, p := range h.Mux().Protocols() {
		if strings.Contains(string(p), "sub") {
			ids = append(ids, string(p))
		}
	}
	if want := []string{string(testProtocolID("gossipsub", "1.2"))}; !slices.Equal(ids, want) {
		t.Fatalf("pubsub protocols %q, want %q", ids, want)
	}
}
