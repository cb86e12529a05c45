package plumtree

import (
	"container/heap"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0)

func kinds[P, S, M comparable](acts []Action[P, S, M]) map[P]ActionKind {
	got := make(map[P]ActionKind)
	for _, a := range acts {
		got[a.Peer] = a.Kind
	}
	return got
}

func newTree(cfg Config) *Tree[int, int, int] {
	return New[int, int, int](cfg, rand.New(rand.NewPCG(1, 2)))
}

// Sources in these tests: srcA and srcB. Peers: small positive ints.
const (
	srcA = 100
	srcB = 200
)

func TestNewPeersAreEagerAndOriginatePushesToThem(t *testing.T) {
	tr := newTree(Config{})
	tr.AddPeer(1)
	tr.AddPeer(2)
	tr.AddPeer(3)
	got := kinds(tr.Originate(srcA, 7, 2))
	if len(got) != 2 || got[1] != Push || got[3] != Push {
		t.Fatalf("Originate = %v, want pushes to 1 and 3", got)
	}
}

func TestDuplicatePrunesItsSourcesTreeAndTheSharedOne(t *testing.T) {
	const srcC = 300
	tr := newTree(Config{})
	for p := 1; p <= 3; p++ {
		tr.AddPeer(p)
	}
	if acts := tr.Receive(1, srcB, 9, true); len(acts) != 2 { // srcB gets its own tree
		t.Fatalf("fresh message forwarded as %v, want pushes to 2 and 3", acts)
	}
	tr.Receive(1, srcA, 10, true)
	acts := tr.Receive(2, srcA, 10, false)
	if len(acts) != 1 || acts[0] != (Action[int, int, int]{Kind: Prune, Peer: 2, Source: srcA}) {
		t.Fatalf("duplicate answered with %v, want a prune of 2 for srcA", acts)
	}
	switch {
	case tr.IsEager(2, srcA):
		t.Fatal("a duplicate of srcA's left the link in srcA's tree")
	case !tr.IsEager(2, srcB):
		t.Fatal("a duplicate of srcA's took the link out of srcB's own tree")
	case tr.IsEager(2, srcC):
		t.Fatal("a source without a tree of its own must follow the shared tree, which lost the link")
	}
	got := kinds(tr.Originate(srcA, 11, 0))
	if got[1] != Push || got[2] != Announce || got[3] != Push {
		t.Fatalf("after pruning 2, Originate = %v", got)
	}
	if got := kinds(tr.Originate(srcB, 12, 0)); got[2] != Push {
		t.Fatalf("srcB's messages still go to 2 in full; got %v", got)
	}
	tr.Pruned(3, srcA)
	if got := kinds(tr.Originate(srcA, 13, 0)); got[3] != Announce {
		t.Fatalf("after a prune from 3, Originate = %v", got)
	}
	tr.Grafted(3, srcA)
	if got := kinds(tr.Originate(srcA, 14, 0)); got[3] != Push {
		t.Fatalf("after a graft from 3, Originate = %v", got)
	}
	tr.Receive(2, srcA, 15, true) // a lazy link that delivers first joins the tree again
	if !tr.IsEager(2, srcA) {
		t.Fatal("a fresh message from a lazy link must put it back in the tree")
	}
	if peers, sources, lazy := tr.Peers(); peers != 3 || sources != 2 || lazy != 0 {
		t.Fatalf("Peers = %d, %d, %d; want 3 peers, 2 sources with a tree (srcA, srcB), no lazy link left", peers, sources, lazy)
	}
}

func TestSourcesAreBounded(t *testing.T) {
	tr := newTree(Config{MaxSources: 2})
	tr.AddPeer(1)
	tr.AddPeer(2)
	for src := range 5 {
		tr.Pruned(1, src)
	}
	if _, sources, _ := tr.Peers(); sources != 2 {
		t.Fatalf("%d sources with a tree of their own, limit 2", sources)
	}
	tr.RemovePeer(1)
	if _, _, lazy := tr.Peers(); lazy != 0 || len(tr.shared) != 0 {
		t.Fatalf("a removed peer left %d lazy links (%d shared)", lazy, len(tr.shared))
	}
	tr.Pruned(9, srcA) // not a neighbour
	if _, sources, _ := tr.Peers(); sources != 2 {
		t.Fatal("a prune from a stranger was recorded")
	}
}

func TestMissingMessageGraftsAnnouncersInTurn(t *testing.T) {
	cfg := Config{GraftTimeout: 100 * time.Millisecond, RetryTimeout: 50 * time.Millisecond}
	tr := newTree(cfg)
	for p := 1; p <= 3; p++ {
		tr.AddPeer(p)
	}
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
	if len(acts) != 1 || acts[0] != (Action[int, int, int]{Kind: Graft, Peer: 1, ID: 5}) {
		t.Fatalf("first graft = %v", acts)
	}
	if d2, _ := tr.NextDeadline(); !d2.Equal(d.Add(50 * time.Millisecond)) {
		t.Fatalf("retry at %v after the graft, want RetryTimeout", d2.Sub(d))
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
	tr := newTree(Config{})
	tr.AddPeer(1)
	tr.AddPeer(2)
	tr.Announced(1, 5, t0)
	tr.Receive(2, srcA, 5, true)
	if _, ok := tr.NextDeadline(); ok || tr.Missing() != 0 {
		t.Fatal("a message that arrived is still awaited")
	}
	tr.Announced(1, 6, t0)
	tr.Originate(srcA, 6, 0) // learnt by catch-up
	if acts := tr.Tick(t0.Add(time.Hour)); len(acts) != 0 {
		t.Fatalf("Tick = %v for messages that arrived", acts)
	}
}

func TestMissingIsBounded(t *testing.T) {
	tr := newTree(Config{MaxMissing: 3, MaxAnnouncers: 2})
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
	src  int // Prune
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
	trees   []*Tree[int, int, int]
	links   map[[2]int]time.Duration // one-way latency, both directions
	lastAt  map[[2]int]time.Duration // last arrival per directed link, to keep it FIFO
	down    []bool
	has     []map[int]bool
	srcOf   map[int]int // message id -> the node that published it
	copies  []int       // full copies received per node
	bytes   int         // payload-sized pushes sent
	control int         // announcements, grafts and prunes sent
	now     time.Duration
	seq     int
	queue   simQueue
	ticks   map[int]time.Duration // scheduled tick per node
	jitter  time.Duration         // extra random delay per message (queueing), links stay FIFO
	sources []int                 // the nodes that publish (all when nil)
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
		srcOf:  make(map[int]int),
	}
	for range n {
		s.trees = append(s.trees, New[int, int, int](Config{}, rand.New(rand.NewPCG(seed, uint64(len(s.trees))))))
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

func (s *sim) send(from int, acts []Action[int, int, int]) {
	for _, a := range acts {
		if a.Kind == Push {
			s.bytes++
		} else {
			s.control++
		}
		key := [2]int{from, a.Peer}
		delay := s.links[key]
		if s.jitter > 0 {
			delay += time.Duration(s.rng.Int64N(int64(s.jitter)))
		}
		at := max(s.now+delay, s.lastAt[key])
		s.lastAt[key] = at
		s.seq++
		heap.Push(&s.queue, simEvent{at: at, seq: s.seq, to: a.Peer, msg: simMsg{kind: a.Kind, from: from, src: a.Source, id: a.ID}})
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
	s.srcOf[id] = node
	s.send(node, s.trees[node].Originate(node, id, -1))
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
			s.send(n, tr.Receive(e.msg.from, s.srcOf[e.msg.id], e.msg.id, fresh))
		case Announce:
			if !s.has[n][e.msg.id] {
				tr.Announced(e.msg.from, e.msg.id, now)
			}
		case Graft:
			tr.Grafted(e.msg.from, s.srcOf[e.msg.id])
			if s.has[n][e.msg.id] {
				s.send(n, []Action[int, int, int]{{Kind: Push, Peer: e.msg.from, ID: e.msg.id}})
			}
		case Prune:
			tr.Pruned(e.msg.from, e.msg.src)
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
	var sources []int
	for _, n := range s.sources {
		if !s.down[n] {
			sources = append(sources, n)
		}
	}
	if sources == nil {
		sources = live
	}
	for i := range count {
		s.run(s.now + interval)
		s.publish(sources[s.rng.IntN(len(sources))], firstID+i)
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

// One message at a time (the paper's setting): once a source's first messages pruned the
// surplus links, the eager links of its tree form a spanning tree and every node gets one
// copy.
func TestSimulatedTreeDeliversEverythingWithAboutOneCopy(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		s := newSim(200, 6, seed)
		s.sources = s.rng.Perm(200)[:10]
		first := s.broadcastEvery(t, 0, 60, time.Second)
		settled := s.broadcastEvery(t, 1000, 100, time.Second)
		t.Logf("seed %d: copies per delivery %.2f while the trees form, %.3f once formed; %d grafts", seed, first, settled, sumGrafts(s))
		if settled > 1.02 {
			t.Errorf("seed %d: %.3f copies per delivery once the trees formed, want 1", seed, settled)
		}
	}
}

// The very first message reaches every node over every link (all links start eager);
// later sources' first messages follow the tree the earlier ones shaped.
func TestSimulatedNewSourcesFollowTheSharedTree(t *testing.T) {
	s := newSim(200, 6, 5)
	s.sources = []int{17}
	first := s.broadcastEvery(t, 0, 1, time.Second)
	second := s.broadcastEvery(t, 1, 1, time.Second)
	s.sources = s.rng.Perm(200)[:50]
	newcomers := s.broadcastEvery(t, 2, 50, time.Second) // mostly first messages
	t.Logf("copies per delivery: first message %.3f, second %.3f, first messages of 50 new sources %.3f", first, second, newcomers)
	if first < 2 || second > 1.05 || newcomers > 1.05 {
		t.Fatalf("copies per delivery: first message %.3f (want a flood), second %.3f (want 1), new sources %.3f (want 1)", first, second, newcomers)
	}
}

// Every node publishes, 10 ms apart network-wide, with queueing delays of up to 50 ms per
// message on 1-3 ms links: many messages of many sources in flight at once, which breaks
// a tree shared by all sources into fragments (1.6 copies and a graft for every third
// delivery in this setting). Trees per source keep it close to one copy.
func TestSimulatedTreesUnderConcurrentSourcesAndJitter(t *testing.T) {
	s := newSimLatency(100, 5, 4, time.Millisecond, 3*time.Millisecond)
	s.jitter = 50 * time.Millisecond
	s.broadcastEvery(t, 0, 300, 10*time.Millisecond)
	grafts := sumGrafts(s)
	copies := s.broadcastEvery(t, 1000, 300, 10*time.Millisecond)
	perDelivery := float64(sumGrafts(s)-grafts) / float64(300*99)
	t.Logf("copies per delivery %.3f, grafts per delivery %.4f", copies, perDelivery)
	if copies > 1.2 || perDelivery > 0.1 {
		t.Errorf("copies per delivery %.3f (want < 1.2), grafts per delivery %.4f (want < 0.1)", copies, perDelivery)
	}
}

func TestSimulatedTreeRepairsAfterCrashes(t *testing.T) {
	s := newSim(200, 6, 7)
	perm := s.rng.Perm(200)
	s.sources = perm[:10]
	s.broadcastEvery(t, 0, 50, time.Second)
	grafts := sumGrafts(s)
	for _, v := range perm[10:50] { // 20% of the nodes, tree links among them; not the sources
		s.crash(v)
	}
	copies := s.broadcastEvery(t, 1000, 20, time.Second)
	if sumGrafts(s) == grafts {
		t.Fatal("no graft repaired the trees after 20% of the nodes crashed")
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
