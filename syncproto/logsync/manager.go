package logsync

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/lfnet/lfnet/codec"
	"github.com/lfnet/lfnet/syncproto"
	"github.com/lfnet/lfnet/topics"
)

// Manager runs log sync for one topic over a Store: it creates the sessions the sync
// coordinator asks for, lets the application publish new operations, and in live mode pushes
// every new operation (published here or received from a peer) to each live session once.
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

	mu       sync.Mutex
	sessions map[uint64]*session // sessions in (or about to enter) live mode
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
	}
	for _, o := range opts {
		o(m)
	}
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
	if _, err := m.insertLocked(ctx, []Entry{{Op: op, LogID: logID}}, 0); err != nil {
		return nil, err
	}
	return op, nil
}

// Publish stores an operation made elsewhere (for example by NewOperation) in log logID
// of the topic and, in live mode, sends it to every neighbour.
func (m *Manager) Publish(ctx context.Context, op *Operation, logID uint64) error {
	m.ingestMu.Lock()
	defer m.ingestMu.Unlock()
	_, err := m.insertLocked(ctx, []Entry{{Op: op, LogID: logID}}, 0)
	return err
}

// ingest stores verified operations received from session source and returns those that
// were new (including parked ones they unblocked). Operations ahead of their log are parked;
// any other chain error is returned after the valid prefix was stored.
func (m *Manager) ingest(ctx context.Context, entries []Entry, source uint64) ([]Entry, error) {
	m.ingestMu.Lock()
	defer m.ingestMu.Unlock()
	return m.insertLocked(ctx, entries, source)
}

func (m *Manager) insertLocked(ctx context.Context, entries []Entry, source uint64) ([]Entry, error) {
	var fresh []Entry
	if err := m.associateLocked(ctx, entries); err != nil {
		return nil, err
	}
	for len(entries) > 0 {
		inserted, err := m.store.InsertBatch(ctx, entries)
		if err == nil {
			fresh = appendInserted(fresh, entries, inserted)
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
			fresh = appendInserted(fresh, entries[:be.Index], inserted)
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
	m.broadcast(fresh, source)
	return fresh, nil
}

func appendInserted(dst, entries []Entry, inserted []bool) []Entry {
	for i, ok := range inserted {
		if ok {
			dst = append(dst, entries[i])
		}
	}
	return dst
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

// broadcast hands new operations to every live session except the one they came from.
func (m *Manager) broadcast(entries []Entry, source uint64) {
	if len(entries) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, s := range m.sessions {
		if id == source {
			continue
		}
		for _, e := range entries {
			s.push(e)
		}
	}
}

func (m *Manager) register(s *session) {
	m.mu.Lock()
	m.sessions[s.info.ID] = s
	m.mu.Unlock()
}

func (m *Manager) unregister(s *session) {
	m.mu.Lock()
	delete(m.sessions, s.info.ID)
	m.mu.Unlock()
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
