package test

import (
	"context"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/lfnet/lfnet"
	"github.com/lfnet/lfnet/membership"
	"github.com/lfnet/lfnet/topics"
	"github.com/lfnet/lfnet/topics/gossip"
)

// TestClosingAllHandlesLeavesTheOverlay is issue 6's "closing all handles leaves the
// overlay" through lfnet.Node: five nodes hold one topic with a Gossip and a LogSync
// handle each. Closing one node's Gossip handle keeps it in the topic (its LogSync handle
// still refers to it); closing the LogSync handle too makes it leave: every former
// neighbour sees NeighborDown for it, no node keeps it as a neighbour, and it no longer
// holds the topic (so discovery stops offering it).
func TestClosingAllHandlesLeavesTheOverlay(t *testing.T) {
	const nodes = 5
	room := topics.FromString("leaving")
	var gossips []*gossip.Handle
	var logs []*lfnet.LogSync
	all := startNodes(t, nodes, func(int) int { return 0 }, func(n *lfnet.Node) []io.Closer {
		g, err := n.Gossip(context.Background(), room)
		if err != nil {
			t.Fatal(err)
		}
		gossips = append(gossips, g)
		l, err := n.LogSync(context.Background(), room, true)
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, l)
		return []io.Closer{g, l}
	})

	// The leaver is the node with the most neighbours once every node has one.
	leaver := 0
	poll(t, "every node to have a neighbour", func() bool {
		for i, n := range all {
			if len(n.Neighbors(room)) == 0 {
				return false
			}
			if len(n.Neighbors(room)) > len(all[leaver].Neighbors(room)) {
				leaver = i
			}
		}
		return true
	})
	gone := all[leaver]
	watches := map[peer.ID]*lfnet.NeighborWatch{}
	for _, n := range all {
		if n != gone {
			w := n.WatchNeighbors()
			defer w.Close()
			watches[n.ID()] = w
		}
	}
	// Watching starts before the snapshot, so a neighbour that joins after it is not
	// waited for, and one that leaves meanwhile has already reported its NeighborDown.
	former := gone.Neighbors(room)

	if err := gossips[leaver].Close(); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(gone.Topics(), room) || gone.Neighbors(room) == nil {
		t.Fatal("closing the Gossip handle left the topic although a LogSync handle is open")
	}
	if err := logs[leaver].Close(); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(gone.Topics(), room) {
		t.Fatal("the node still holds the topic after its last handle closed")
	}
	if v := gone.Neighbors(room); v != nil {
		t.Fatalf("the node still has neighbours %v after leaving", v)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, p := range former {
		w := watches[p]
		if w == nil {
			t.Fatalf("neighbour %s is not one of the nodes", p)
		}
		for {
			ev, _, err := w.Next(ctx)
			if err != nil {
				t.Fatalf("former neighbour %s saw no NeighborDown for the leaver: %v", p.ShortString(), err)
			}
			if ev.Kind == membership.EventNeighborDown && ev.Peer == gone.ID() && ev.Topic == room {
				break
			}
		}
	}
	// The overlay heals without it, and nobody takes it back as a neighbour.
	poll(t, "no node to keep the leaver as a neighbour", func() bool {
		for _, n := range all {
			if n != gone && slices.Contains(n.Neighbors(room), gone.ID()) {
				return false
			}
		}
		return true
	})
}

// poll waits, up to a minute, for cond; it fails the test with what after that.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
	}
}
