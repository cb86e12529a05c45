package lfnet

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/lfnet/lfnet/codec"
	"github.com/lfnet/lfnet/syncproto"
	"github.com/lfnet/lfnet/syncproto/logsync"
	"github.com/lfnet/lfnet/topics"
)

// LogIDFor returns the id of the log a node appends to for topic t: derived from the topic,
// so that each topic has its own log per author and syncing one topic never hands out
// another topic's operations.
func LogIDFor(t topics.Topic) uint64 {
	d := topics.Derive(t, "log-id")
	return binary.BigEndian.Uint64(d[:8])
}

// LogSync is a handle on a topic's append-only logs: this node's own log, which Publish
// extends, and every other author's logs, which sync brings in from the topic's overlay
// neighbours. Handles are reference counted; the node leaves the topic when the last
// handle of any kind closes.
type LogSync struct {
	n     *Node
	ts    *topicState
	once  sync.Once
	logID uint64
}

// LogSync opens log sync on topic. With live set, sessions stay open after catching up and
// new operations reach neighbours (and, through them, the whole overlay) as they are
// published; without it, neighbours re-sync periodically. All handles of a topic share one
// live setting.
func (n *Node) LogSync(ctx context.Context, t topics.Topic, live bool) (*LogSync, error) {
	ts, err := n.acquire(ctx, t)
	if err != nil {
		return nil, err
	}
	if err := n.openSync(ts, live); err != nil {
		n.release(ts)
		return nil, err
	}
	return &LogSync{n: n, ts: ts, logID: LogIDFor(t)}, nil
}

// openSync starts the topic's sync on its first LogSync handle and counts the handle.
func (n *Node) openSync(ts *topicState, live bool) error {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.sync != nil {
		if ts.live != live {
			return fmt.Errorf("%w: %s is synced with live=%t", ErrLiveMismatch, ts.topic.Short(), ts.live)
		}
		ts.syncRefs++
		return nil
	}
	mgr := logsync.NewManager(n.store, ts.topic, logsync.WithManagerLogger(n.cfg.logger))
	cfg := n.cfg.syncConfig
	cfg.Live = live
	st, err := n.sync.Open(ts.topic, mgr, cfg)
	if err != nil {
		return fmt.Errorf("lfnet: open sync for %s: %w", ts.topic.Short(), err)
	}
	ts.sync, ts.mgr, ts.live, ts.syncRefs = st, mgr, live, 1
	// Neighbours that arrived before sync was opened.
	for _, p := range ts.overlay.ActiveView() {
		st.NeighborUp(p)
	}
	return nil
}

// Topic returns the handle's topic.
func (l *LogSync) Topic() topics.Topic { return l.ts.topic }

// Publish appends body to this node's log of the topic, stores it and sends it on.
func (l *LogSync) Publish(ctx context.Context, body []byte) (*logsync.Operation, error) {
	return l.PublishWithExtensions(ctx, body, nil)
}

// PublishWithExtensions is Publish with header extensions (one canonical CBOR item).
func (l *LogSync) PublishWithExtensions(ctx context.Context, body []byte, extensions codec.RawMessage) (*logsync.Operation, error) {
	mgr := l.manager()
	if mgr == nil {
		return nil, ErrClosed
	}
	return mgr.Append(ctx, l.n.key, l.logID, body, extensions)
}

// Subscribe returns the topic's sync events; each operation that arrives from a peer and
// is stored comes as an ItemReceived event whose Item is a logsync.Entry.
func (l *LogSync) Subscribe() (*syncproto.Subscription, error) {
	l.ts.mu.Lock()
	defer l.ts.mu.Unlock()
	if l.ts.sync == nil {
		return nil, ErrClosed
	}
	return l.ts.sync.Subscribe(), nil
}

// Range calls fn for every stored operation of the topic, log by log in seq order. It
// streams from the store, so it suits logs of any size.
func (l *LogSync) Range(ctx context.Context, fn func(logsync.Entry) error) error {
	logs, err := l.n.store.Resolve(ctx, l.ts.topic)
	if err != nil {
		return fmt.Errorf("lfnet: resolve %s: %w", l.ts.topic.Short(), err)
	}
	for author, ids := range logs {
		for _, id := range ids {
			ref := logsync.LogRef{Author: author, LogID: id}
			heights, err := l.n.store.Heights(ctx, []logsync.LogRef{ref})
			if err != nil {
				return fmt.Errorf("lfnet: heights: %w", err)
			}
			err = l.n.store.Range(ctx, ref, 0, heights[ref], func(op *logsync.Operation) error {
				return fn(logsync.Entry{Op: op, LogID: id})
			})
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// LiveStats describes the topic's live broadcast tree: links, how many of them carry
// operations in full, duplicates pruned and grafts sent. It is zero without live mode.
func (l *LogSync) LiveStats() logsync.LiveStats { return l.manager().LiveStats() }

func (l *LogSync) manager() *logsync.Manager {
	l.ts.mu.Lock()
	defer l.ts.mu.Unlock()
	return l.ts.mgr
}

// Close releases the handle; the last handle of the topic stops its sync sessions.
func (l *LogSync) Close() error {
	l.once.Do(func() {
		ts := l.ts
		ts.mu.Lock()
		ts.syncRefs--
		var st *syncproto.Topic
		if ts.syncRefs == 0 {
			st, ts.sync, ts.mgr = ts.sync, nil, nil
		}
		ts.mu.Unlock()
		if st != nil {
			st.Close()
		}
		l.n.release(ts)
	})
	return nil
}
