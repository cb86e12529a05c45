package lfnet

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/lfnet/lfnet/membership"
	"github.com/lfnet/lfnet/topics"
)

// TestNeighborsAndTopics: a node reports the topics it holds and their neighbours, a watch
// sees a neighbour arrive, and the watch ends with the node.
func TestNeighborsAndTopics(t *testing.T) {
	room, other := topics.FromString("neighbours"), topics.FromString("not held")
	a, err := New(context.Background(), testOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	b := newTestNode(t, bootstrapFrom(a))
	watch := a.WatchNeighbors()
	defer watch.Close()
	ga, err := a.Gossip(context.Background(), room)
	if err != nil {
		t.Fatal(err)
	}
	defer ga.Close()
	lb, err := b.LogSync(context.Background(), room, false)
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	if !slices.Equal(a.Topics(), []topics.Topic{room}) || a.Neighbors(other) != nil {
		t.Fatalf("topics %v, neighbours of an unheld topic %v", a.Topics(), a.Neighbors(other))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ev, _, err := watch.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Kind != membership.EventNeighborUp || ev.Peer != b.ID() || ev.Topic != room {
		t.Fatalf("first event %+v, want NeighborUp of B on the room", ev)
	}
	if !slices.Contains(a.Neighbors(room), b.ID()) {
		t.Fatalf("neighbours %v after NeighborUp of B", a.Neighbors(room))
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	for {
		if _, _, err := watch.Next(ctx); errors.Is(err, ErrClosed) {
			break
		} else if err != nil {
			t.Fatalf("watch after Close: %v", err)
		}
	}
}
