package logsync

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/lfnet/lfnet/syncproto"
	"github.com/lfnet/lfnet/topics"
)

const syncTestProto = protocol.ID("/lfnet/test/sync/1")

// syncNode is one node of a sync test: a real libp2p host, the sync service, a store and
// the topic's log sync manager.
type syncNode struct {
	h     host.Host
	svc   *syncproto.Service
	store Store
	mgr   *Manager
	tp    *syncproto.Topic
	key   ed25519.PrivateKey

	mu       sync.Mutex
	received syncproto.Metrics // summed over finished sessions
	finished int               // SyncFinished events
	ended    int               // SessionEnded events
	failures []error
	done     chan struct{}
}

func newSyncNode(t *testing.T, room topics.Topic, live bool, store Store) *syncNode {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay(), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(nil)
	n := &syncNode{h: h, store: store, key: key, done: make(chan struct{})}
	n.svc = syncproto.NewService(h, syncTestProto)
	n.mgr = NewManager(store, room)
	cfg := syncproto.DefaultCoordinatorConfig()
	cfg.Live = live
	cfg.RetryBase = 200 * time.Millisecond
	n.tp, err = n.svc.Open(room, n.mgr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sub := n.tp.Subscribe()
	go func() {
		defer close(n.done)
		for {
			ev, err := sub.Next(context.Background())
			if err != nil {
				return
			}
			n.mu.Lock()
			switch ev.Kind {
			case syncproto.SyncFinished:
				n.finished++
				n.received.ItemsReceived += ev.Metrics.ItemsReceived
				n.received.BytesReceived += ev.Metrics.BytesReceived
			case syncproto.SessionEnded:
				n.ended++
			case syncproto.SessionFailed:
				n.failures = append(n.failures, ev.Err)
			}
			n.mu.Unlock()
		}
	}()
	t.Cleanup(func() { n.close(t) })
	return n
}

func (n *syncNode) close(t *testing.T) {
	if n.svc == nil {
		return
	}
	if err := n.svc.Close(); err != nil {
		t.Error(err)
	}
	<-n.done
	if err := n.h.Close(); err != nil {
		t.Error(err)
	}
	n.svc = nil
}

func (n *syncNode) stats() (syncproto.Metrics, []error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.received, append([]error(nil), n.failures...)
}

// link makes a and b neighbours, as membership would after a join.
func link(t *testing.T, a, b *syncNode) {
	t.Helper()
	if err := a.h.Connect(context.Background(), peer.AddrInfo{ID: b.h.ID(), Addrs: b.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	a.tp.NeighborUp(b.h.ID())
	b.tp.NeighborUp(a.h.ID())
}

func (n *syncNode) append(t *testing.T, count int, bodySize int) {
	t.Helper()
	for i := range count {
		body := make([]byte, bodySize)
		copy(body, fmt.Sprintf("%x op %d", n.key.Public().(ed25519.PublicKey)[:4], i))
		if _, err := n.mgr.Append(context.Background(), n.key, 0, body, nil); err != nil {
			t.Fatal(err)
		}
	}
}

func (n *syncNode) logRef() LogRef { return LogRef{Author: PublicKeyOf(n.key), LogID: 0} }

// waitHeights polls until every node holds every listed log at the wanted height.
func waitHeights(t *testing.T, nodes []*syncNode, want map[LogRef]uint64) {
	t.Helper()
	refs := make([]LogRef, 0, len(want))
	for r := range want {
		refs = append(refs, r)
	}
	deadline := time.Now().Add(60 * time.Second)
	for i, n := range nodes {
		for {
			got, err := n.store.Heights(context.Background(), refs)
			if err != nil {
				t.Fatal(err)
			}
			ok := len(got) == len(want)
			for r, h := range want {
				ok = ok && got[r] == h
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d: heights %v, want %v", i, got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func TestSyncTwoNodesDisjointLogs(t *testing.T) {
	room := topics.Random()
	a := newSyncNode(t, room, false, NewMemStore())
	b := newSyncNode(t, room, false, NewMemStore())
	a.append(t, 50, 100)
	b.append(t, 30, 0) // header-only operations too
	link(t, a, b)
	waitHeights(t, []*syncNode{a, b}, map[LogRef]uint64{a.logRef(): 50, b.logRef(): 30})
	// Every stored operation is reachable from the topic on both sides.
	for _, n := range []*syncNode{a, b} {
		logs, err := n.store.Resolve(context.Background(), room)
		if err != nil || len(logs) != 2 {
			t.Fatalf("topic resolves to %v, %v", logs, err)
		}
	}
}

func TestSyncFiveNodesRingLiveConvergeOnUnion(t *testing.T) {
	room := topics.Random()
	var nodes []*syncNode
	want := map[LogRef]uint64{}
	for i := range 5 {
		n := newSyncNode(t, room, true, NewMemStore())
		n.append(t, 10+i, 64)
		want[n.logRef()] = uint64(10 + i)
		nodes = append(nodes, n)
	}
	// A ring: most pairs are not neighbours, so data must travel several hops, which it
	// does because every newly stored operation is pushed to the other live sessions.
	for i := range nodes {
		link(t, nodes[i], nodes[(i+1)%len(nodes)])
	}
	waitHeights(t, nodes, want)
}

func TestSyncLateJoinerCatchesUp(t *testing.T) {
	room := topics.Random()
	a := newSyncNode(t, room, false, NewMemStore())
	b := newSyncNode(t, room, false, NewMemStore())
	a.append(t, 40, 10)
	b.append(t, 40, 10)
	link(t, a, b)
	want := map[LogRef]uint64{a.logRef(): 40, b.logRef(): 40}
	waitHeights(t, []*syncNode{a, b}, want)
	late := newSyncNode(t, room, false, NewMemStore())
	link(t, late, b) // knows only b, gets a's log through b's store
	waitHeights(t, []*syncNode{late}, want)
}

func TestSyncRestartFromBoltResumesWithoutRedownload(t *testing.T) {
	room := topics.Random()
	path := filepath.Join(t.TempDir(), "b.db")
	a := newSyncNode(t, room, false, NewMemStore())
	a.append(t, 200, 100)
	openBolt := func() Store {
		s, err := OpenBoltStore(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	store1 := openBolt()
	b := newSyncNode(t, room, false, store1)
	link(t, a, b)
	waitHeights(t, []*syncNode{b}, map[LogRef]uint64{a.logRef(): 200})
	first := waitReceived(t, b, 200)
	b.close(t)
	if err := store1.Close(); err != nil {
		t.Fatal(err)
	}

	a.append(t, 10, 100)
	b2 := newSyncNode(t, room, false, openBolt())
	link(t, a, b2)
	waitHeights(t, []*syncNode{b2}, map[LogRef]uint64{a.logRef(): 210})
	second := waitReceived(t, b2, 10)
	if second.ItemsReceived != 10 || second.BytesReceived*15 > first.BytesReceived {
		t.Fatalf("after restart received %d ops / %d bytes; the first sync took %d ops / %d bytes",
			second.ItemsReceived, second.BytesReceived, first.ItemsReceived, first.BytesReceived)
	}
}

// waitReceived polls until n's finished sessions received at least ops operations.
func waitReceived(t *testing.T, n *syncNode, ops uint64) syncproto.Metrics {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m, _ := n.stats()
		if m.ItemsReceived >= ops {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("received %d operations, want %d", m.ItemsReceived, ops)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSyncLiveChainDeliversAcrossHops(t *testing.T) {
	room := topics.Random()
	a := newSyncNode(t, room, true, NewMemStore())
	b := newSyncNode(t, room, true, NewMemStore())
	c := newSyncNode(t, room, true, NewMemStore())
	subC := c.tp.Subscribe()
	defer subC.Close()
	link(t, a, b)
	link(t, b, c) // a and c are not neighbours
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for live := 0; live < 1; {
		ev, err := subC.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Kind == syncproto.LiveModeStarted {
			live++
		}
	}
	waitLive(t, a, b)
	op, err := a.mgr.Append(ctx, a.key, 0, []byte("hello across two hops"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := subC.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for the live operation at c: %v", err)
		}
		if ev.Kind == syncproto.ItemReceived && ev.Item.(Entry).Op.Hash() == op.Hash() {
			break
		}
	}
}

// waitLive polls until a has a live session registered for b... and b for a.
func waitLive(t *testing.T, nodes ...*syncNode) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range nodes {
		for {
			n.mgr.mu.Lock()
			k := len(n.mgr.sessions)
			n.mgr.mu.Unlock()
			if k > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no live session")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// evilManager speaks the log sync protocol but sends an operation whose body was swapped
// after signing.
type evilManager struct{ op *Operation }

func (e evilManager) NewSession(syncproto.SessionInfo) (syncproto.Protocol, error) { return e, nil }

func (e evilManager) Run(ctx context.Context, conn syncproto.Conn, emit func(syncproto.Event)) error {
	write := func(kind uint64, msg any) error {
		b, err := encodeMessage(kind, msg)
		if err != nil {
			return err
		}
		return conn.WriteFrame(b)
	}
	forged := append([]byte(nil), e.op.Body...)
	forged[0] ^= 1
	steps := []struct {
		kind uint64
		msg  any
	}{
		{kindHave, haveMsg{Logs: []haveEntry{}}},
		{kindPreSync, preSyncMsg{Ops: 1, Bytes: uint64(len(e.op.HeaderBytes()) + len(forged))}},
		{kindOp, opMsg{LogID: 0, Header: e.op.HeaderBytes(), BodySize: uint64(len(forged)), Body: forged}},
		{kindDone, doneMsg{}},
	}
	for _, s := range steps {
		if err := write(s.kind, s.msg); err != nil {
			return err
		}
	}
	_ = conn.CloseWrite()
	for {
		if _, err := conn.ReadFrame(); err != nil {
			return nil
		}
	}
}

func TestSyncForgedOperationCutsOffPeerHonestPeersConverge(t *testing.T) {
	room := topics.Random()
	a := newSyncNode(t, room, false, NewMemStore())
	b := newSyncNode(t, room, false, NewMemStore())
	a.append(t, 5, 10)
	b.append(t, 5, 10)

	_, evilKey, _ := ed25519.GenerateKey(nil)
	op, err := NewOperation(evilKey, nil, []byte("genuine body"), nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	eh, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay(), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	defer eh.Close()
	esvc := syncproto.NewService(eh, syncTestProto)
	defer esvc.Close()
	etp, err := esvc.Open(room, evilManager{op: op}, syncproto.DefaultCoordinatorConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := eh.Connect(context.Background(), peer.AddrInfo{ID: a.h.ID(), Addrs: a.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	etp.NeighborUp(a.h.ID())
	link(t, a, b)

	waitHeights(t, []*syncNode{a, b}, map[LogRef]uint64{a.logRef(): 5, b.logRef(): 5})
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, failures := a.stats()
		found := false
		for _, err := range failures {
			found = found || (errors.Is(err, ErrInvalidOperation) && errors.Is(err, ErrBodyMismatch))
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session failed with ErrInvalidOperation; failures: %v", failures)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if has, _ := a.store.Has(context.Background(), op.Hash()); has {
		t.Fatal("forged operation stored")
	}
}

// TestProbeSyncsOnceAndCloses: anti-entropy probes a node that shares the topic but is not
// a neighbour. The probe brings both up to date and ends; it must not stay open in live
// mode, or every probe would leave a live link outside the overlay.
func TestProbeSyncsOnceAndCloses(t *testing.T) {
	room := topics.Random()
	a, b := newSyncNode(t, room, true, NewMemStore()), newSyncNode(t, room, true, NewMemStore())
	if err := a.h.Connect(context.Background(), peer.AddrInfo{ID: b.h.ID(), Addrs: b.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	a.append(t, 3, 100)
	b.append(t, 5, 100)
	a.tp.Probe(b.h.ID())
	waitHeights(t, []*syncNode{a, b}, map[LogRef]uint64{a.logRef(): 3, b.logRef(): 5})
	waitFor(t, "the probe session to end on both sides", func() bool {
		a.mu.Lock()
		b.mu.Lock()
		defer a.mu.Unlock()
		defer b.mu.Unlock()
		return a.ended == 1 && b.ended == 1
	})
	if a.mgr.LiveStats().Sessions != 0 || b.mgr.LiveStats().Sessions != 0 {
		t.Fatal("a live session outlived the probe")
	}
	for _, n := range []*syncNode{a, b} {
		if _, failures := n.stats(); len(failures) != 0 {
			t.Fatalf("probe failed: %v", failures)
		}
	}
}

// TestLiveAndOneShotNeighboursEndCleanly: a node that runs the topic live and one that
// does not are neighbours. Their sessions end when the one-shot side is done, even while
// the live side pushes new operations, and neither side counts that as a failure.
func TestLiveAndOneShotNeighboursEndCleanly(t *testing.T) {
	room := topics.Random()
	live, oneShot := newSyncNode(t, room, true, NewMemStore()), newSyncNode(t, room, false, NewMemStore())
	link(t, live, oneShot)
	want := map[LogRef]uint64{}
	for round := 0; ; round++ {
		live.append(t, 1, 100)
		want[live.logRef()]++
		oneShot.mu.Lock()
		finished := oneShot.finished
		oneShot.mu.Unlock()
		if finished >= 3 {
			break
		}
		if round > 10000 {
			t.Fatal("fewer than three sessions finished")
		}
		time.Sleep(5 * time.Millisecond) // paces the publisher; the loop waits on session counts
	}
	waitHeights(t, []*syncNode{live, oneShot}, want)
	for _, n := range []*syncNode{live, oneShot} {
		if _, failures := n.stats(); len(failures) != 0 {
			t.Fatalf("sessions failed: %v", failures)
		}
	}
}
