package main

import (
	"context"
	"sync"
	"time"

	"github.com/lfnet/lfnet/syncproto/logsync"
)

// timedStore is the receiver's store with its inserts timed. The receiver's store stage runs
// beside verification, so insert time is no longer lost to verification, but it shows how
// busy the store stage (bbolt's commits and fsyncs) is, and the batch sizes show how well
// its group commits amortise them.
type timedStore struct {
	logsync.Store

	mu      sync.Mutex
	batches int
	ops     int
	total   time.Duration
	longest time.Duration
}

func (s *timedStore) InsertBatch(ctx context.Context, entries []logsync.Entry) ([]bool, error) {
	start := time.Now()
	inserted, err := s.Store.InsertBatch(ctx, entries)
	d := time.Since(start)
	s.mu.Lock()
	s.batches++
	s.ops += len(entries)
	s.total += d
	s.longest = max(s.longest, d)
	s.mu.Unlock()
	return inserted, err
}

// insertStats is what a timedStore saw.
type insertStats struct {
	batches, ops   int
	total, longest time.Duration
}

func (s *timedStore) stats() insertStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return insertStats{batches: s.batches, ops: s.ops, total: s.total, longest: s.longest}
}
