package membership

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"

	"github.com/lfnet/lfnet/codec"
	"github.com/lfnet/lfnet/topics"
)

const testProto = protocol.ID("/lfnet/test/membership/1")

// fastConfig shortens the timers so that healing happens within seconds.
func fastConfig() Config {
	cfg := DefaultConfig()
	cfg.ShuffleInterval = 2 * time.Second
	cfg.ShuffleJitter = 500 * time.Millisecond
	// Generous, so that a loaded test machine does not turn slow dials into timeouts.
	cfg.NeighborTimeout = 5 * time.Second
	return cfg
}

func newHost(t *testing.T) host.Host {
	t.Helper()
	cm, err := connmgr.NewConnManager(100, 400)
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		libp2p.ConnectionManager(cm),
	)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func newDriver(t *testing.T, h host.Host) *Driver {
	t.Helper()
	d, err := NewDriver(h, testProto, WithConfig(fastConfig()), WithLogger(testLogger(t)), WithIdleTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func addrInfo(h host.Host) peer.AddrInfo { return peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()} }

// tracker mirrors an overlay's active view from its events alone.
type tracker struct {
	mu   sync.Mutex
	view map[peer.ID]bool
	done chan struct{}
}

func track(o *Overlay) *tracker {
	tr := &tracker{view: map[peer.ID]bool{}, done: make(chan struct{})}
	go func() {
		defer close(tr.done)
		for ev := range o.Events() {
			tr.mu.Lock()
			switch ev.Kind {
			case EventNeighborUp:
				tr.view[ev.Peer] = true
			case EventNeighborDown:
				delete(tr.view, ev.Peer)
			}
			tr.mu.Unlock()
		}
	}()
	return tr
}

func (tr *tracker) peers() []peer.ID {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []peer.ID
	for p := range tr.view {
		out = append(out, p)
	}
	return out
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %v: %v", what, timeout, err)
		}
		<-tick.C
	}
}

// checkOverlay verifies, from the event-tracked views, that every node has a neighbour,
// that links are symmetric and point only at members, that the overlay is connected, and
// that the events agree with ActiveView.
func checkOverlay(ids []peer.ID, trackers []*tracker, overlays []*Overlay) error {
	member := map[peer.ID]int{}
	for i, id := range ids {
		member[id] = i
	}
	views := make([][]peer.ID, len(ids))
	for i, tr := range trackers {
		views[i] = tr.peers()
		if len(views[i]) == 0 {
			return fmt.Errorf("node %d has no neighbour", i)
		}
		active := overlays[i].ActiveView()
		if !sameIDs(active, views[i]) {
			return fmt.Errorf("node %d: events say %v, ActiveView %v", i, views[i], active)
		}
	}
	for i, view := range views {
		for _, p := range view {
			j, ok := member[p]
			if !ok {
				return fmt.Errorf("node %d links to non-member %s", i, p)
			}
			if !slices.Contains(views[j], ids[i]) {
				return fmt.Errorf("link %d->%d not symmetric (views %v / %v)", i, j, views[i], views[j])
			}
		}
	}
	seen := map[int]bool{0: true}
	stack := []int{0}
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, p := range views[i] {
			if j := member[p]; !seen[j] {
				seen[j] = true
				stack = append(stack, j)
			}
		}
	}
	if len(seen) != len(ids) {
		return fmt.Errorf("overlay not connected: %d of %d reachable", len(seen), len(ids))
	}
	return nil
}

func sameIDs(a, b []peer.ID) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestRealNetwork: 20 hosts on loopback join one topic through one contact; the overlay
// forms; then 10 hosts close (5 leave gracefully, 5 just vanish) and the other 10 form one
// connected overlay again.
func TestRealNetwork(t *testing.T) {
	const n = 20
	ctx := context.Background()
	topic := topics.FromString("lfnet membership real network test")
	hosts := make([]host.Host, n)
	drivers := make([]*Driver, n)
	overlays := make([]*Overlay, n)
	trackers := make([]*tracker, n)
	ids := make([]peer.ID, n)
	closed := make([]bool, n)
	t.Cleanup(func() {
		for i := range hosts {
			if !closed[i] {
				_ = drivers[i].Close()
				_ = hosts[i].Close()
			}
		}
		for _, tr := range trackers {
			<-tr.done
		}
	})
	for i := range hosts {
		hosts[i] = newHost(t)
		drivers[i] = newDriver(t, hosts[i])
		ids[i] = hosts[i].ID()
	}
	for i := range hosts {
		var contacts []peer.AddrInfo
		if i > 0 {
			contacts = []peer.AddrInfo{addrInfo(hosts[0])}
		}
		o, err := drivers[i].Join(ctx, topic, contacts)
		if err != nil {
			t.Fatal(err)
		}
		overlays[i], trackers[i] = o, track(o)
	}
	waitFor(t, 90*time.Second, "20-node overlay", func() error { return checkOverlay(ids, trackers, overlays) })

	for i, p := range overlays[0].ActiveView() {
		if !hosts[0].ConnManager().IsProtected(p, overlays[0].tag) {
			t.Fatalf("neighbour %d (%s) not protected in the connection manager", i, p)
		}
	}

	for i := n / 2; i < n; i++ {
		if i < 3*n/4 {
			if err := drivers[i].Close(); err != nil {
				t.Errorf("close driver %d: %v", i, err)
			}
		}
		if err := hosts[i].Close(); err != nil {
			t.Errorf("close host %d: %v", i, err)
		}
		if i >= 3*n/4 {
			_ = drivers[i].Close()
		}
		closed[i] = true
	}
	waitFor(t, 90*time.Second, "10 survivors reconnect", func() error {
		return checkOverlay(ids[:n/2], trackers[:n/2], overlays[:n/2])
	})
}

// TestNonHolderCannotJoin: a node that knows the overlay id but not the topic sends a Join
// whose MAC fails; the contact answers nothing and admits nobody.
func TestNonHolderCannotJoin(t *testing.T) {
	ctx := context.Background()
	topic := topics.FromString("secret topic")
	h0, h1, h2 := newHost(t), newHost(t), newHost(t)
	d0, d1, d2 := newDriver(t, h0), newDriver(t, h1), newDriver(t, h2)
	defer func() {
		for _, c := range []io.Closer{d0, d1, d2, h0, h1, h2} {
			_ = c.Close()
		}
	}()
	o0, err := d0.Join(ctx, topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	wrongKey := topics.Derive(topics.FromString("another topic"), authPurpose)
	outsider, err := d1.join(ctx, topic, topics.Derive(topic, overlayPurpose), wrongKey, []peer.AddrInfo{addrInfo(h0)})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the contact rejects the Join", func() error {
		if got := o0.Stats().RejectedAuth; got == 0 {
			return errors.New("no rejection yet")
		}
		return nil
	})
	// A genuine member joins through the same contact; once it is in, the outsider's Join
	// (sent earlier) has been handled and must not have admitted it.
	member, err := d2.Join(ctx, topic, []peer.AddrInfo{addrInfo(h0)})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the member joins", func() error {
		if !slices.Contains(o0.ActiveView(), h2.ID()) || !slices.Contains(member.ActiveView(), h0.ID()) {
			return fmt.Errorf("views %v / %v", o0.ActiveView(), member.ActiveView())
		}
		return nil
	})
	if slices.Contains(o0.ActiveView(), h1.ID()) || len(outsider.ActiveView()) != 0 {
		t.Fatalf("outsider admitted: contact view %v, outsider view %v", o0.ActiveView(), outsider.ActiveView())
	}
}

// TestLeaveSendsDisconnect: a neighbour that leaves is reported down at once through its
// Disconnect, while its host (and connection) stays up.
func TestLeaveSendsDisconnect(t *testing.T) {
	ctx := context.Background()
	topic := topics.FromString("leave test")
	h0, h1 := newHost(t), newHost(t)
	d0, d1 := newDriver(t, h0), newDriver(t, h1)
	defer func() {
		for _, c := range []io.Closer{d0, d1, h0, h1} {
			_ = c.Close()
		}
	}()
	o0, err := d0.Join(ctx, topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	o1, err := d1.Join(ctx, topic, []peer.AddrInfo{addrInfo(h0)})
	if err != nil {
		t.Fatal(err)
	}
	waitEvent(t, o0, EventNeighborUp, h1.ID())
	waitEvent(t, o1, EventNeighborUp, h0.ID())
	if !h0.ConnManager().IsProtected(h1.ID(), o0.tag) {
		t.Fatal("neighbour not protected")
	}
	if _, err := d1.Join(ctx, topic, nil); !errors.Is(err, ErrAlreadyJoined) {
		t.Fatalf("second Join of the topic: %v", err)
	}
	if err := o1.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, o0, EventNeighborDown, h1.ID())
	if h0.ConnManager().IsProtected(h1.ID(), o0.tag) {
		t.Fatal("protection kept after the neighbour left")
	}
	if len(h0.Network().ConnsToPeer(h1.ID())) == 0 {
		t.Fatal("connection gone: NeighborDown may have come from the disconnect, not the message")
	}
	// The leaving side reports its own NeighborDown, then closes the channel.
	var rest []Event
	for ev := range o1.Events() {
		rest = append(rest, ev)
	}
	if !slices.Contains(rest, Event{Kind: EventNeighborDown, Topic: topic, Peer: h0.ID()}) {
		t.Fatalf("events after Leave: %v", rest)
	}
	if err := o1.Leave(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Leave: %v", err)
	}
	// The topic can be joined again after leaving.
	o1, err = d1.Join(ctx, topic, []peer.AddrInfo{addrInfo(h0)})
	if err != nil {
		t.Fatal(err)
	}
	waitEvent(t, o1, EventNeighborUp, h0.ID())
}

func waitEvent(t *testing.T, o *Overlay, kind EventKind, p peer.ID) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev, ok := <-o.Events():
			if !ok {
				t.Fatalf("events closed while waiting for %v %s", kind, p)
			}
			if ev.Kind == kind && ev.Peer == p {
				if ev.Topic != o.Topic() {
					t.Fatalf("event for topic %s on overlay %s", ev.Topic.Short(), o.Topic().Short())
				}
				return
			}
		case <-timeout:
			t.Fatalf("no %v %s within 30 s", kind, p)
		}
	}
}

// TestStrangeStreams: streams for an overlay we do not hold, and malformed messages, are
// reset without harming the overlay.
func TestStrangeStreams(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topic := topics.FromString("strange streams")
	h0, h1 := newHost(t), newHost(t)
	d0 := newDriver(t, h0)
	defer func() {
		for _, c := range []io.Closer{d0, h0, h1} {
			_ = c.Close()
		}
	}()
	o0, err := d0.Join(ctx, topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	h1.Peerstore().AddAddrs(h0.ID(), h0.Addrs(), time.Hour)

	send := func(overlay []byte, frames ...[]byte) error {
		s, err := h1.NewStream(ctx, h0.ID(), testProto)
		if err != nil {
			return err
		}
		defer s.Close()
		w := codec.NewWriter(s, codec.MaxFrameMembership)
		if err := w.Encode(wireHello{Overlay: overlay}); err != nil {
			return err
		}
		for _, f := range frames {
			if err := w.WriteFrame(f); err != nil {
				return err
			}
		}
		_ = s.CloseWrite()
		_, err = io.ReadAll(s)
		return err
	}
	disc, err := encodeMessage(Disconnect{Alive: true})
	if err != nil {
		t.Fatal(err)
	}
	unknown := topics.Derive(topics.FromString("not held"), overlayPurpose)
	if err := send(unknown[:], disc); err == nil {
		t.Fatal("stream for an unknown overlay was not reset")
	}
	if err := send([]byte{1, 2, 3}, disc); err == nil {
		t.Fatal("stream with a short overlay id was not reset")
	}
	id := topics.Derive(topic, overlayPurpose)
	if err := send(id[:], []byte{0xff, 0x00}); err == nil {
		t.Fatal("stream with a malformed message was not reset")
	}
	// A well-formed message from a non-neighbour is handled (and ignored) normally.
	if err := send(id[:], disc); err != nil {
		t.Fatalf("valid stream: %v", err)
	}
	waitFor(t, 10*time.Second, "the Disconnect is counted as ignored", func() error {
		if o0.Stats().Ignored == 0 {
			return errors.New("not yet")
		}
		return nil
	})
}

func TestNewDriverRejectsBadConfig(t *testing.T) {
	h := newHost(t)
	defer h.Close()
	if _, err := NewDriver(h, testProto, WithConfig(Config{})); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("zero config: %v", err)
	}
	if _, err := NewDriver(h, testProto, WithEventQueueLimit(0)); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("zero event limit: %v", err)
	}
	d, err := NewDriver(h, testProto)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Join(context.Background(), topics.Random(), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Join after Close: %v", err)
	}
}

// TestIsolatedOverlayFindsContacts: an overlay started without contacts signals
// NeedContacts and joins through what its ContactSource returns; another one joins as soon
// as the application adds a contact.
func TestIsolatedOverlayFindsContacts(t *testing.T) {
	ctx := context.Background()
	topic := topics.FromString("contacts test")
	h0, h1, h2 := newHost(t), newHost(t), newHost(t)
	d0 := newDriver(t, h0)
	var asked sync.WaitGroup
	asked.Add(1)
	var once sync.Once
	d1, err := NewDriver(h1, testProto, WithConfig(fastConfig()), WithLogger(testLogger(t)),
		WithContactSource(func(_ context.Context, got topics.Topic) []peer.AddrInfo {
			if got != topic {
				return nil
			}
			once.Do(asked.Done)
			return []peer.AddrInfo{addrInfo(h0)}
		}))
	if err != nil {
		t.Fatal(err)
	}
	d2 := newDriver(t, h2)
	defer func() {
		for _, c := range []io.Closer{d0, d1, d2, h0, h1, h2} {
			_ = c.Close()
		}
	}()
	o0, err := d0.Join(ctx, topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	o1, err := d1.Join(ctx, topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitEvent(t, o1, EventNeedContacts, "")
	asked.Wait()
	waitEvent(t, o1, EventNeighborUp, h0.ID())

	o2, err := d2.Join(ctx, topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	o2.AddContacts(addrInfo(h0))
	waitEvent(t, o2, EventNeighborUp, h0.ID())
	waitFor(t, 30*time.Second, "three-node overlay", func() error {
		if v := o0.ActiveView(); !sameIDs(v, []peer.ID{h1.ID(), h2.ID()}) {
			return fmt.Errorf("contact's view %v", v)
		}
		return nil
	})
}

// TestSlowConsumerDropsOldestEvents: the protocol never waits for the events consumer.
func TestSlowConsumerDropsOldestEvents(t *testing.T) {
	d := &Driver{opts: driverOptions{eventLimit: 2}, log: testLogger(t)}
	o := newOverlay(d, topics.Random(), [32]byte{}, nil)
	for i := 0; i < 5; i++ {
		o.emit(Event{Kind: EventNeighborUp, Peer: peer.ID(fmt.Sprint(i))})
	}
	if len(o.queue) != 2 || o.queue[0].Peer != "3" || o.queue[1].Peer != "4" {
		t.Fatalf("queue %v, want the two newest events", o.queue)
	}
	if got := o.DroppedEvents(); got != 3 {
		t.Fatalf("DroppedEvents = %d, want 3", got)
	}
}

// TestLeaveWithExpiredContext: Leave returns promptly when its context has ended, and the
// overlay is stopped either way.
func TestLeaveWithExpiredContext(t *testing.T) {
	ctx := context.Background()
	topic := topics.FromString("expired leave")
	h0, h1 := newHost(t), newHost(t)
	d0, d1 := newDriver(t, h0), newDriver(t, h1)
	defer func() {
		for _, c := range []io.Closer{d0, d1, h0, h1} {
			_ = c.Close()
		}
	}()
	if _, err := d0.Join(ctx, topic, nil); err != nil {
		t.Fatal(err)
	}
	o1, err := d1.Join(ctx, topic, []peer.AddrInfo{addrInfo(h0)})
	if err != nil {
		t.Fatal(err)
	}
	waitEvent(t, o1, EventNeighborUp, h0.ID())
	expired, cancel := context.WithCancel(ctx)
	cancel()
	if err := o1.Leave(expired); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Leave: %v", err)
	}
	for range o1.Events() {
	}
	if len(o1.ActiveView()) != 0 {
		t.Fatal("active view not empty after Leave")
	}
}

// TestWasNeighborOutlivesTheViewWhileConnected: a neighbour that leaves the active view
// still counts as a former neighbour while its connection lasts, and is forgotten once the
// connection closes; a node that was never a neighbour never counts.
func TestWasNeighborOutlivesTheViewWhileConnected(t *testing.T) {
	ctx := context.Background()
	topic := topics.FromString("former neighbours")
	h0, h1, h2 := newHost(t), newHost(t), newHost(t)
	d0, d1 := newDriver(t, h0), newDriver(t, h1)
	defer func() {
		for _, c := range []io.Closer{d0, d1, h0, h1, h2} {
			_ = c.Close()
		}
	}()
	o0, err := d0.Join(ctx, topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	o1, err := d1.Join(ctx, topic, []peer.AddrInfo{addrInfo(h0)})
	if err != nil {
		t.Fatal(err)
	}
	waitEvent(t, o0, EventNeighborUp, h1.ID())
	if err := h2.Connect(ctx, addrInfo(h0)); err != nil {
		t.Fatal(err)
	}
	if !o0.WasNeighbor(h1.ID()) || o0.WasNeighbor(h2.ID()) {
		t.Fatal("WasNeighbor disagrees with the active view")
	}
	if err := o1.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, o0, EventNeighborDown, h1.ID())
	if len(h0.Network().ConnsToPeer(h1.ID())) == 0 {
		t.Fatal("connection gone: the former neighbour cannot be checked")
	}
	if !o0.WasNeighbor(h1.ID()) {
		t.Fatal("a former neighbour that is still connected is not recognised")
	}
	if err := h0.Network().ClosePeer(h1.ID()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the disconnected former neighbour to be forgotten", func() error {
		if o0.WasNeighbor(h1.ID()) {
			return errors.New("still counted")
		}
		return nil
	})
	if o0.WasNeighbor(h2.ID()) {
		t.Fatal("a connected node that was never a neighbour counts as one")
	}
}

// TestLeftOverlayAnswersWithDisconnect: a peer that still takes this node for a neighbour
// after it left (it accepted a request of it just before) is told otherwise: a message for
// the overlay is answered with Disconnect{Alive: false}, once per peer, and only for an
// overlay this node held.
func TestLeftOverlayAnswersWithDisconnect(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topic := topics.FromString("left overlay")
	h0, h1 := newHost(t), newHost(t)
	d0 := newDriver(t, h0)
	defer func() {
		for _, c := range []io.Closer{d0, h0, h1} {
			_ = c.Close()
		}
	}()
	type answer struct {
		overlay []byte
		msg     Message
		err     error
	}
	answers := make(chan answer, 4)
	h1.SetStreamHandler(testProto, func(s network.Stream) {
		defer s.Close()
		r := codec.NewReader(s, codec.MaxFrameMembership)
		var hello wireHello
		if err := r.Decode(&hello); err != nil {
			answers <- answer{err: err}
			return
		}
		frame, err := r.ReadFrame()
		if err != nil {
			answers <- answer{err: err}
			return
		}
		msg, err := decodeMessage(frame)
		answers <- answer{overlay: hello.Overlay, msg: msg, err: err}
	})
	h1.Peerstore().AddAddrs(h0.ID(), h0.Addrs(), time.Hour)
	send := func(overlay [32]byte) {
		t.Helper()
		s, err := h1.NewStream(ctx, h0.ID(), testProto)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		w := codec.NewWriter(s, codec.MaxFrameMembership)
		frame, err := encodeMessage(NeighborReply{Accepted: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Encode(wireHello{Overlay: overlay[:]}); err != nil {
			t.Fatal(err)
		}
		_ = w.WriteFrame(frame) // the stream may be reset already
		_, _ = io.ReadAll(s)
	}

	o0, err := d0.Join(ctx, topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := o0.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	id := topics.Derive(topic, overlayPurpose)
	send(id)
	select {
	case a := <-answers:
		if a.err != nil || !bytes.Equal(a.overlay, id[:]) || a.msg != (Disconnect{Alive: false}) {
			t.Fatalf("answer for the left overlay: %x %v %v", a.overlay, a.msg, a.err)
		}
	case <-ctx.Done():
		t.Fatal("no answer for the left overlay")
	}
	// Once per peer, and never for an overlay this node did not hold. A round trip on a
	// held overlay after them shows that no answer is merely late.
	send(id)
	send(topics.Derive(topics.FromString("never held"), overlayPurpose))
	other := topics.FromString("left later")
	o1, err := d0.Join(ctx, other, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := o1.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	otherID := topics.Derive(other, overlayPurpose)
	send(otherID)
	select {
	case a := <-answers:
		if !bytes.Equal(a.overlay, otherID[:]) {
			t.Fatalf("unexpected answer for overlay %x: %v %v", a.overlay, a.msg, a.err)
		}
	case <-ctx.Done():
		t.Fatal("no answer for the second left overlay")
	}
}
