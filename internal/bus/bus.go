// Package bus fans events out to subscribers without ever blocking the publisher: a
// subscriber that falls behind loses the oldest events it has not read and is told how many
// it lost, so one slow consumer can never stall a protocol.
package bus

import (
	"context"
	"errors"
	"sync"
)

// initialRing is the ring size a subscription starts with; the ring grows towards its
// capacity only as unread events pile up. Allocating the capacity up front cost 100 MB of a
// 50-node, 10-topic lfbench run in which few subscriptions ever held more than a handful.
const initialRing = 64

// ErrClosed is returned by Next once the bus or the subscription is closed and every
// buffered event has been read.
var ErrClosed = errors.New("bus: closed")

// Bus broadcasts values of type T to its subscribers. The zero value is not usable; use New.
type Bus[T any] struct {
	mu     sync.Mutex
	subs   map[*Subscription[T]]struct{}
	closed bool
	weight func(T) int // nil: every event weighs nothing
}

// New returns an empty bus.
func New[T any]() *Bus[T] {
	return &Bus[T]{subs: make(map[*Subscription[T]]struct{})}
}

// NewWeighted returns an empty bus whose events have a weight (for example the bytes they
// hold), so that a subscription can bound what it buffers by weight as well as by count.
func NewWeighted[T any](weight func(T) int) *Bus[T] {
	return &Bus[T]{subs: make(map[*Subscription[T]]struct{}), weight: weight}
}

// Subscribe returns a subscription that buffers at most capacity unread events.
func (b *Bus[T]) Subscribe(capacity int) *Subscription[T] {
	return b.SubscribeWeighted(capacity, 0)
}

// SubscribeWeighted returns a subscription that buffers at most capacity unread events
// weighing at most maxWeight together (0: no bound on weight); the oldest are dropped to
// make room. One event heavier than maxWeight is still buffered when it is the only one.
func (b *Bus[T]) SubscribeWeighted(capacity, maxWeight int) *Subscription[T] {
	if capacity < 1 {
		capacity = 1
	}
	s := &Subscription[T]{bus: b, ring: make([]T, min(capacity, initialRing)), capacity: capacity, notify: make(chan struct{}, 1), weight: b.weight, maxWeight: maxWeight}
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
	dropped uint64
	closed  bool
	notify  chan struct{}

	// capacity is the most unread events the ring may grow to; it starts small so that a
	// generous bound costs nothing for subscribers that keep up.
	capacity  int
	weight    func(T) int
	maxWeight int
	weighs    int // total weight of the unread events
}

func (s *Subscription[T]) weightOf(v T) int {
	if s.weight == nil {
		return 0
	}
	return s.weight(v)
}

func (s *Subscription[T]) push(v T) {
	w := s.weightOf(v)
	s.mu.Lock()
	if s.n == len(s.ring) && len(s.ring) < s.capacity {
		s.grow()
	}
	for s.n == len(s.ring) || (s.n > 0 && s.maxWeight > 0 && s.weighs+w > s.maxWeight) {
		// Drop the oldest: the newest state is what a lagging consumer needs most.
		var zero T
		s.weighs -= s.weightOf(s.ring[s.head])
		s.ring[s.head] = zero
		s.head = (s.head + 1) % len(s.ring)
		s.n--
		s.dropped++
	}
	s.ring[(s.head+s.n)%len(s.ring)] = v
	s.n++
	s.weighs += w
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// grow doubles the ring (up to capacity), keeping the unread events in order.
func (s *Subscription[T]) grow() {
	ring := make([]T, min(2*len(s.ring), s.capacity))
	for i := range s.n {
		ring[i] = s.ring[(s.head+i)%len(s.ring)]
	}
	s.ring, s.head = ring, 0
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
			s.weighs -= s.weightOf(v)
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
