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

func TestWeightBoundsWhatALaggingSubscriberHolds(t *testing.T) {
	b := NewWeighted(func(v int) int { return v })
	s := b.SubscribeWeighted(100, 10)
	defer s.Close()
	for _, v := range []int{4, 4, 4, 1} { // 4+4+4 > 10: the first 4 goes
		b.Publish(v)
	}
	ctx := context.Background()
	want := []struct {
		v       int
		dropped uint64
	}{{4, 1}, {4, 0}, {1, 0}}
	for _, w := range want {
		v, dropped, err := s.Next(ctx)
		if err != nil || v != w.v || dropped != w.dropped {
			t.Fatalf("got %d (dropped %d, %v), want %d (dropped %d)", v, dropped, err, w.v, w.dropped)
		}
	}
	// An event heavier than the bound still arrives when it is alone.
	b.Publish(50)
	b.Publish(50)
	if v, dropped, err := s.Next(ctx); err != nil || v != 50 || dropped != 1 {
		t.Fatalf("heavy event: got %d (dropped %d, %v)", v, dropped, err)
	}
	if s.weighs != 0 {
		t.Fatalf("weight left after reading everything: %d", s.weighs)
	}
}

func TestRingGrowsInOrderUpToCapacity(t *testing.T) {
	b := New[int]()
	s := b.Subscribe(1000)
	defer s.Close()
	ctx := context.Background()
	// Read a few first so that the ring wraps before it grows.
	for i := range 10 {
		b.Publish(i)
	}
	for i := range 10 {
		if v, _, _ := s.Next(ctx); v != i {
			t.Fatalf("got %d, want %d", v, i)
		}
	}
	for i := range 1500 {
		b.Publish(i)
	}
	if len(s.ring) != 1000 {
		t.Fatalf("ring of %d, want it grown to the capacity 1000", len(s.ring))
	}
	v, dropped, err := s.Next(ctx)
	if err != nil || v != 500 || dropped != 500 {
		t.Fatalf("got %d (dropped %d, %v), want 500 (dropped 500)", v, dropped, err)
	}
	for i := 501; i < 1500; i++ {
		if v, _, _ := s.Next(ctx); v != i {
			t.Fatalf("got %d, want %d", v, i)
		}
	}
}
