package topics

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/lfnet/lfnet/internal/bus"
)

// Registry is the set of topics this node currently holds. Gossip and sync handles add a
// topic when they open and remove it when they close; the topic stays held while any handle
// refers to it. Discovery reads it to know what to look for, and watchers learn when the set
// changes. It is safe for concurrent use.
type Registry struct {
	mu     sync.Mutex
	counts map[Topic]int
	events *bus.Bus[Change]
}

// Change reports that a topic entered (Held) or left (!Held) the registry.
type Change struct {
	Topic Topic
	Held  bool
}

// ErrWatchClosed is returned by Watcher.Next after the watcher or registry was closed.
var ErrWatchClosed = errors.New("topics: watch closed")

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{counts: make(map[Topic]int), events: bus.New[Change]()}
}

// Add takes a reference to t and reports whether t was newly held.
func (r *Registry) Add(t Topic) (first bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[t]++
	if r.counts[t] == 1 {
		r.events.Publish(Change{Topic: t, Held: true})
		return true
	}
	return false
}

// Remove drops a reference to t and reports whether it was the last one. Removing a topic
// that is not held does nothing.
func (r *Registry) Remove(t Topic) (last bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, ok := r.counts[t]
	if !ok {
		return false
	}
	if n > 1 {
		r.counts[t] = n - 1
		return false
	}
	delete(r.counts, t)
	r.events.Publish(Change{Topic: t, Held: false})
	return true
}

// Has reports whether t is held.
func (r *Registry) Has(t Topic) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[t] > 0
}

// Topics returns the held topics in ascending byte order.
func (r *Registry) Topics() []Topic {
	r.mu.Lock()
	out := make([]Topic, 0, len(r.counts))
	for t := range r.counts {
		out = append(out, t)
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b Topic) int { return bytes.Compare(a[:], b[:]) })
	return out
}

// Watch returns a watcher of changes from now on. It buffers up to 256 unread changes;
// beyond that the oldest are dropped and Next reports how many, so a watcher that falls
// behind should re-read Topics.
func (r *Registry) Watch() *Watcher {
	return &Watcher{sub: r.events.Subscribe(256)}
}

// Close ends every watcher.
func (r *Registry) Close() { r.events.Close() }

// Watcher delivers registry changes to one consumer goroutine.
type Watcher struct {
	sub *bus.Subscription[Change]
}

// Next returns the next change and how many changes were dropped before it.
func (w *Watcher) Next(ctx context.Context) (c Change, dropped uint64, err error) {
	c, dropped, err = w.sub.Next(ctx)
	if errors.Is(err, bus.ErrClosed) {
		return c, 0, ErrWatchClosed
	}
	return c, dropped, err
}

// Close stops the watcher.
func (w *Watcher) Close() { w.sub.Close() }
