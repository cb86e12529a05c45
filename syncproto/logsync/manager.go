package logsync

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/lfnet/lfnet/codec"
	"github.com/lfnet/lfnet/internal/fifo"
	"github.com/lfnet/lfnet/internal/plumtree"
	"github.com/lfnet/lfnet/syncproto"
	"github.com/lfnet/lfnet/topics"
)

// Manager runs log sync for one topic over a Store: it creates the sessions the sync
// coordinator asks for, lets the application publish new operations, and in live mode
// spreads every new operation (published here or received from a peer) over the live
// sessions with Plumtree: in full along a spanning tree of them, as an id along the rest.
type Manager struct {
	store Store
	topic topics.Topic
	log   *slog.Logger
	now   func() time.Time

	maxBody        uint64
	liveQueue      int
	pendingMaxOps  int
	pendingMaxSize uint64

	// ingestMu serialises inserts for this topic, so that an operation parked for want of
	// its predecessor is always found by whoever inserts that predecessor.
	ingestMu   sync.Mutex
	pending    *pendingOps
	associated map[LogRef]struct{} // logs known to be associated with the topic

	// mu guards the live sessions and the broadcast tree over them. Lock order: ingestMu,
	// then mu.
	mu        sync.Mutex
	sessions  map[uint64]*session                     // sessions in (or about to enter) live mode
	tree      *plumtree.Tree[uint64, PublicKey, Hash] // a tree per author
	recent    recentOps                               // what a graft may ask for
	tickTimer *time.Timer                             // runs the tree's Tick at its next deadline
	tickAt    time.Time                               // when tickTimer fires; zero when it is stopped
}

// origin says where inserted operations come from: a session (0 for this node's own
// publications), and whether they arrived as live pushes or during catch-up.
type origin struct {
	session uint64
	live    bool
}

// ManagerOption configures a Manager.
type ManagerOption func(*Manager)

// WithClock injects the clock used for the timestamps of operations made by Append.
func WithClock(now func() time.Time) ManagerOption { return func(m *Manager) { m.now = now } }

// WithManagerLogger sets the logger (default slog.Default()).
func WithManagerLogger(l *slog.Logger) ManagerOption { return func(m *Manager) { m.log = l } }

// WithMaxBodySize sets the largest operation body accepted from peers.
func WithMaxBodySize(n uint64) ManagerOption { return func(m *Manager) { m.maxBody = n } }

// WithLiveQueue sets how many operations may wait for one live session; a session that
// falls further behind is closed (and later re-synced) rather than holding memory.
func WithLiveQueue(n int) ManagerOption { return func(m *Manager) { m.liveQueue = n } }

// WithPendingLimit bounds the live operations held while their predecessor is missing.
func WithPendingLimit(ops int, bytes uint64) ManagerOption {
	return func(m *Manager) { m.pendingMaxOps, m.pendingMaxSize = ops, bytes }
}

// NewManager returns the log sync manager of topic over store.
func NewManager(store Store, topic topics.Topic, opts ...ManagerOption) *Manager {
	m := &Manager{
		store:          store,
		topic:          topic,
		log:            slog.Default(),
		now:            time.Now,
		maxBody:        DefaultMaxBodySize,
		liveQueue:      4096,
		pendingMaxOps:  4096,
		pendingMaxSize: 64 << 20,
		associated:     make(map[LogRef]struct{}),
		sessions:       make(map[uint64]*session),
		recent:         newRecentOps(recentMaxOps, recentMaxBytes),
	}
	for _, o := range opts {
		o(m)
	}
	m.tree = plumtree.New[uint64, PublicKey, Hash](plumtree.Config{}, rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())))
	m.pending = newPendingOps(m.pendingMaxOps, m.pendingMaxSize)
	m.log = m.log.With("component", "logsync", "topic", topic.Short())
	return m
}

// Topic returns the manager's topic.
func (m *Manager) Topic() topics.Topic { return m.topic }

// Store returns the store the manager reads and writes.
func (m *Manager) Store() Store { return m.store }

// NewSession implements syncproto.Manager.
func (m *Manager) NewSession(info syncproto.SessionInfo) (syncproto.Protocol, error) {
	return newSession(m, info), nil
}

// Append signs body as the next operation of the log (author of priv, logID), stores it
// and, in live mode, sends it to every neighbour.
func (m *Manager) Append(ctx context.Context, priv ed25519.PrivateKey, logID uint64, body []byte, extensions codec.RawMessage) (*Operation, error) {
	m.ingestMu.Lock()
	defer m.ingestMu.Unlock()
	log := LogRef{Author: PublicKeyOf(priv), LogID: logID}
	prev, _, err := m.store.Latest(ctx, log)
	if err != nil {
		return nil, fmt.Errorf("logsync: append to %s: %w", log, err)
	}
	op, err := NewOperation(priv, prev, body, extensions, uint64(m.now().UnixMicro()))
	if err != nil {
		return nil, err
	}
	if _, err := m.insertLocked(ctx, []Entry{{Op: op, LogID: logID}}, origin{}); err != nil {
		return nil, err
	}
	return op, nil
}

// Publish stores an operation made elsewhere (for example by NewOperation) in log logID
// of the topic and, in live mode, sends it to every neighbour.
func (m *Manager) Publish(ctx context.Context, op *Operation, logID uint64) error {
	m.ingestMu.Lock()
	defer m.ingestMu.Unlock()
	_, err := m.insertLocked(ctx, []Entry{{Op: op, LogID: logID}}, origin{})
	return err
}

// ingest stores verified operations received from a session and returns those that
// were new (including parked ones they unblocked). Operations ahead of their log are parked;
// any other chain error is returned after the valid prefix was stored.
func (m *Manager) ingest(ctx context.Context, entries []Entry, from origin) ([]Entry, error) {
	m.ingestMu.Lock()
	defer m.ingestMu.Unlock()
	return m.insertLocked(ctx, entries, from)
}

func (m *Manager) insertLocked(ctx context.Context, entries []Entry, from origin) ([]Entry, error) {
	var fresh []Entry
	var dups []Entry // live pushes of operations stored before: the tree prunes their link
	classify := func(entries []Entry, inserted []bool) {
		for i, ok := range inserted {
			switch {
			case ok:
				fresh = append(fresh, entries[i])
			case from.live:
				dups = append(dups, entries[i])
			}
		}
	}
	defer func() {
		m.spread(fresh, dups, from)
	}()
	if err := m.associateLocked(ctx, entries); err != nil {
		return nil, err
	}
	for len(entries) > 0 {
		inserted, err := m.store.InsertBatch(ctx, entries)
		if err == nil {
			classify(entries, inserted)
			break
		}
		var be *BatchError
		if !errors.As(err, &be) {
			return fresh, fmt.Errorf("logsync: store: %w", err)
		}
		if be.Index > 0 {
			inserted, err := m.store.InsertBatch(ctx, entries[:be.Index])
			if err != nil {
				return fresh, fmt.Errorf("logsync: store: %w", err)
			}
			classify(entries[:be.Index], inserted)
		}
		if !errors.Is(be.Err, ErrMissingPredecessor) {
			return fresh, fmt.Errorf("%w: %w", ErrInvalidOperation, be.Err)
		}
		m.pending.park(entries[be.Index])
		entries = entries[be.Index+1:]
	}
	// Each new operation may be the predecessor a parked one waits for.
	for i := 0; i < len(fresh); i++ {
		e := fresh[i]
		next, ok := m.pending.take(e.Op.Log(e.LogID), e.Op.Header.SeqNum+1)
		if !ok {
			continue
		}
		inserted, err := m.store.Insert(ctx, next.Op, next.LogID)
		if err != nil {
			// A parked operation that no longer fits (its log was pruned or forked
			// meanwhile) is dropped: it was never stored, and the next sync will tell.
			m.log.Debug("dropping parked operation", "op", next.Op.Hash(), "err", err)
			continue
		}
		if inserted {
			fresh = append(fresh, next)
		}
	}
	return fresh, nil
}

// associateLocked records the topic -> log association before the first operation of a log
// is stored, so that every stored operation is reachable from its topic.
func (m *Manager) associateLocked(ctx context.Context, entries []Entry) error {
	for _, e := range entries {
		ref := e.Op.Log(e.LogID)
		if _, ok := m.associated[ref]; ok {
			continue
		}
		if err := m.store.Associate(ctx, m.topic, ref.Author, ref.LogID); err != nil {
			return fmt.Errorf("logsync: associate %s: %w", ref, err)
		}
		m.associated[ref] = struct{}{}
	}
	return nil
}

// spread hands new operations to the broadcast tree, and reports live duplicates to it.
// An operation that arrived as a live push travels on from its sender's link; any other
// (published here, caught up, or unparked) is spread as this node's own.
func (m *Manager) spread(fresh, dups []Entry, from origin) {
	if len(fresh) == 0 && len(dups) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// Only a link other than the one they came from can graft them.
	others := len(m.sessions) > 1 || (len(m.sessions) == 1 && m.sessions[from.session] == nil)
	for _, e := range fresh {
		id, author := e.Op.Hash(), e.Op.Header.PublicKey
		if others {
			m.recent.add(id, e)
		}
		if from.live {
			m.applyLocked(m.tree.Receive(from.session, author, id, true), e)
		} else {
			m.applyLocked(m.tree.Originate(author, id, from.session), e)
		}
	}
	for _, e := range dups {
		m.duplicateLocked(from.session, e.Op.Header.PublicKey, e.Op.Hash())
	}
	m.scheduleLocked()
}

// duplicate reports a live push from s of an operation by author stored before.
func (m *Manager) duplicate(s *session, author PublicKey, id Hash) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.duplicateLocked(s.info.ID, author, id)
}

func (m *Manager) duplicateLocked(session uint64, author PublicKey, id Hash) {
	m.applyLocked(m.tree.Receive(session, author, id, false), Entry{})
}

// announced handles an Announce from s: the tree waits for the operations this node
// lacks and grafts s if they do not arrive.
func (m *Manager) announced(ctx context.Context, s *session, ids []Hash) error {
	// s has them: never send them there. An id that already crossed this link (we sent or
	// announced it, or s pushed it and it is being stored) needs no store lookup.
	unseen := ids[:0]
	for _, id := range ids {
		if !s.markSeen(id) {
			unseen = append(unseen, id)
		}
	}
	if len(unseen) == 0 {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	for _, id := range unseen {
		// Looked up under mu, so that an insert that lands meanwhile (and then forgets
		// the id in the tree under mu) cannot leave it awaited.
		has, err := m.store.Has(ctx, id)
		if err != nil {
			return fmt.Errorf("logsync: look up announced operation %s: %w", id, err)
		}
		if !has {
			m.tree.Announced(s.info.ID, id, now)
		}
	}
	m.scheduleLocked()
	return nil
}

// grafted handles a Graft from s: s's link joins the tree and gets the operations it asked
// for. One that is no longer among the recent operations is not sent; the peer then asks
// another announcer, and its next catch-up brings it anyway.
func (m *Manager) grafted(s *session, ids []Hash) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range ids {
		if e, ok := m.recent.get(id); ok && !s.markAnswered(id) {
			m.tree.Grafted(s.info.ID, e.Op.Header.PublicKey)
			s.enqueue(liveItem{kind: kindLive, entry: e, answer: true})
		}
	}
}

// pruned handles a Prune from s: s's link leaves the trees of these authors.
func (m *Manager) pruned(s *session, authors []PublicKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, a := range authors {
		m.tree.Pruned(s.info.ID, a)
	}
}

// applyLocked queues the tree's actions on their sessions. Pushes come only from spreading
// an operation, which is e.
func (m *Manager) applyLocked(acts []plumtree.Action[uint64, PublicKey, Hash], e Entry) {
	for _, a := range acts {
		s, ok := m.sessions[a.Peer]
		if !ok {
			continue
		}
		switch a.Kind {
		case plumtree.Push:
			s.enqueue(liveItem{kind: kindLive, entry: e})
		case plumtree.Announce:
			s.enqueue(liveItem{kind: kindAnnounce, id: a.ID})
		case plumtree.Graft:
			s.enqueue(liveItem{kind: kindGraft, id: a.ID})
		case plumtree.Prune:
			s.enqueue(liveItem{kind: kindPrune, id: Hash(a.Source)})
		}
	}
}

// scheduleLocked sets the tick timer to the tree's next deadline.
func (m *Manager) scheduleLocked() {
	next, ok := m.tree.NextDeadline()
	if !ok || (!m.tickAt.IsZero() && !next.Before(m.tickAt)) {
		return
	}
	m.tickAt = next
	d := time.Until(next)
	if m.tickTimer == nil {
		m.tickTimer = time.AfterFunc(d, m.tick)
		return
	}
	m.tickTimer.Reset(d)
}

func (m *Manager) tick() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tickAt = time.Time{}
	m.applyLocked(m.tree.Tick(time.Now()), Entry{})
	m.scheduleLocked()
}

func (m *Manager) register(s *session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sessions[s.info.ID] = s
	m.tree.AddPeer(s.info.ID)
}

func (m *Manager) unregister(s *session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, s.info.ID)
	m.tree.RemovePeer(s.info.ID)
	if len(m.sessions) == 0 && m.tickTimer != nil {
		m.tickTimer.Stop()
		m.tickAt = time.Time{}
	}
}

// LiveStats describes the broadcast trees (one per author) over a manager's live sessions.
type LiveStats struct {
	Sessions    int    // live sessions (the trees' links)
	Authors     int    // authors whose tree leaves some links out
	LazyLinks   int    // (author, link) pairs over which operations are only announced
	Missing     int    // announced operations awaited
	Pruned      uint64 // duplicates received, each answered with a Prune
	Grafted     uint64 // grafts sent for announced operations that did not arrive
	Unannounced uint64 // announcements ignored because too many were awaited
}

// LiveStats returns the state of the live broadcast tree.
func (m *Manager) LiveStats() LiveStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	peers, authors, lazy := m.tree.Peers()
	st := m.tree.Stats()
	return LiveStats{Sessions: peers, Authors: authors, LazyLinks: lazy, Missing: m.tree.Missing(), Pruned: st.Pruned, Grafted: st.Grafted, Unannounced: st.Unannounced}
}

// recentOps keeps the operations spread lately, which grafts ask for, within a
// count and a byte budget, oldest out first.
type recentOps struct {
	maxOps   int
	maxBytes uint64
	bytes    uint64
	byID     map[Hash]Entry
	order    fifo.Queue[Hash] // ids, oldest first
}

const (
	recentMaxOps   = 4096
	recentMaxBytes = 16 << 20
)

func newRecentOps(maxOps int, maxBytes uint64) recentOps {
	return recentOps{maxOps: maxOps, maxBytes: maxBytes, byID: make(map[Hash]Entry)}
}

// add keeps e; a single operation above the byte budget is still kept, alone.
func (r *recentOps) add(id Hash, e Entry) {
	if _, ok := r.byID[id]; ok {
		return
	}
	size := e.Op.encodedSize()
	for len(r.byID) > 0 && (len(r.byID) >= r.maxOps || r.bytes+size > r.maxBytes) {
		old, _ := r.order.Pop()
		r.bytes -= r.byID[old].Op.encodedSize()
		delete(r.byID, old)
	}
	r.byID[id] = e
	r.bytes += size
	r.order.Push(id)
}

func (r *recentOps) get(id Hash) (Entry, bool) {
	e, ok := r.byID[id]
	return e, ok
}

// pendingOps parks live operations whose predecessor has not arrived, within limits; past
// them new arrivals are dropped (a later catch-up delivers them in order).
type pendingOps struct {
	maxOps   int
	maxBytes uint64
	bytes    uint64
	byPos    map[pendingKey]Entry
}

type pendingKey struct {
	log LogRef
	seq uint64
}

func newPendingOps(maxOps int, maxBytes uint64) *pendingOps {
	return &pendingOps{maxOps: maxOps, maxBytes: maxBytes, byPos: make(map[pendingKey]Entry)}
}

func (p *pendingOps) park(e Entry) {
	size := e.Op.encodedSize()
	k := pendingKey{e.Op.Log(e.LogID), e.Op.Header.SeqNum}
	if _, dup := p.byPos[k]; dup || len(p.byPos) >= p.maxOps || p.bytes+size > p.maxBytes {
		return
	}
	p.byPos[k] = e
	p.bytes += size
}

func (p *pendingOps) take(log LogRef, seq uint64) (Entry, bool) {
	k := pendingKey{log, seq}
	e, ok := p.byPos[k]
	if ok {
		delete(p.byPos, k)
		p.bytes -= e.Op.encodedSize()
	}
	return e, ok
}

func (p *pendingOps) len() int { return len(p.byPos) }
