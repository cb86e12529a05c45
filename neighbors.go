package lfnet

import (
	"context"
	"errors"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/lfnet/lfnet/internal/bus"
	"github.com/lfnet/lfnet/membership"
	"github.com/lfnet/lfnet/topics"
)

// neighborBuffer is how many unread events a NeighborWatch holds before it drops the
// oldest.
const neighborBuffer = 256

// Topics returns the topics the node holds: those with an open Gossip or LogSync handle.
// Only these are offered to other nodes in topic discovery.
func (n *Node) Topics() []topics.Topic { return n.registry.Topics() }

// Neighbors returns topic t's current overlay neighbours: the nodes it gossips and syncs
// with. It is nil while the node holds no handle on t.
func (n *Node) Neighbors(t topics.Topic) []peer.ID {
	n.mu.Lock()
	ts := n.topics[t]
	n.mu.Unlock()
	if ts == nil {
		return nil
	}
	return ts.overlay.ActiveView()
}

// NeighborWatch delivers the node's neighbour changes in every topic's overlay.
type NeighborWatch struct {
	sub *bus.Subscription[membership.Event]
}

// WatchNeighbors returns a watch of neighbour changes, from now on, in the overlays of all
// topics the node holds: membership.EventNeighborUp when a node becomes a neighbour,
// membership.EventNeighborDown when it leaves (it left the topic, went offline or was
// replaced). Close it when done; it ends when the node closes.
func (n *Node) WatchNeighbors() *NeighborWatch {
	return &NeighborWatch{sub: n.neighborEvents.Subscribe(neighborBuffer)}
}

// Next returns the next change, waiting until one comes, ctx ends, or the watch or the
// node closes (ErrClosed). Lost reports how many changes were dropped before this one
// because the reader fell behind; after a loss, Neighbors tells the current state.
func (w *NeighborWatch) Next(ctx context.Context) (ev membership.Event, lost uint64, err error) {
	ev, lost, err = w.sub.Next(ctx)
	if errors.Is(err, bus.ErrClosed) {
		return ev, 0, ErrClosed
	}
	return ev, lost, err
}

// Close ends the watch.
func (w *NeighborWatch) Close() { w.sub.Close() }
