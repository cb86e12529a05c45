// Package bus fans events out to subscribers without ever blocking the publisher: a
// subscriber that falls behind loses the oldest events it has not read and is told how many
// it lost, so one slow consumer can never stall a protocol.
package bus

import (
	"context"
	"errors"
	"sync"
)

// ErrClosed is returned by Next once the bus or the subscription is closed and every
// buffered event has been read.
var ErrClosed = errors.New("bus: closed")

// Bus broadcasts values of type T to its subscribers. The zero value is not usable; use New.
type Bus[T any] struct {
	mu     sync.Mutex
	subs   map[*Subscription[T]]struct{}
	closed bool
}

// New returns an empty bus.
func New[T any]() *Bus[T] {
	return &Bus[T]{subs: make(map[*Subscription[T]]struct{})}
}

// initialRing is how many unread events a new subscription has room for before its ring
// grows towards its capacity. Rings are not allocated at full capacity up front: a sync
// event is about 200 bytes, so a 1024-event ring per subscription cost 100 MB in a 50-node,
// 10-topic lfbench run where few of them ever held more than a handful of events.
const initialRing = 8

// Subscribe returns a subscription that buffers at most capacity unread events.
func (b *Bus[T]) Subscribe(capacity int) *Subscription[T] {
	if capacity < 1 {
		capacity = 1
	}
	s := &Subscription[T]{bus: b, ring: make([]T, min(capacity, initialRing)), limit: capacity, notify: make(chan struct{}, 1)}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		s.closed = true
		return s
	}
	b.subs[s] = struct{}{}
	return s
}

// Publish delivers v to every subscriber; it never blocks on a subscriber.
func (b *Bus[T]) Publish(v T) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		s.push(v)
	}
}

// Close ends every subscription; buffered events can still be read.
func (b *Bus[T]) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for s := range b.subs {
		s.close()
	}
	clear(b.subs)
}

// Subscription is one subscriber's view of a Bus.
type Subscription[T any] struct {
	bus     *Bus[T]
	mu      sync.Mutex
	ring    []T // unread events: ring[head], ring[head+1], ... (mod len), n of them
	head, n int
	limit   int // the capacity the ring may grow to
	dropped uint64
	closed  bool
	notify  chan struct{}
}

func (s *Subscription[T]) push(v T) {
	s.mu.Lock()
	if s.n == len(s.ring) && len(s.ring) < s.limit {
		grown := make([]T, min(2*len(s.ring), s.limit))
		for i := range s.n {
			grown[i] = s.ring[(s.head+i)%len(s.ring)]
		}
		s.ring, s.head = grown, 0
	}
	if s.n == len(s.ring) {
		// Drop the oldest: the newest state is what a lagging consumer needs most.
		s.head = (s.head + 1) % len(s.ring)
		s.n--
		s.dropped++
	}
	s.ring[(s.head+s.n)%len(s.ring)] = v
	s.n++
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func (s *Subscription[T]) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Next returns the next event, waiting until one arrives or ctx ends. Dropped reports how
// many events were lost to lag since the previous call; a consumer that sees a non-zero
// value should resynchronise from the source of truth rather than trust its event history.
func (s *Subscription[T]) Next(ctx context.Context) (v T, dropped uint64, err error) {
	for {
		s.mu.Lock()
		if s.n > 0 {
			var zero T
			v, s.ring[s.head] = s.ring[s.head], zero
			s.head = (s.head + 1) % len(s.ring)
			s.n--
			dropped, s.dropped = s.dropped, 0
			s.mu.Unlock()
			return v, dropped, nil
		}
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return v, 0, ErrClosed
		}
		select {
		case <-s.notify:
		case <-ctx.Done():
			return v, 0, ctx.Err()
		}
	}
}

// Close ends this subscription; other subscribers are unaffected.
func (s *Subscription[T]) Close() {
	s.bus.mu.Lock()
	delete(s.bus.subs, s)
	s.bus.mu.Unlock()
	s.close()
}
