package logsync

import (
	"context"
	"slices"
	"sync"

	"github.com/lfnet/lfnet/topics"
)

// MemStore is a Store in memory, for tests and nodes that keep no data across restarts.
// It is safe for concurrent use.
type MemStore struct {
	mu     sync.RWMutex
	byHash map[Hash]memLoc
	logs   map[LogRef]*memLog
	topics map[topics.Topic]map[LogRef]struct{}
}

type memLoc struct {
	log LogRef
	seq uint64
}

type memLog struct {
	head logHead
	ops  []*Operation // ops[i] has seq num head.firstStart + i
}

func (l *memLog) op(seq uint64) *Operation { return l.ops[seq-l.head.firstStart] }

var _ Store = (*MemStore)(nil)

// NewMemStore returns an empty in-memory store.
func NewMemStore() *MemStore {
	return &MemStore{
		byHash: make(map[Hash]memLoc),
		logs:   make(map[LogRef]*memLog),
		topics: make(map[topics.Topic]map[LogRef]struct{}),
	}
}

// Close does nothing; the store stays usable.
func (s *MemStore) Close() error { return nil }

// Insert implements LogStore.
func (s *MemStore) Insert(ctx context.Context, op *Operation, logID uint64) (bool, error) {
	inserted, err := s.InsertBatch(ctx, []Entry{{Op: op, LogID: logID}})
	if err != nil {
		return false, unwrapBatch(err)
	}
	return inserted[0], nil
}

// InsertBatch implements LogStore.
func (s *MemStore) InsertBatch(ctx context.Context, entries []Entry) ([]bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Validate the whole batch against a staged view first, so that a rejected entry
	// leaves the store untouched.
	stagedHeads := make(map[LogRef]*logHead)
	stagedHashes := make(map[Hash]LogRef)
	inserted := make([]bool, len(entries))
	for i, e := range entries {
		if err := checkInsertable(e.Op); err != nil {
			return nil, &BatchError{Index: i, Err: err}
		}
		log := e.Op.Log(e.LogID)
		if stored, ok := stagedHashes[e.Op.hash]; ok {
			if err := alreadyIn(log, stored, e.Op); err != nil {
				return nil, &BatchError{Index: i, Err: err}
			}
			continue
		}
		if stored, ok := s.byHash[e.Op.hash]; ok {
			if err := alreadyIn(log, stored.log, e.Op); err != nil {
				return nil, &BatchError{Index: i, Err: err}
			}
			continue
		}
		head := stagedHeads[log]
		if head == nil {
			if l := s.logs[log]; l != nil {
				h := l.head
				head = &h
			}
		}
		ignore, err := checkAppend(log, head, e.Op)
		if err != nil {
			return nil, &BatchError{Index: i, Err: err}
		}
		if ignore {
			continue
		}
		if head == nil {
			head = &logHead{}
		}
		head.height++
		head.latest = e.Op.hash
		stagedHeads[log] = head
		stagedHashes[e.Op.hash] = log
		inserted[i] = true
	}
	for i, e := range entries {
		if !inserted[i] {
			continue
		}
		log := e.Op.Log(e.LogID)
		l := s.logs[log]
		if l == nil {
			l = &memLog{}
			s.logs[log] = l
		}
		l.ops = append(l.ops, e.Op)
		l.head.height = e.Op.Header.SeqNum + 1
		l.head.latest = e.Op.hash
		s.byHash[e.Op.hash] = memLoc{log: log, seq: e.Op.Header.SeqNum}
	}
	return inserted, nil
}

// Has implements LogStore.
func (s *MemStore) Has(ctx context.Context, id Hash) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.byHash[id]
	return ok, nil
}

// Get implements LogStore.
func (s *MemStore) Get(ctx context.Context, id Hash) (*Operation, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	loc, ok := s.byHash[id]
	if !ok {
		return nil, false, nil
	}
	return s.logs[loc.log].op(loc.seq), true, nil
}

// Heights implements LogStore.
func (s *MemStore) Heights(ctx context.Context, logs []LogRef) (map[LogRef]uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[LogRef]uint64, len(logs))
	for _, log := range logs {
		if l := s.logs[log]; l != nil {
			out[log] = l.head.height
		}
	}
	return out, nil
}

// Latest implements LogStore.
func (s *MemStore) Latest(ctx context.Context, log LogRef) (*Operation, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	l := s.logs[log]
	if l == nil {
		return nil, false, nil
	}
	return l.ops[len(l.ops)-1], true, nil
}

// Range implements LogStore.
func (s *MemStore) Range(ctx context.Context, log LogRef, after, until uint64, fn func(*Operation) error) error {
	next := after
	chunk := make([]*Operation, 0, rangeChunkOps)
	for next < until {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk = chunk[:0]
		s.mu.RLock()
		if l := s.logs[log]; l != nil {
			next = max(next, l.head.firstStart)
			end := min(until, l.head.height)
			var size uint64
			for seq := next; seq < end && len(chunk) < rangeChunkOps && size < rangeChunkBytes; seq++ {
				op := l.op(seq)
				chunk = append(chunk, op)
				size += op.encodedSize()
			}
		}
		s.mu.RUnlock()
		if len(chunk) == 0 {
			return nil
		}
		for _, op := range chunk {
			if err := fn(op); err != nil {
				return err
			}
		}
		next = chunk[len(chunk)-1].Header.SeqNum + 1
	}
	return nil
}

// RangeSize implements LogStore.
func (s *MemStore) RangeSize(ctx context.Context, log LogRef, after, until uint64) (uint64, uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	l := s.logs[log]
	if l == nil {
		return 0, 0, nil
	}
	var count, size uint64
	for seq := max(after, l.head.firstStart); seq < min(until, l.head.height); seq++ {
		count++
		size += l.op(seq).encodedSize()
	}
	return count, size, nil
}

// DeletePrefix implements LogStore.
func (s *MemStore) DeletePrefix(ctx context.Context, log LogRef, until uint64) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.logs[log]
	if l == nil {
		return 0, nil
	}
	until = min(until, l.head.height-1)
	if until <= l.head.firstStart {
		return 0, nil
	}
	n := until - l.head.firstStart
	for _, op := range l.ops[:n] {
		delete(s.byHash, op.hash)
	}
	// Cloning lets the pruned operations be garbage collected.
	l.ops = slices.Clone(l.ops[n:])
	l.head.firstStart = until
	return n, nil
}

// Associate implements TopicStore.
func (s *MemStore) Associate(ctx context.Context, topic topics.Topic, author PublicKey, logID uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.topics[topic]
	if set == nil {
		set = make(map[LogRef]struct{})
		s.topics[topic] = set
	}
	set[LogRef{Author: author, LogID: logID}] = struct{}{}
	return nil
}

// Resolve implements TopicStore.
func (s *MemStore) Resolve(ctx context.Context, topic topics.Topic) (map[PublicKey][]uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[PublicKey][]uint64)
	for log := range s.topics[topic] {
		out[log.Author] = append(out[log.Author], log.LogID)
	}
	for _, ids := range out {
		slices.Sort(ids)
	}
	return out, nil
}
