package fifo

import (
	"math/rand/v2"
	"testing"
)

// TestQueueMatchesSlice drives a queue and a plain slice with the same random pushes and
// pops, across growth, wrap-around and release after a burst.
func TestQueueMatchesSlice(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var q Queue[int]
	var model []int
	next := 0
	for step := range 20000 {
		// Phases of mostly pushing (bursts) and mostly popping (draining).
		pushBias := 0.7
		if step/1000%2 == 1 {
			pushBias = 0.3
		}
		if rng.Float64() < pushBias {
			q.Push(next)
			model = append(model, next)
			next++
		} else {
			v, ok := q.Pop()
			if ok != (len(model) > 0) {
				t.Fatalf("step %d: Pop ok=%v with %d items", step, ok, len(model))
			}
			if ok {
				if v != model[0] {
					t.Fatalf("step %d: popped %d, want %d", step, v, model[0])
				}
				model = model[1:]
			}
		}
		if q.Len() != len(model) {
			t.Fatalf("step %d: Len %d, want %d", step, q.Len(), len(model))
		}
		if f, ok := q.Front(); ok != (len(model) > 0) || ok && f != model[0] {
			t.Fatalf("step %d: Front %d %v", step, f, ok)
		}
	}
}

func TestEmptiedQueueReleasesLargeRing(t *testing.T) {
	var q Queue[[]byte]
	for range 1000 {
		q.Push(make([]byte, 1))
	}
	for q.Len() > 0 {
		q.Pop()
	}
	if q.Cap() != 0 {
		t.Fatalf("an emptied queue keeps a ring of %d", q.Cap())
	}
	var small Queue[int]
	small.Push(1)
	small.Pop()
	if small.Cap() != minRing {
		t.Fatalf("a small ring was not kept: %d", small.Cap())
	}
}
