package bus

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDeliversInOrder(t *testing.T) {
	b := New[int]()
	s := b.Subscribe(8)
	for i := range 5 {
		b.Publish(i)
	}
	for i := range 5 {
		v, dropped, err := s.Next(context.Background())
		if err != nil || v != i || dropped != 0 {
			t.Fatalf("event %d: got %d dropped=%d err=%v", i, v, dropped, err)
		}
	}
}

func TestSlowSubscriberLagsInsteadOfBlocking(t *testing.T) {
	b := New[int]()
	slow := b.Subscribe(3)
	fast := b.Subscribe(100)
	for i := range 10 {
		b.Publish(i) // must not block although slow is full
	}
	v, dropped, err := slow.Next(context.Background())
	if err != nil || v != 7 || dropped != 7 {
		t.Fatalf("slow: got %d dropped=%d err=%v, want 7 dropped=7", v, dropped, err)
	}
	if v, dropped, _ := slow.Next(context.Background()); v != 8 || dropped != 0 {
		t.Fatalf("after lag: got %d dropped=%d", v, dropped)
	}
	for i := range 10 {
		if v, _, _ := fast.Next(context.Background()); v != i {
			t.Fatalf("fast subscriber lost events: got %d want %d", v, i)
		}
	}
}

func TestNextWaitsAndHonoursContext(t *testing.T) {
	b := New[string]()
	s := b.Subscribe(1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, _, err := s.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.Publish("x")
	}()
	if v, _, err := s.Next(context.Background()); err != nil || v != "x" {
		t.Fatalf("got %q %v", v, err)
	}
	wg.Wait()
}

func TestCloseDrainsThenEnds(t *testing.T) {
	b := New[int]()
	s := b.Subscribe(4)
	b.Publish(1)
	b.Close()
	if v, _, err := s.Next(context.Background()); err != nil || v != 1 {
		t.Fatalf("buffered event after close: %d %v", v, err)
	}
	if _, _, err := s.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("got %v, want ErrClosed", err)
	}
	if _, _, err := b.Subscribe(1).Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("subscribe after close: %v", err)
	}
	s2 := New[int]()
	sub := s2.Subscribe(1)
	sub.Close()
	s2.Publish(1)
	if _, _, err := sub.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed subscription: %v", err)
	}
}

// TestRingGrowsToCapacity: the ring starts small and grows while reads and writes wrap
// around it, keeping order, and drops only once capacity events are unread.
func TestRingGrowsToCapacity(t *testing.T) {
	b := New[int]()
	s := b.Subscribe(100)
	next := 0
	read := func(want int, wantDropped uint64) {
		t.Helper()
		v, dropped, err := s.Next(context.Background())
		if err != nil || v != want || dropped != wantDropped {
			t.Fatalf("got %d dropped=%d err=%v, want %d dropped=%d", v, dropped, err, want, wantDropped)
		}
	}
	// Wrap the small ring before it has to grow.
	for range 5 {
		b.Publish(next)
		next++
	}
	for i := range 3 {
		read(i, 0)
	}
	for range 98 { // 2 unread + 98 = capacity
		b.Publish(next)
		next++
	}
	for i := 3; i < 103; i++ {
		read(i, 0)
	}
	for range 101 { // one more than capacity: the oldest goes
		b.Publish(next)
		next++
	}
	read(104, 1)
}
