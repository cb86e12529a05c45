package gossip

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// tracker follows GossipSub's mesh (pubsub has no call that reports it) and the topics
// each peer announced, so the subscriptions a peer can make us track stay bounded. pubsub
// calls it from its event loop; the mutex is for readers outside it.
type tracker struct {
	undeliverable, droppedSends, unvalidated atomic.Uint64

	mu        sync.Mutex
	mesh      map[string]map[peer.ID]struct{} // pubsub topic name -> mesh peers
	announced map[peer.ID]map[string]struct{} // peer -> pubsub topic names it holds
}

var _ pubsub.RawTracer = (*tracker)(nil)

func newTracker() *tracker {
	return &tracker{
		mesh:      make(map[string]map[peer.ID]struct{}),
		announced: make(map[peer.ID]map[string]struct{}),
	}
}

func (t *tracker) meshPeers(name string) []peer.ID {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]peer.ID, 0, len(t.mesh[name]))
	for p := range t.mesh[name] {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// admit filters a peer's subscription announcements: only names shaped like ours, and at
// most maxTopicsPerPeer of them per peer.
func (t *tracker) admit(from peer.ID, subs []*pb.RPC_SubOpts) []*pb.RPC_SubOpts {
	t.mu.Lock()
	defer t.mu.Unlock()
	held := t.announced[from]
	out := subs[:0:0]
	for _, s := range subs {
		name := s.GetTopicid()
		if !isTopicName(name) {
			continue
		}
		if !s.GetSubscribe() {
			delete(held, name)
			out = append(out, s)
			continue
		}
		if held == nil {
			held = make(map[string]struct{})
			t.announced[from] = held
		}
		if _, ok := held[name]; !ok && len(held) >= maxTopicsPerPeer {
			continue
		}
		held[name] = struct{}{}
		out = append(out, s)
	}
	return out
}

// subscriptionFilter is the pubsub.SubscriptionFilter that applies tracker.admit.
type subscriptionFilter struct{ t *tracker }

func (f subscriptionFilter) CanSubscribe(name string) bool { return isTopicName(name) }

func (f subscriptionFilter) FilterIncomingSubscriptions(from peer.ID, subs []*pb.RPC_SubOpts) ([]*pb.RPC_SubOpts, error) {
	return f.t.admit(from, subs), nil
}

// OnClosedOutboundStream runs when pubsub forgets a peer: it leaves every mesh and its
// announcements are void.
func (t *tracker) OnClosedOutboundStream(p peer.ID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range t.mesh {
		delete(m, p)
	}
	delete(t.announced, p)
}

func (t *tracker) Join(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mesh[name] == nil {
		t.mesh[name] = make(map[peer.ID]struct{})
	}
}

func (t *tracker) Leave(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.mesh, name)
}

func (t *tracker) Graft(p peer.ID, name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m := t.mesh[name]; m != nil {
		m[p] = struct{}{}
	}
}

func (t *tracker) Prune(p peer.ID, name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.mesh[name], p)
}

func (t *tracker) UndeliverableMessage(*pubsub.Message) { t.undeliverable.Add(1) }

func (t *tracker) DropRPC(rpc *pubsub.RPC, _ peer.ID) {
	// Control-only RPCs are retried by GossipSub; lost messages are what matter.
	t.droppedSends.Add(uint64(len(rpc.GetPublish())))
}

func (t *tracker) RejectMessage(_ *pubsub.Message, reason string) {
	// Messages that fail to open are counted by the validator itself.
	if reason == pubsub.RejectValidationQueueFull || reason == pubsub.RejectValidationThrottled {
		t.unvalidated.Add(1)
	}
}

// The remaining events are of no use to the router.

func (t *tracker) OnNewOutboundStream(peer.ID, protocol.ID)             {}
func (t *tracker) ValidateMessage(*pubsub.Message)                      {}
func (t *tracker) DeliverMessage(*pubsub.Message)                       {}
func (t *tracker) DuplicateMessage(*pubsub.Message)                     {}
func (t *tracker) ThrottlePeer(peer.ID)                                 {}
func (t *tracker) RecvRPC(*pubsub.RPC)                                  {}
func (t *tracker) SendRPC(*pubsub.RPC, peer.ID)                         {}
func (t *tracker) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
