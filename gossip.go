package lfnet

import (
	"context"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/lfnet/lfnet/topics"
	"github.com/lfnet/lfnet/topics/gossip"
)

// Gossip opens ephemeral publish/subscribe on topic: messages reach the nodes of the topic
// that are online now and are not stored. Payloads are sealed under a key derived from the
// topic, and exchanged only with the topic's overlay neighbours. Close the handle when done;
// the node leaves the topic when its last handle of any kind closes.
func (n *Node) Gossip(ctx context.Context, t topics.Topic) (*gossip.Handle, error) {
	n.mu.Lock()
	closed := n.closed
	n.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	return n.gossip.Stream(ctx, t)
}

// gossipMembership lets the gossip router share the node's per-topic overlays, reference
// counted with the LogSync handles of the same topic.
type gossipMembership struct{ n *Node }

func (g gossipMembership) Join(ctx context.Context, t topics.Topic) (gossip.Overlay, error) {
	ts, err := g.n.acquire(ctx, t)
	if err != nil {
		return nil, err
	}
	return &gossipOverlay{n: g.n, ts: ts}, nil
}

type gossipOverlay struct {
	n    *Node
	ts   *topicState
	once sync.Once
}

func (o *gossipOverlay) ActiveView() []peer.ID { return o.ts.overlay.ActiveView() }

func (o *gossipOverlay) WasNeighbor(p peer.ID) bool { return o.ts.overlay.WasNeighbor(p) }

func (o *gossipOverlay) Leave(context.Context) error {
	o.once.Do(func() { o.n.release(o.ts) })
	return nil
}
