package logsync

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/lfnet/lfnet/syncproto"
	"github.com/lfnet/lfnet/topics"
)

// liveMesh starts n live nodes, links every pair and waits until each has a live session
// with every other.
func liveMesh(t *testing.T, n int) []*syncNode {
	t.Helper()
	room := topics.Random()
	nodes := make([]*syncNode, n)
	for i := range nodes {
		nodes[i] = newSyncNode(t, room, true, NewMemStore())
	}
	for i := range nodes {
		for j := i + 1; j < n; j++ {
			link(t, nodes[i], nodes[j])
		}
	}
	waitFor(t, "a live session with every other node", func() bool {
		for _, nd := range nodes {
			if nd.mgr.LiveStats().Sessions != n-1 {
				return false
			}
		}
		return true
	})
	return nodes
}

// waitFor polls cond until it holds, or fails the test after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// publishAndWait appends one operation at nodes[from] and waits until every node holds it.
func publishAndWait(t *testing.T, nodes []*syncNode, from int, heights map[LogRef]uint64) {
	t.Helper()
	nodes[from].append(t, 1, 200)
	heights[nodes[from].logRef()]++
	waitHeights(t, nodes, heights)
}

func totalPruned(nodes []*syncNode) (pruned, grafted uint64) {
	for _, n := range nodes {
		st := n.mgr.LiveStats()
		pruned += st.Pruned
		grafted += st.Grafted
	}
	return pruned, grafted
}

// With every node linked to every other, pushing each new operation to every neighbour
// would bring each node n-2 duplicates. Each author's broadcast tree prunes the surplus
// links with the author's first operations; after that, its operations arrive once.
func TestLiveTreePrunesDuplicateLinks(t *testing.T) {
	const n = 6
	nodes := liveMesh(t, n)
	heights := make(map[LogRef]uint64)
	for i := range 2 * n { // warm-up: every node publishes twice
		publishAndWait(t, nodes, i%n, heights)
	}
	warmPruned, _ := totalPruned(nodes)
	if warmPruned == 0 {
		t.Fatal("a full mesh of live sessions pruned no link")
	}
	const measured = 30
	for i := range measured {
		publishAndWait(t, nodes, (i*5)%n, heights)
	}
	pruned, grafted := totalPruned(nodes)
	lazy := 0
	for _, nd := range nodes {
		lazy += nd.mgr.LiveStats().LazyLinks
	}
	// Each author's spanning tree keeps n-1 of the mesh's n(n-1)/2 links, so each author
	// has (n-1)(n-2)/2 links (twice as many link ends) out of its tree.
	t.Logf("warm-up pruned %d links; then %d duplicates and %d grafts for %d operations; %d lazy (author, link end) pairs (spanning trees leave %d)",
		warmPruned, pruned-warmPruned, grafted, measured, lazy, n*(n-1)*(n-2))
	// Eager push would cost (n-1)*n/2 - (n-1) = 10 duplicates per operation here.
	if dups := pruned - warmPruned; dups > measured {
		t.Fatalf("%d duplicates for %d operations after the tree formed; eager push gives %d", dups, measured, measured*10)
	}
}

// sessionWith returns the id of n's live session with remote.
func sessionWith(t *testing.T, n *syncNode, remote peer.ID) *session {
	t.Helper()
	n.mgr.mu.Lock()
	defer n.mgr.mu.Unlock()
	for _, s := range n.mgr.sessions {
		if s.info.Remote == remote {
			return s
		}
	}
	t.Fatalf("no live session with %s", remote)
	return nil
}

// An operation announced but not pushed to a node is grafted from an announcer, and the
// link the graft went over joins the tree.
func TestLiveGraftFetchesAnnouncedOperation(t *testing.T) {
	nodes := liveMesh(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]
	// Take c out of a's tree on every side, as if c had pruned both links: a and b will
	// only announce a's operations to c.
	author := []PublicKey{PublicKeyOf(a.key)}
	a.mgr.pruned(sessionWith(t, a, c.h.ID()), author)
	b.mgr.pruned(sessionWith(t, b, c.h.ID()), author)
	c.mgr.pruned(sessionWith(t, c, a.h.ID()), author)
	c.mgr.pruned(sessionWith(t, c, b.h.ID()), author)
	if st := c.mgr.LiveStats(); st.LazyLinks != 2 {
		t.Fatalf("c has %d lazy links after pruning both", st.LazyLinks)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	op, err := a.mgr.Append(ctx, a.key, 0, []byte("announced, not pushed"), nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the operation at c", func() bool {
		has, err := c.store.Has(ctx, op.Hash())
		return err == nil && has
	})
	st := c.mgr.LiveStats()
	if st.Grafted == 0 || st.LazyLinks != 1 {
		t.Fatalf("c got the operation without a graft, or the graft's link is not in a's tree again: %+v", st)
	}
}

func TestRecentOpsBudget(t *testing.T) {
	r := newRecentOps(3, 1<<20)
	var ids []Hash
	for i := range 5 {
		op, err := NewOperation(keyA, nil, []byte{byte(i)}, nil, uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, op.Hash())
		r.add(op.Hash(), Entry{Op: op})
	}
	for i, id := range ids {
		if _, ok := r.get(id); ok != (i >= 2) {
			t.Fatalf("op %d kept = %v; want only the last 3", i, ok)
		}
	}
	big, err := NewOperation(keyA, nil, make([]byte, 2<<20), nil, 9)
	if err != nil {
		t.Fatal(err)
	}
	r.add(big.Hash(), Entry{Op: big})
	if _, ok := r.get(big.Hash()); !ok || len(r.byID) != 1 {
		t.Fatalf("an operation above the byte budget should be kept alone; %d kept", len(r.byID))
	}
	for i := range 2_000 { // the id queue is compacted, not grown without bound
		op, _ := NewOperation(keyA, nil, []byte{byte(i), byte(i >> 8)}, nil, uint64(100+i))
		r.add(op.Hash(), Entry{Op: op})
	}
	if len(r.byID) != 3 || r.order.Len() != 3 || r.order.Cap() > 2*3+8 {
		t.Fatalf("after 2,000 adds: %d kept, queue %d long (cap %d)", len(r.byID), r.order.Len(), r.order.Cap())
	}
}

// A graft is answered once per operation and link, however often the peer asks.
func TestRepeatedGraftIsAnsweredOnce(t *testing.T) {
	nodes := liveMesh(t, 2)
	a, b := nodes[0], nodes[1]
	op, err := a.mgr.Append(context.Background(), a.key, 0, []byte("asked for twice"), nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the operation at b", func() bool {
		has, err := b.store.Has(context.Background(), op.Hash())
		return err == nil && has
	})
	// A session that is not running, so that its queue shows every send.
	s := newSession(a.mgr, syncproto.SessionInfo{ID: 1 << 60, Remote: b.h.ID(), Live: true})
	ids := make([]Hash, 100)
	for i := range ids {
		ids[i] = op.Hash()
	}
	a.mgr.grafted(s, ids)
	a.mgr.grafted(s, ids)
	if n := s.live.len(); n != 1 {
		t.Fatalf("%d sends queued for 200 grafts of one operation, want 1", n)
	}
}

func TestLiveQueueIsBoundedAndCompacts(t *testing.T) {
	q := newLiveQueue(4)
	for i := range 4 {
		if !q.push(liveItem{id: Hash{byte(i)}}) {
			t.Fatalf("push %d refused below the bound", i)
		}
	}
	if q.push(liveItem{}) {
		t.Fatal("push above the bound accepted")
	}
	// A steady stream that never lets the queue run empty keeps its array small.
	for i := range 10_000 {
		it, ok := q.pop()
		if !ok || it.id[0] != byte(i) {
			t.Fatalf("pop %d = %v, %v; want FIFO order", i, it.id[0], ok)
		}
		if !q.push(liveItem{id: Hash{byte(i + 4)}}) {
			t.Fatal("push refused after a pop")
		}
	}
	if q.len() != 4 || q.items.Cap() > 16 {
		t.Fatalf("len %d, array of %d after a steady stream", q.len(), q.items.Cap())
	}
	for range 4 {
		q.pop()
	}
	if _, ok := q.pop(); ok {
		t.Fatal("pop from an empty queue")
	}
}
