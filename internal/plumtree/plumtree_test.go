package plumtree

import (
	"container/heap"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0)

func kinds[P, M comparable](acts []Action[P, M]) map[P]ActionKind {
	got := make(map[P]ActionKind)
	for _, a := range acts {
		got[a.Peer] = a.Kind
	}
	return got
}

func TestNewPeersAreEagerAndOriginatePushesToThem(t *testing.T) {
	tr := New[int, int](Config{}, rand.New(rand.NewPCG(1, 2)))
	tr.AddPeer(1)
	tr.AddPeer(2)
	tr.AddPeer(3)
	got := kinds(tr.Originate(7, 2))
	want := map[int]ActionKind{1: Push, 3: Push}
	if len(got) != len(want) || got[1] != Push || got[3] != Push {
		t.Fatalf("Originate = %v, want %v", got, want)
	}
}

func TestDuplicatePrunesAndLazyPeersGetAnnouncements(t *testing.T) {
	tr := New[int, int](Config{}, rand.New(rand.NewPCG(1, 2)))
	for p := 1; p <= 3; p++ {
		tr.AddPeer(p)
	}
	if acts := tr.Receive(1, 10, true); len(acts) != 2 {
		t.Fatalf("fresh message forwarded as %v, want pushes to 2 and 3", acts)
	}
	acts := tr.Receive(2, 10, false)
	if len(acts) != 1 || acts[0] != (Action[int, int]{Kind: Prune, Peer: 2}) {
		t.Fatalf("duplicate answered with %v, want a prune of 2", acts)
	}
	if tr.IsEager(2) {
		t.Fatal("a peer that sent a duplicate is still eager")
	}
	got := kinds(tr.Originate(11, 0))
	if got[1] != Push || got[2] != Announce || got[3] != Push {
		t.Fatalf("after pruning 2, Originate = %v", got)
	}
	tr.Pruned(3)
	if got := kinds(tr.Originate(12, 0)); got[3] != Announce {
		t.Fatalf("after a prune from 3, Originate = %v", got)
	}
	tr.Grafted(3)
	if got := kinds(tr.Originate(13, 0)); got[3] != Push {
		t.Fatalf("after a graft from 3, Originate = %v", got)
	}
	if all, eager := tr.Peers(); all != 3 || eager != 2 {
		t.Fatalf("Peers = %d, %d eager; want 3, 2", all, eager)
	}
}

func TestMissingMessageGraftsAnnouncersInTurn(t *testing.T) {
	cfg := Config{GraftTimeout: 100 * time.Millisecond, RetryTimeout: 50 * time.Millisecond}
	tr := New[int, int](cfg, rand.New(rand.NewPCG(1, 2)))
	for p := 1; p <= 3; p++ {
		tr.AddPeer(p)
	}
	tr.Pruned(1)
	tr.Pruned(2)
	tr.Announced(1, 5, t0)
	tr.Announced(2, 5, t0.Add(10*time.Millisecond))
	tr.Announced(9, 5, t0) // not a neighbour: ignored
	d, ok := tr.NextDeadline()
	if !ok || d.Before(t0.Add(100*time.Millisecond)) || !d.Before(t0.Add(200*time.Millisecond)) {
		t.Fatalf("NextDeadline = %v, %v; want within [GraftTimeout, 2 GraftTimeout)", d.Sub(t0), ok)
	}
	if acts := tr.Tick(d.Add(-time.Nanosecond)); len(acts) != 0 {
		t.Fatalf("Tick before the deadline = %v", acts)
	}
	acts := tr.Tick(d)
	if len(acts) != 1 || acts[0] != (Action[int, int]{Kind: Graft, Peer: 1, ID: 5}) {
		t.Fatalf("first graft = %v", acts)
	}
	if d2, _ := tr.NextDeadline(); !d2.Equal(d.Add(50 * time.Millisecond)) {
		t.Fatalf("retry at %v after the graft, want RetryTimeout", d2.Sub(d))
	}
	if !tr.IsEager(1) {
		t.Fatal("grafted peer is not eager")
	}
	tr.RemovePeer(2) // the second announcer leaves: nobody left to ask
	if acts := tr.Tick(d.Add(50 * time.Millisecond)); len(acts) != 0 {
		t.Fatalf("graft to a departed announcer: %v", acts)
	}
	if tr.Missing() != 0 {
		t.Fatalf("Missing = %d after every announcer was tried", tr.Missing())
	}
}

func TestArrivalCancelsTheGraft(t *testing.T) {
	tr := New[int, int](Config{}, rand.New(rand.NewPCG(1, 2)))
	tr.AddPeer(1)
	tr.AddPeer(2)
	tr.Announced(1, 5, t0)
	tr.Receive(2, 5, true)
	if _, ok := tr.NextDeadline(); ok || tr.Missing() != 0 {
		t.Fatal("a message that arrived is still awaited")
	}
	tr.Announced(1, 6, t0)
	tr.Originate(6, 0) // learnt by catch-up
	if acts := tr.Tick(t0.Add(time.Hour)); len(acts) != 0 {
		t.Fatalf("Tick = %v for messages that arrived", acts)
	}
}

func TestMissingIsBounded(t *testing.T) {
	tr := New[int, int](Config{MaxMissing: 3, MaxAnnouncers: 2}, rand.New(rand.NewPCG(1, 2)))
	for p := 1; p <= 4; p++ {
		tr.AddPeer(p)
	}
	for id := range 10 {
		for p := 1; p <= 4; p++ {
			tr.Announced(p, id, t0)
		}
	}
	if tr.Missing() != 3 || tr.Stats().Unannounced != 7*4 {
		t.Fatalf("Missing = %d, Unannounced = %d", tr.Missing(), tr.Stats().Unannounced)
	}
	if n := len(tr.missing[0].announcers); n != 2 {
		t.Fatalf("%d announcers remembered, limit 2", n)
	}
}

// The simulation runs a Tree per node over a random graph with per-link latency, FIFO
// links and virtual time, as the embedder would: pushes deliver the message, announcements
// are checked against what the node holds, grafts are answered with a push.

type simMsg struct {
	kind ActionKind
	from int
	id   int
}

type simEvent struct {
	at   time.Duration
	seq  int
	to   int
	msg  simMsg
	tick bool
}

type simQueue []simEvent

func (q simQueue) Len() int { return len(q) }
func (q simQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q simQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *simQueue) Push(x any)   { *q = append(*q, x.(simEvent)) }
func (q *simQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

type sim struct {
	rng     *rand.Rand
	trees   []*Tree[int, int]
	links   map[[2]int]time.Duration // one-way latency, both directions
	lastAt  map[[2]int]time.Duration // last arrival per directed link, to keep it FIFO
	down    []bool
	has     []map[int]bool
	copies  []int // full copies received per node
	bytes   int   // payload-sized pushes sent
	control int   // announcements, grafts and prunes sent
	now     time.Duration
	seq     int
	queue   simQueue
	ticks   map[int]time.Duration // scheduled tick per node
}

func newSim(n, degree int, seed uint64) *sim {
	return newSimLatency(n, degree, seed, 5*time.Millisecond, 50*time.Millisecond)
}

func newSimLatency(n, degree int, seed uint64, minLat, maxLat time.Duration) *sim {
	s := &sim{
		rng:    rand.New(rand.NewPCG(seed, 1)),
		links:  make(map[[2]int]time.Duration),
		lastAt: make(map[[2]int]time.Duration),
		down:   make([]bool, n),
		copies: make([]int, n),
		ticks:  make(map[int]time.Duration),
	}
	for range n {
		s.trees = append(s.trees, New[int, int](Config{}, rand.New(rand.NewPCG(seed, uint64(len(s.trees))))))
		s.has = append(s.has, make(map[int]bool))
	}
	// A ring keeps the graph connected; random chords bring the degree up.
	link := func(a, b int) {
		if a == b || s.links[[2]int{a, b}] != 0 {
			return
		}
		lat := minLat + time.Duration(s.rng.Int64N(int64(maxLat-minLat)))
		s.links[[2]int{a, b}], s.links[[2]int{b, a}] = lat, lat
		s.trees[a].AddPeer(b)
		s.trees[b].AddPeer(a)
	}
	for i := range n {
		link(i, (i+1)%n)
	}
	for i := range n {
		for range degree/2 - 1 {
			link(i, s.rng.IntN(n))
		}
	}
	return s
}

func (s *sim) send(from int, acts []Action[int, int]) {
	for _, a := range acts {
		if a.Kind == Push {
			s.bytes++
		} else {
			s.control++
		}
		key := [2]int{from, a.Peer}
		at := max(s.now+s.links[key], s.lastAt[key])
		s.lastAt[key] = at
		s.seq++
		heap.Push(&s.queue, simEvent{at: at, seq: s.seq, to: a.Peer, msg: simMsg{kind: a.Kind, from: from, id: a.ID}})
	}
}

func (s *sim) schedule(node int) {
	d, ok := s.trees[node].NextDeadline()
	if !ok {
		return
	}
	at := d.Sub(t0)
	if cur, ok := s.ticks[node]; ok && cur <= at {
		return
	}
	s.ticks[node] = at
	s.seq++
	heap.Push(&s.queue, simEvent{at: at, seq: s.seq, to: node, tick: true})
}

func (s *sim) publish(node, id int) {
	s.has[node][id] = true
	s.send(node, s.trees[node].Originate(id, -1))
}

func (s *sim) run(until time.Duration) {
	for len(s.queue) > 0 && s.queue[0].at <= until {
		e := heap.Pop(&s.queue).(simEvent)
		s.now = e.at
		n := e.to
		if s.down[n] {
			continue
		}
		tr := s.trees[n]
		now := t0.Add(s.now)
		if e.tick {
			if s.ticks[n] == e.at {
				delete(s.ticks, n)
			}
			s.send(n, tr.Tick(now))
			s.schedule(n)
			continue
		}
		if s.links[[2]int{e.msg.from, n}] == 0 {
			continue // the link was cut while the message was under way
		}
		switch e.msg.kind {
		case Push:
			s.copies[n]++
			fresh := !s.has[n][e.msg.id]
			s.has[n][e.msg.id] = true
			s.send(n, tr.Receive(e.msg.from, e.msg.id, fresh))
		case Announce:
			if !s.has[n][e.msg.id] {
				tr.Announced(e.msg.from, e.msg.id, now)
			}
		case Graft:
			tr.Grafted(e.msg.from)
			if s.has[n][e.msg.id] {
				s.send(n, []Action[int, int]{{Kind: Push, Peer: e.msg.from, ID: e.msg.id}})
			}
		case Prune:
			tr.Pruned(e.msg.from)
		}
		s.schedule(n)
	}
	s.now = until
}

// crash takes node n down; its neighbours notice at once (a closed connection).
func (s *sim) crash(n int) {
	s.down[n] = true
	for key := range s.links {
		if key[0] == n {
			delete(s.links, key)
			delete(s.links, [2]int{key[1], n})
			s.trees[key[1]].RemovePeer(n)
		}
	}
}

func (s *sim) live() []int {
	var out []int
	for i, d := range s.down {
		if !d {
			out = append(out, i)
		}
	}
	return out
}

// broadcastRound publishes count messages from random live nodes, 20 ms apart, lets them
// settle, and returns the full copies received per delivery.
func (s *sim) broadcastRound(t *testing.T, firstID, count int) float64 {
	return s.broadcastEvery(t, firstID, count, 20*time.Millisecond)
}

func (s *sim) broadcastEvery(t *testing.T, firstID, count int, interval time.Duration) float64 {
	t.Helper()
	live := s.live()
	copiesBefore := 0
	for _, n := range live {
		copiesBefore += s.copies[n]
	}
	for i := range count {
		s.run(s.now + interval)
		s.publish(live[s.rng.IntN(len(live))], firstID+i)
	}
	s.run(s.now + 10*time.Second)
	copies := 0
	for _, n := range live {
		copies += s.copies[n]
		for id := firstID; id < firstID+count; id++ {
			if !s.has[n][id] {
				t.Fatalf("node %d never got message %d", n, id)
			}
		}
	}
	return float64(copies-copiesBefore) / float64(count*(len(live)-1))
}

// One message at a time (the paper's setting): once the first messages pruned the
// surplus links, the eager links form a spanning tree and every node gets one copy.
func TestSimulatedTreeDeliversEverythingWithAboutOneCopy(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		s := newSim(200, 6, seed)
		first := s.broadcastEvery(t, 0, 20, time.Second)
		settled := s.broadcastEvery(t, 1000, 100, time.Second)
		t.Logf("seed %d: copies per delivery %.2f while the tree forms, %.3f once formed; %d grafts", seed, first, settled, sumGrafts(s))
		if settled > 1.02 {
			t.Errorf("seed %d: %.3f copies per delivery once the tree formed, want 1", seed, settled)
		}
	}
}

// Many messages from many sources in flight at once prune different links of the same
// cycles, so the tree splits and grafts join it again: more copies than one, but far fewer
// than pushing to every neighbour (half the links' ends: 3 with degree 6), and no loss.
func TestSimulatedTreeUnderConcurrentSources(t *testing.T) {
	s := newSim(200, 6, 4)
	s.broadcastRound(t, 0, 50)
	if copies := s.broadcastRound(t, 1000, 200); copies > 2.4 {
		t.Errorf("%.3f copies per delivery with 20 ms between messages, want well below 3", copies)
	}
}

func TestSimulatedTreeRepairsAfterCrashes(t *testing.T) {
	s := newSim(200, 6, 7)
	s.broadcastEvery(t, 0, 50, time.Second)
	grafts := sumGrafts(s)
	for _, v := range s.rng.Perm(200)[:40] { // 20% of the nodes, tree links among them
		s.crash(v)
	}
	copies := s.broadcastEvery(t, 1000, 20, time.Second)
	if sumGrafts(s) == grafts {
		t.Fatal("no graft repaired the tree after 20% of the nodes crashed")
	}
	t.Logf("after crashing 40 of 200: copies per delivery %.3f, %d grafts", copies, sumGrafts(s)-grafts)
	if after := s.broadcastEvery(t, 2000, 50, time.Second); after > 1.02 {
		t.Errorf("%.3f copies per delivery after repair, want 1", after)
	}
}

func TestSimulationIsDeterministic(t *testing.T) {
	run := func() []int {
		s := newSim(100, 6, 42)
		s.broadcastRound(t, 0, 30)
		return slices.Clone(s.copies)
	}
	if a, b := run(), run(); !slices.Equal(a, b) {
		t.Fatal("the same seed gave different runs")
	}
}

func sumGrafts(s *sim) uint64 {
	var n uint64
	for _, tr := range s.trees {
		n += tr.Stats().Grafted
	}
	return n
}
