// Package plumtree is the core of a Plumtree broadcast ("Epidemic Broadcast Trees", Leitão,
// Pereira and Rodrigues, SRDS 2007) over a set of neighbours that some membership protocol
// maintains: new messages travel in full ("push") along a spanning tree of eager links, and
// only their ids ("announce") along the remaining, lazy links. A node that receives a
// message twice prunes the link it came over from the tree; a node that hears of a message
// only by announcement grafts the announcer's link back into the tree and asks it for the
// message. So in steady state each node receives each message about once, and the tree
// repairs itself when links fail.
//
// Unlike the paper, each source (in log sync: each author) gets a tree of its own, which
// starts as a copy of a tree shared by all sources and from then on follows only its own
// messages. The shared tree alone, as in the paper, is pruned by whichever messages happen
// to meet in a cycle; with several sources publishing at once, different messages cut
// different links of the same cycle, and the tree falls apart into fragments that only
// grafts (a timeout each) join again. In a simulation of 100 nodes with up to 50 ms of
// queueing delay per message that cost 1.6 copies per delivery and a graft for every third
// one; with a tree per source started from scratch (every link eager), 1.03 copies and
// 0.007 grafts, but then a source's first message reaches every node over every link.
// Starting each source's tree from the shared one keeps the first messages cheap too: in
// lfbench convergence, where each node publishes only a few operations, it took the wire
// bytes per delivery from 2.3x to 1.6x the payload at 50 nodes. Config.MaxSources bounds
// the sources with a tree of their own; the others follow the shared tree.
//
// Tree is a pure state machine: no goroutines, no I/O, no clock of its own. Every input that
// needs the time takes it as an argument, and the embedder calls Tick at NextDeadline. It
// neither stores messages nor knows which ones the node holds: the embedder asks its store
// before reporting an announcement, and reports every message that arrives by any path.
package plumtree

import (
	"container/heap"
	"math/rand/v2"
	"slices"
	"time"
)

// Config tunes a Tree. The zero value of a field means its default.
type Config struct {
	// GraftTimeout is how long a node waits, after the first announcement of a message it
	// lacks, for the message to arrive along the tree before it grafts the announcer.
	// Default 100 ms: well above a loaded loopback hop, below a human's notice.
	GraftTimeout time.Duration
	// RetryTimeout is how long after a graft the node grafts the next announcer if the
	// message still has not arrived. Default 50 ms.
	RetryTimeout time.Duration
	// MaxMissing bounds the announced-but-missing messages tracked at once; announcements
	// of further messages are ignored (the message still arrives along the tree, or at the
	// next catch-up). Default 4096.
	MaxMissing int
	// MaxAnnouncers bounds the announcers remembered per missing message. Default 8.
	MaxAnnouncers int
	// MaxSources bounds the sources with a tree of their own; past it the source that got
	// its tree longest ago follows the shared tree again. Default 4096.
	MaxSources int
}

func (c Config) withDefaults() Config {
	if c.GraftTimeout <= 0 {
		c.GraftTimeout = 100 * time.Millisecond
	}
	if c.RetryTimeout <= 0 {
		c.RetryTimeout = 50 * time.Millisecond
	}
	if c.MaxMissing <= 0 {
		c.MaxMissing = 4096
	}
	if c.MaxAnnouncers <= 0 {
		c.MaxAnnouncers = 8
	}
	if c.MaxSources <= 0 {
		c.MaxSources = 4096
	}
	return c
}

// ActionKind says what an Action asks the embedder to send.
type ActionKind uint8

const (
	// Push: send message ID in full to Peer.
	Push ActionKind = iota + 1
	// Announce: send message ID's id (only) to Peer.
	Announce
	// Graft: ask Peer for message ID and to push to this node from now on.
	Graft
	// Prune: tell Peer to stop pushing Source's messages to this node (ID is unused).
	Prune
)

func (k ActionKind) String() string {
	switch k {
	case Push:
		return "push"
	case Announce:
		return "announce"
	case Graft:
		return "graft"
	case Prune:
		return "prune"
	}
	return "unknown"
}

// Action is one message for the embedder to send, in order.
type Action[P, S, M comparable] struct {
	Kind   ActionKind
	Peer   P
	Source S // Prune
	ID     M // Push, Announce, Graft
}

// Stats counts what a Tree did, for metrics and tests.
type Stats struct {
	Pruned      uint64 // duplicates received (each answered with a Prune)
	Grafted     uint64 // grafts sent for messages that were announced but did not arrive
	Unannounced uint64 // announcements ignored because MaxMissing was reached
}

// Tree is one node's Plumtree state for one broadcast group, with peers P, sources S and
// message ids M. Inputs are AddPeer, RemovePeer, Originate, Receive, Announced, Pruned,
// Grafted and Tick; each returns the actions to carry out, valid until the next input. A
// Tree is not safe for concurrent use.
type Tree[P, S, M comparable] struct {
	cfg     Config
	rng     *rand.Rand
	peers   []P       // in order of addition, so that actions come out deterministically
	shared  []P       // neighbours out of the shared tree, which sources without their own follow
	lazy    map[S][]P // per source, the neighbours whose link is out of its own tree
	sources []S       // the keys of lazy, oldest first
	missing map[M]*missing[P]
	byTime  missingHeap[P, M]
	out     []Action[P, S, M]
	stats   Stats
}

// missing is a message this node heard of but does not hold.
type missing[P comparable] struct {
	announcers []P // in order of announcement; the next graft asks the first
	deadline   time.Time
	index      int // position in the heap
}

// New returns a Tree without neighbours.
func New[P, S, M comparable](cfg Config, rng *rand.Rand) *Tree[P, S, M] {
	return &Tree[P, S, M]{
		cfg:     cfg.withDefaults(),
		rng:     rng,
		lazy:    make(map[S][]P),
		missing: make(map[M]*missing[P]),
	}
}

// AddPeer adds a neighbour; its link starts in every tree, as in the paper: the first
// duplicates prune the surplus.
func (t *Tree[P, S, M]) AddPeer(p P) {
	if !slices.Contains(t.peers, p) {
		t.peers = append(t.peers, p)
	}
}

// RemovePeer forgets a neighbour. Missing messages it announced are asked of other
// announcers.
func (t *Tree[P, S, M]) RemovePeer(p P) {
	i := slices.Index(t.peers, p)
	if i < 0 {
		return
	}
	t.peers = slices.Delete(t.peers, i, i+1)
	t.shared = without(t.shared, p)
	for src, lazy := range t.lazy {
		t.lazy[src] = without(lazy, p)
	}
}

// isEager reports whether p's link is in src's tree; p must be a neighbour.
func (t *Tree[P, S, M]) isEager(p P, src S) bool {
	lazy, own := t.lazy[src]
	if !own {
		lazy = t.shared
	}
	return !slices.Contains(lazy, p)
}

// setEager puts neighbour p's link in or out of src's tree, and of the shared tree. A
// source without a tree of its own gets one here, a copy of the shared tree (after this
// change): from then on only its own messages shape it.
func (t *Tree[P, S, M]) setEager(p P, src S, eager bool) {
	if !slices.Contains(t.peers, p) {
		return
	}
	update := without[P]
	if !eager {
		update = with[P]
	}
	t.shared = update(t.shared, p)
	if lazy, own := t.lazy[src]; own {
		t.lazy[src] = update(lazy, p)
		return
	}
	if len(t.sources) >= t.cfg.MaxSources {
		delete(t.lazy, t.sources[0])
		t.sources = slices.Delete(t.sources, 0, 1)
	}
	t.sources = append(t.sources, src)
	t.lazy[src] = slices.Clone(t.shared)
}

func with[P comparable](set []P, p P) []P {
	if slices.Contains(set, p) {
		return set
	}
	return append(set, p)
}

func without[P comparable](set []P, p P) []P {
	if i := slices.Index(set, p); i >= 0 {
		return slices.Delete(set, i, i+1)
	}
	return set
}

// Originate spreads a message of source src that this node has now but did not receive
// over a live link: it was published here, or learnt from peer except (the zero P for
// none) outside the tree, for example while catching up. It goes in full to every
// neighbour but except in src's tree, and is announced to the others.
func (t *Tree[P, S, M]) Originate(src S, id M, except P) []Action[P, S, M] {
	t.out = t.out[:0]
	t.forget(id)
	t.spread(src, id, except)
	return t.out
}

// Receive reports that message id of source src arrived in full from neighbour from;
// fresh reports whether it was new to this node. A new message puts from's link in src's
// tree and is spread further; a duplicate takes the link out of src's tree and answers
// with a Prune.
func (t *Tree[P, S, M]) Receive(from P, src S, id M, fresh bool) []Action[P, S, M] {
	t.out = t.out[:0]
	if !fresh {
		t.setEager(from, src, false)
		t.stats.Pruned++
		t.out = append(t.out, Action[P, S, M]{Kind: Prune, Peer: from, Source: src})
		return t.out
	}
	t.setEager(from, src, true)
	t.forget(id)
	t.spread(src, id, from)
	return t.out
}

// Announced reports that neighbour from holds message id, which this node lacks (the
// embedder checked). If the message does not arrive within GraftTimeout, Tick grafts an
// announcer. (The announcer's link joins the message's tree when the message arrives.)
func (t *Tree[P, S, M]) Announced(from P, id M, now time.Time) {
	if !slices.Contains(t.peers, from) {
		return
	}
	if m, ok := t.missing[id]; ok {
		if len(m.announcers) < t.cfg.MaxAnnouncers {
			m.announcers = append(m.announcers, from)
		}
		return
	}
	if len(t.missing) >= t.cfg.MaxMissing {
		t.stats.Unannounced++
		return
	}
	m := &missing[P]{announcers: []P{from}, deadline: now.Add(t.graftDelay())}
	t.missing[id] = m
	heap.Push(&t.byTime, missingItem[P, M]{id: id, m: m})
}

// Pruned reports a Prune from neighbour from: it takes their link out of src's tree.
func (t *Tree[P, S, M]) Pruned(from P, src S) { t.setEager(from, src, false) }

// Grafted reports a Graft from neighbour from for a message of src: it puts their link in
// src's tree. The embedder sends the message itself.
func (t *Tree[P, S, M]) Grafted(from P, src S) { t.setEager(from, src, true) }

// Tick grafts, for every missing message whose deadline passed, its next announcer still
// a neighbour, and gives up on messages whose announcers are all gone.
func (t *Tree[P, S, M]) Tick(now time.Time) []Action[P, S, M] {
	t.out = t.out[:0]
	for len(t.byTime) > 0 && !t.byTime[0].m.deadline.After(now) {
		item := t.byTime[0]
		m := item.m
		var next P
		found := false
		for len(m.announcers) > 0 && !found {
			next, m.announcers = m.announcers[0], m.announcers[1:]
			found = slices.Contains(t.peers, next)
		}
		if !found {
			heap.Pop(&t.byTime)
			delete(t.missing, item.id)
			continue
		}
		t.stats.Grafted++
		t.out = append(t.out, Action[P, S, M]{Kind: Graft, Peer: next, ID: item.id})
		m.deadline = now.Add(t.cfg.RetryTimeout)
		heap.Fix(&t.byTime, 0)
	}
	return t.out
}

// graftDelay is GraftTimeout stretched by a random factor in [1, 2). When a whole
// subtree misses a message, each of its nodes hears announcements at about the same
// time; without jitter they would all graft at once, and the extra links would bring
// duplicates (and prunes) to every later message.
func (t *Tree[P, S, M]) graftDelay() time.Duration {
	return t.cfg.GraftTimeout + time.Duration(t.rng.Int64N(int64(t.cfg.GraftTimeout)))
}

// NextDeadline returns when Tick has work next; ok is false when nothing is missing.
func (t *Tree[P, S, M]) NextDeadline() (deadline time.Time, ok bool) {
	if len(t.byTime) == 0 {
		return time.Time{}, false
	}
	return t.byTime[0].m.deadline, true
}

// IsEager reports whether p is a neighbour whose link is in src's tree.
func (t *Tree[P, S, M]) IsEager(p P, src S) bool {
	return slices.Contains(t.peers, p) && t.isEager(p, src)
}

// Peers returns how many neighbours there are, how many sources have a tree of their own,
// and how many (source, neighbour) links are out of those trees in all.
func (t *Tree[P, S, M]) Peers() (peers, sources, lazyLinks int) {
	for _, l := range t.lazy {
		lazyLinks += len(l)
	}
	return len(t.peers), len(t.lazy), lazyLinks
}

// Missing returns how many announced messages are awaited.
func (t *Tree[P, S, M]) Missing() int { return len(t.missing) }

// Stats returns the counters.
func (t *Tree[P, S, M]) Stats() Stats { return t.stats }

func (t *Tree[P, S, M]) spread(src S, id M, except P) {
	for _, p := range t.peers {
		if p == except {
			continue
		}
		kind := Announce
		if t.isEager(p, src) {
			kind = Push
		}
		t.out = append(t.out, Action[P, S, M]{Kind: kind, Peer: p, ID: id})
	}
}

// forget stops waiting for a message that has arrived.
func (t *Tree[P, S, M]) forget(id M) {
	m, ok := t.missing[id]
	if !ok {
		return
	}
	heap.Remove(&t.byTime, m.index)
	delete(t.missing, id)
}

// missingHeap orders missing messages by deadline.
type missingItem[P, M comparable] struct {
	id M
	m  *missing[P]
}

type missingHeap[P, M comparable] []missingItem[P, M]

func (h missingHeap[P, M]) Len() int           { return len(h) }
func (h missingHeap[P, M]) Less(i, j int) bool { return h[i].m.deadline.Before(h[j].m.deadline) }
func (h missingHeap[P, M]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].m.index = i
	h[j].m.index = j
}
func (h *missingHeap[P, M]) Push(x any) {
	item := x.(missingItem[P, M])
	item.m.index = len(*h)
	*h = append(*h, item)
}
func (h *missingHeap[P, M]) Pop() any {
	old := *h
	item := old[len(old)-1]
	old[len(old)-1] = missingItem[P, M]{}
	*h = old[:len(old)-1]
	return item
}
