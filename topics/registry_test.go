package topics

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestRegistryReferenceCounting(t *testing.T) {
	r := NewRegistry()
	defer r.Close()
	w := r.Watch()
	defer w.Close()
	a := FromString("a")
	if !r.Add(a) || r.Add(a) {
		t.Fatal("Add must report only the first reference")
	}
	if r.Remove(a) || !r.Has(a) {
		t.Fatal("topic dropped while a reference remains")
	}
	if !r.Remove(a) || r.Has(a) {
		t.Fatal("last Remove must drop the topic")
	}
	if r.Remove(a) {
		t.Fatal("Remove of an absent topic reported a change")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, want := range []Change{{a, true}, {a, false}} {
		c, dropped, err := w.Next(ctx)
		if err != nil || c != want || dropped != 0 {
			t.Fatalf("got %+v dropped=%d err=%v, want %+v", c, dropped, err, want)
		}
	}
}

func TestRegistryTopicsSorted(t *testing.T) {
	r := NewRegistry()
	defer r.Close()
	for _, n := range []string{"x", "y", "z", "w"} {
		r.Add(FromString(n))
	}
	ts := r.Topics()
	if len(ts) != 4 {
		t.Fatalf("%d topics", len(ts))
	}
	for i := 1; i < len(ts); i++ {
		if ts[i-1].String() >= ts[i].String() {
			t.Fatal("Topics not sorted")
		}
	}
}

func TestRegistryCloseEndsWatchers(t *testing.T) {
	r := NewRegistry()
	w := r.Watch()
	r.Close()
	if _, _, err := w.Next(context.Background()); !errors.Is(err, ErrWatchClosed) {
		t.Fatalf("got %v", err)
	}
}
