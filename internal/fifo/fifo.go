// Package fifo is a first-in, first-out queue that holds memory only for what it holds: its
// ring grows as items arrive and is let go when the queue empties after a burst.
package fifo

// Queue is a FIFO of T kept in a growable ring. The zero value is an empty queue. It is
// not safe for concurrent use.
type Queue[T any] struct {
	ring    []T // items: ring[head], ring[head+1], ... (mod len), n of them
	head, n int
}

const (
	// minRing is the ring a queue starts with.
	minRing = 8
	// retainRing is the largest ring an empty queue keeps; a larger one is released, so
	// that a burst does not pin its array while the queue idles.
	retainRing = 64
)

// Len returns how many items the queue holds.
func (q *Queue[T]) Len() int { return q.n }

// Cap returns how many items the queue holds room for before its ring grows.
func (q *Queue[T]) Cap() int { return len(q.ring) }

// Push adds v at the back.
func (q *Queue[T]) Push(v T) {
	if q.n == len(q.ring) {
		q.grow()
	}
	q.ring[(q.head+q.n)%len(q.ring)] = v
	q.n++
}

// Front returns the oldest item without taking it, or false when the queue is empty.
func (q *Queue[T]) Front() (T, bool) {
	if q.n == 0 {
		var zero T
		return zero, false
	}
	return q.ring[q.head], true
}

// Pop takes the oldest item, or reports false when the queue is empty.
func (q *Queue[T]) Pop() (T, bool) {
	var zero T
	if q.n == 0 {
		return zero, false
	}
	v := q.ring[q.head]
	q.ring[q.head] = zero // the queue must not keep what it handed out alive
	q.head = (q.head + 1) % len(q.ring)
	q.n--
	if q.n == 0 {
		q.head = 0
		if len(q.ring) > retainRing {
			q.ring = nil
		}
	}
	return v, true
}

// grow doubles the ring, keeping the items in order.
func (q *Queue[T]) grow() {
	ring := make([]T, max(minRing, 2*len(q.ring)))
	for i := range q.n {
		ring[i] = q.ring[(q.head+i)%len(q.ring)]
	}
	q.ring, q.head = ring, 0
}
