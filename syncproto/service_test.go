package syncproto

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"go.uber.org/goleak"

	"github.com/lfnet/lfnet/topics"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testProto = protocol.ID("/lfnet/test/sync/1")

func newHost(t *testing.T) host.Host {
	t.Helper()
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func connect(t *testing.T, a, b host.Host) {
	t.Helper()
	if err := a.Connect(context.Background(), peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gset is a grow-only set of strings: the second, deliberately tiny data type that proves
// the coordinator does not know about logs. A session sends every element the sender has,
// then closes its side; each side adds what it receives.
type gset struct {
	mu    sync.Mutex
	items map[string]struct{}
	fail  bool // when set, sessions fail after the exchange (to drive retries)
}

func newGSet(items ...string) *gset {
	g := &gset{items: map[string]struct{}{}}
	for _, it := range items {
		g.items[it] = struct{}{}
	}
	return g
}

func (g *gset) snapshot() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]string, 0, len(g.items))
	for it := range g.items {
		out = append(out, it)
	}
	slices.Sort(out)
	return out
}

func (g *gset) NewSession(SessionInfo) (Protocol, error) { return gsetSession{g}, nil }

type gsetSession struct{ g *gset }

func (s gsetSession) Run(ctx context.Context, conn Conn, emit func(Event)) error {
	mine := s.g.snapshot()
	sent := make(chan error, 1)
	go func() {
		for _, it := range mine {
			if err := conn.WriteFrame([]byte(it)); err != nil {
				sent <- err
				return
			}
		}
		sent <- conn.CloseWrite()
	}()
	var m Metrics
	for {
		b, err := conn.ReadFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			<-sent
			return err
		}
		s.g.mu.Lock()
		s.g.items[string(b)] = struct{}{}
		s.g.mu.Unlock()
		m.ItemsReceived++
		emit(Event{Kind: ItemReceived, Item: string(b), Metrics: m})
	}
	if err := <-sent; err != nil {
		return err
	}
	emit(Event{Kind: SyncFinished, Metrics: m})
	return nil
}

func openTopic(t *testing.T, s *Service, tp topics.Topic, m Manager) *Topic {
	t.Helper()
	topic, err := s.Open(tp, m, DefaultCoordinatorConfig())
	if err != nil {
		t.Fatal(err)
	}
	return topic
}

func TestGSetConvergesThroughCoordinator(t *testing.T) {
	room := topics.Random()
	hosts := []host.Host{newHost(t), newHost(t), newHost(t)}
	sets := []*gset{newGSet("a1", "a2"), newGSet("b1"), newGSet("c1", "c2", "c3")}
	var svcs []*Service
	var tps []*Topic
	for i, h := range hosts {
		s := NewService(h, testProto)
		svcs = append(svcs, s)
		tps = append(tps, openTopic(t, s, room, sets[i]))
	}
	defer func() {
		for _, s := range svcs {
			_ = s.Close()
		}
	}()
	// A triangle: every pair are neighbours, so one round of sessions converges (on a line,
	// the ends would wait for the next periodic re-sync).
	for i := range hosts {
		for j := range hosts {
			if i < j {
				connect(t, hosts[i], hosts[j])
			}
		}
	}
	for i := range hosts {
		for j := range hosts {
			if i != j {
				tps[i].NeighborUp(hosts[j].ID())
			}
		}
	}
	want := []string{"a1", "a2", "b1", "c1", "c2", "c3"}
	for _, g := range sets {
		eventually(t, "convergence", func() bool { return slices.Equal(g.snapshot(), want) })
	}
}

func TestSimultaneousInitiationRunsOneSession(t *testing.T) {
	room := topics.Random()
	ha, hb := newHost(t), newHost(t)
	sa, sb := NewService(ha, testProto), NewService(hb, testProto)
	defer sa.Close()
	defer sb.Close()
	ga, gb := newGSet("x"), newGSet("y")
	ta, tb := openTopic(t, sa, room, ga), openTopic(t, sb, room, gb)
	subA := ta.Subscribe()
	defer subA.Close()
	connect(t, ha, hb)
	ta.NeighborUp(hb.ID())
	tb.NeighborUp(ha.ID())
	eventually(t, "convergence", func() bool {
		return slices.Equal(ga.snapshot(), []string{"x", "y"}) && slices.Equal(gb.snapshot(), []string{"x", "y"})
	})
	// Count sessions that a actually ran to the end: exactly one, whatever the race.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	finished := 0
	for finished == 0 {
		ev, err := subA.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Kind == SyncFinished {
			finished++
		}
	}
	// Nothing else may finish within the re-sync interval; give stragglers a moment by
	// draining what is already buffered.
	dctx, dcancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer dcancel()
	for {
		ev, err := subA.Next(dctx)
		if err != nil {
			break
		}
		if ev.Kind == SyncFinished {
			t.Fatalf("a second session finished: %+v", ev)
		}
	}
}

func TestUnknownTopicRejected(t *testing.T) {
	ha, hb := newHost(t), newHost(t)
	sa, sb := NewService(ha, testProto), NewService(hb, testProto)
	defer sa.Close()
	defer sb.Close()
	ta := openTopic(t, sa, topics.Random(), newGSet("secret"))
	gb := newGSet()
	openTopic(t, sb, topics.Random(), gb)
	sub := ta.Subscribe()
	defer sub.Close()
	connect(t, ha, hb)
	// Open the stream by hand to observe the verdict directly.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err := ta.open(ctx, hb.ID())
	if !errors.Is(err, ErrRejected) {
		t.Fatalf("open to a node without the topic: %v, want ErrRejected", err)
	}
	if len(gb.snapshot()) != 0 {
		t.Fatal("data crossed to a node without the topic")
	}
}

func TestNeighborDownStopsLiveSession(t *testing.T) {
	room := topics.Random()
	ha, hb := newHost(t), newHost(t)
	sa, sb := NewService(ha, testProto), NewService(hb, testProto)
	defer sa.Close()
	defer sb.Close()
	block := ManagerFunc(func(SessionInfo) (Protocol, error) { return blockingProtocol{}, nil })
	cfg := DefaultCoordinatorConfig()
	cfg.Live = true
	ta, err := sa.Open(room, block, cfg)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := sb.Open(room, block, cfg)
	if err != nil {
		t.Fatal(err)
	}
	subB := tb.Subscribe()
	defer subB.Close()
	connect(t, ha, hb)
	ta.NeighborUp(hb.ID())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	waitKind(ctx, t, subB, SessionStarted)
	ta.NeighborDown(hb.ID())
	// b sees its accepted session end because a reset the stream.
	ev := waitKind(ctx, t, subB, SessionFailed, SessionEnded)
	if ev.Remote != ha.ID() {
		t.Fatalf("event for %s", ev.Remote)
	}
}

// blockingProtocol stays in "live mode" until its stream is cut.
type blockingProtocol struct{}

func (blockingProtocol) Run(ctx context.Context, conn Conn, emit func(Event)) error {
	emit(Event{Kind: LiveModeStarted})
	_, err := conn.ReadFrame()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func waitKind(ctx context.Context, t *testing.T, sub *Subscription, ks ...EventKind) Event {
	t.Helper()
	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for %v: %v", ks, err)
		}
		if slices.Contains(ks, ev.Kind) {
			return ev
		}
	}
}

func TestCloseStopsEverything(t *testing.T) {
	room := topics.Random()
	ha, hb := newHost(t), newHost(t)
	sa, sb := NewService(ha, testProto), NewService(hb, testProto)
	block := ManagerFunc(func(SessionInfo) (Protocol, error) { return blockingProtocol{}, nil })
	cfg := DefaultCoordinatorConfig()
	cfg.Live = true
	ta, _ := sa.Open(room, block, cfg)
	tb, _ := sb.Open(room, block, cfg)
	sub := tb.Subscribe()
	connect(t, ha, hb)
	ta.NeighborUp(hb.ID())
	tb.NeighborUp(ha.ID())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	waitKind(ctx, t, sub, LiveModeStarted)
	// Close must return with the live sessions still open on the other side; goleak in
	// TestMain proves nothing outlives it.
	if err := sa.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sb.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Open(room, block, cfg); !errors.Is(err, ErrClosed) {
		t.Fatalf("Open after Close: %v", err)
	}
	if _, err := sub.Next(ctx); err != nil && !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
}

// An inbound session accepted by the loop just as the topic closes must still be run (and
// counted off), or Close would wait for it forever.
func TestCloseRacingIncomingDoesNotHang(t *testing.T) {
	s := NewService(newHost(t), testProto)
	defer s.Close()
	for range 300 {
		tp := openTopic(t, s, topics.Random(), newGSet())
		handled := make(chan struct{})
		go func() {
			defer close(handled)
			if id, _, ok := tp.incoming("remote"); ok && id != 0 {
				tp.sessionWG.Done() // what handleStream's deferred call does
			}
		}()
		closed := make(chan struct{})
		go func() {
			tp.Close()
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(20 * time.Second):
			t.Fatal("Close hung on a session accepted while closing")
		}
		<-handled
	}
}
