package gossip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p-pubsub/timecache"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/lfnet/lfnet/topics"
)

// Defaults for Config fields left zero.
const (
	DefaultMaxMessageSize     = 4 << 10
	DefaultSubscriptionBuffer = 1024
	DefaultLeaveTimeout       = 5 * time.Second
)

// Protocol name and version passed to Config.ProtocolID. Version 1.2 is GossipSub v1.2
// (mesh, peer exchange, IDONTWANT) under lfnet's namespace.
const (
	ProtocolName    = "gossipsub"
	ProtocolVersion = "1.2"
)

// Limits on what peers can make the router hold.
const (
	// outboundQueue is how many RPCs may wait for one peer. A mesh that is the whole active
	// view has no lazy-gossip peers to repair a dropped message from, so bursts must fit.
	outboundQueue = 256
	// validateQueue is how many received messages may wait for signature checking and
	// opening; pubsub drops beyond it, for the same reason it must absorb bursts.
	validateQueue = 1024
	// pubsubBuffer is the per-topic queue between pubsub and our read loop, which only
	// hands messages on and so never lets it fill.
	pubsubBuffer = 256
	// maxTopicsPerPeer caps the subscriptions the router tracks for one peer.
	maxTopicsPerPeer = 1024
	// meshDegree is GossipSub's target and low-water mark for a topic's mesh; it only needs
	// to exceed any active view size (membership's default is 5), see New.
	meshDegree = 16
	// minRPCSize is the smallest limit on one pubsub RPC; it leaves room for control
	// traffic (IHAVE lists) next to a few sealed messages.
	minRPCSize = 256 << 10
)

var (
	// ErrMessageTooLarge is returned by Publish for a payload over Config.MaxMessageSize.
	ErrMessageTooLarge = errors.New("gossip: message too large")
	// ErrClosed is returned once the router, the handle or the subscription is closed.
	ErrClosed = errors.New("gossip: closed")
	// ErrConfig reports an unusable Config.
	ErrConfig = errors.New("gossip: invalid config")
)

// Membership is what gossip needs from the membership layer: a topic's overlay, whose
// active view decides which peers the topic's messages are exchanged with.
type Membership interface {
	// Join joins (or takes a reference to) topic t's overlay. The router calls it once per
	// topic when the first handle opens and calls Overlay.Leave when the last one closes.
	Join(ctx context.Context, t topics.Topic) (Overlay, error)
}

// Overlay is one topic's membership overlay.
type Overlay interface {
	// ActiveView returns the current neighbours. GossipSub consults it from its event loop
	// on every mesh, gossip and graft decision and for every received message, so it must
	// be quick and must not block.
	ActiveView() []peer.ID
	// WasNeighbor reports whether p is in the active view or was earlier and has stayed
	// connected since. GossipSub keeps a mesh link made with a neighbour until it prunes
	// the link or the peer disconnects, so such a peer may still send the topic's
	// messages; the router accepts them. Called for every received message: it must be
	// quick and must not block.
	WasNeighbor(p peer.ID) bool
	// Leave leaves the overlay; neighbours see the node go.
	Leave(ctx context.Context) error
}

// Config configures a Router.
type Config struct {
	// ProtocolID builds a protocol id in the node's network namespace, e.g.
	// host.ProtocolID bound to the network id. Required.
	ProtocolID func(name, version string) protocol.ID
	// Membership supplies each topic's overlay. Nil lets every connected peer that
	// subscribes to a topic's derived name take part, which suits tests and closed setups.
	Membership Membership
	// MaxMessageSize is the largest payload Publish accepts and the largest a peer may
	// send; default DefaultMaxMessageSize. All nodes of a network should agree on it.
	MaxMessageSize int
	// SubscriptionBuffer is how many unread messages each Subscription holds before it
	// drops the oldest; default DefaultSubscriptionBuffer.
	SubscriptionBuffer int
	// LeaveTimeout bounds how long closing a topic waits for its overlay to leave;
	// default DefaultLeaveTimeout.
	LeaveTimeout time.Duration
	// Logger receives debug logs; default slog.Default().
	Logger *slog.Logger
}

// Stats counts messages the router dropped.
type Stats struct {
	// Unopenable counts received messages that did not open under the topic key (wrong
	// key, corrupted, replayed into another topic, too large): junk from nodes that know a
	// topic's derived name but not the topic.
	Unopenable uint64
	// NotNeighbour counts received messages dropped because the peer that sent them has
	// never been in the topic's active view (see Overlay.WasNeighbor).
	NotNeighbour uint64
	// Undeliverable counts messages pubsub could not queue for our read loop.
	Undeliverable uint64
	// DroppedSends counts messages pubsub dropped on the way to a peer because the
	// peer's send queue was full or gone.
	DroppedSends uint64
	// Unvalidated counts received messages pubsub dropped unchecked because its
	// validation queue was full.
	Unvalidated uint64
}

// Router is a node's GossipSub router and the set of topics it carries. It is safe for
// concurrent use.
type Router struct {
	h       host.Host
	self    peer.ID
	cfg     Config
	log     *slog.Logger
	protos  []protocol.ID
	ps      *pubsub.PubSub
	ctx     context.Context // lives until Close; pubsub and read loops run under it
	cancel  context.CancelFunc
	maxSeal int

	// mu serialises opening and closing topics; it is held across calls into pubsub and
	// membership, so nothing pubsub calls back into may take it.
	mu     sync.Mutex
	topics map[topics.Topic]*topicState
	closed bool

	// views maps pubsub topic names to open topics for the callbacks pubsub runs in its
	// event loop (peer filter, RPC inspection); it is never held while calling pubsub.
	viewsMu sync.RWMutex
	views   map[string]*topicState

	tracker *tracker

	unopenable, notNeighbour atomic.Uint64
}

// New starts the router on h. ctx bounds only the start; the router runs until Close.
// Start it before the host connects to peers: go-libp2p-pubsub learns of peers from
// connection and identify events, and a router started while connections already exist
// depends on catching those peers' later protocol updates.
func New(ctx context.Context, h host.Host, cfg Config) (*Router, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if cfg.ProtocolID == nil {
		return nil, fmt.Errorf("%w: ProtocolID is required", ErrConfig)
	}
	if cfg.MaxMessageSize < 0 || cfg.SubscriptionBuffer < 0 || cfg.LeaveTimeout < 0 {
		return nil, fmt.Errorf("%w: negative limit", ErrConfig)
	}
	if cfg.MaxMessageSize == 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	if cfg.SubscriptionBuffer == 0 {
		cfg.SubscriptionBuffer = DefaultSubscriptionBuffer
	}
	if cfg.LeaveTimeout == 0 {
		cfg.LeaveTimeout = DefaultLeaveTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r := &Router{
		h:       h,
		self:    h.ID(),
		cfg:     cfg,
		log:     cfg.Logger.With("component", "gossip"),
		protos:  []protocol.ID{cfg.ProtocolID(ProtocolName, ProtocolVersion)},
		ctx:     runCtx,
		cancel:  cancel,
		maxSeal: cfg.MaxMessageSize + sealOverhead,
		topics:  make(map[topics.Topic]*topicState),
		views:   make(map[string]*topicState),
	}
	r.tracker = newTracker()
	rpcSize := max(minRPCSize, 4*r.maxSeal)
	params := pubsub.DefaultGossipSubParams()
	// A node that closes a topic's last handle and soon opens it again should mesh with its
	// old neighbours again quickly. The value travels in our PRUNEs and sets how long they
	// back off from us (default 10 s); GossipSub forgets expired backoffs only every 15
	// heartbeats, so re-meshing with the same peers still takes up to about 15 s.
	params.UnsubscribeBackoff = time.Second
	// The peer filter limits the mesh to the active view (a handful of peers), so the
	// degree targets only decide whether GossipSub grafts every neighbour not yet in the
	// mesh, which it must: a GRAFT that reaches a peer before that peer has us in its view
	// is ignored without a PRUNE, and the sender keeps the peer in its mesh while the peer
	// never adds the sender. With the default low-water mark (5), mesh links that outlived
	// the view kept meshes from ever reaching for such a node, and in a 30-node run one
	// node stayed out of every other node's mesh (it would receive nothing) for minutes.
	// With the mark above any active view, each heartbeat grafts every neighbour that is
	// missing, and the link becomes mutual as soon as the views agree.
	params.D, params.Dlo, params.Dhi = meshDegree, meshDegree, 2*meshDegree
	ps, err := pubsub.NewGossipSub(runCtx, h,
		pubsub.WithGossipSubProtocols(r.protos, supportsFeature),
		pubsub.WithGossipSubParams(params),
		pubsub.WithMessageSignaturePolicy(pubsub.StrictSign),
		pubsub.WithFloodPublish(false),
		pubsub.WithPeerExchange(false),
		pubsub.WithPeerFilter(r.inView),
		pubsub.WithAppSpecificRpcInspector(r.inspectRPC),
		pubsub.WithSubscriptionFilter(subscriptionFilter{r.tracker}),
		pubsub.WithRawTracer(r.tracker),
		pubsub.WithMaxMessageSize(rpcSize),
		pubsub.WithMaxControlMessageSize(rpcSize),
		pubsub.WithPeerOutboundQueueSize(outboundQueue),
		// A message id is remembered until two minutes after its last copy arrived, not
		// after its first: on a slow or overloaded node copies can trickle in for longer
		// than two minutes, and each late one would be delivered again.
		pubsub.WithSeenMessagesStrategy(timecache.Strategy_LastSeen),
		pubsub.WithValidateQueueSize(validateQueue),
		pubsub.WithLogger(slog.New(demoted{r.log.Handler()})),
	)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("gossip: start gossipsub: %w", err)
	}
	r.ps = ps
	return r, nil
}

// supportsFeature says which GossipSub features our single protocol id speaks.
func supportsFeature(f pubsub.GossipSubFeature, _ protocol.ID) bool {
	switch f {
	case pubsub.GossipSubFeatureMesh, pubsub.GossipSubFeaturePX, pubsub.GossipSubFeatureIdontwant:
		return true
	default:
		return false
	}
}

// Stream returns a handle on topic t, joining the topic's overlay and pubsub topic if no
// handle on t is open yet. ctx bounds the join.
func (r *Router) Stream(ctx context.Context, t topics.Topic) (*Handle, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	st := r.topics[t]
	if st == nil {
		var err error
		if st, err = r.open(ctx, t); err != nil {
			return nil, err
		}
		r.topics[t] = st
	}
	st.refs++
	return &Handle{r: r, st: st, subs: make(map[*Subscription]struct{})}, nil
}

// Stats returns the drop counters.
func (r *Router) Stats() Stats {
	return Stats{
		Unopenable:    r.unopenable.Load(),
		NotNeighbour:  r.notNeighbour.Load(),
		Undeliverable: r.tracker.undeliverable.Load(),
		DroppedSends:  r.tracker.droppedSends.Load(),
		Unvalidated:   r.tracker.unvalidated.Load(),
	}
}

// Close closes every handle (leaving every overlay, which is why it should run before the
// membership layer closes), stops GossipSub and removes its protocol handlers. It does not
// close the host.
func (r *Router) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	var errs []error
	for t, st := range r.topics {
		errs = append(errs, r.shut(st))
		delete(r.topics, t)
	}
	r.mu.Unlock()
	for _, p := range r.protos {
		r.h.RemoveStreamHandler(p)
	}
	r.cancel()
	return errors.Join(errs...)
}

// release drops one handle's reference to st and closes the topic with the last one.
func (r *Router) release(st *topicState) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st.shut {
		return nil // the router closed it already
	}
	st.refs--
	if st.refs > 0 {
		return nil
	}
	delete(r.topics, st.topic)
	return r.shut(st)
}

// inView is the GossipSub peer filter: a topic's traffic goes only to its active view.
// Names we do not hold get no peers.
func (r *Router) inView(p peer.ID, name string) bool {
	r.viewsMu.RLock()
	st := r.views[name]
	r.viewsMu.RUnlock()
	return st != nil && st.inView(p)
}

// inspectRPC removes messages that come from a peer that has never been a neighbour in
// the topic's overlay (see topicState.admits) before pubsub sees them. Doing it here
// rather than in a validator matters: pubsub marks a message seen before validators run,
// so ignoring a copy there would also discard the copy a real neighbour delivers a moment
// later. It never rejects the whole RPC, whose control part GossipSub still needs (for
// instance a PRUNE from a former neighbour).
func (r *Router) inspectRPC(from peer.ID, rpc *pubsub.RPC) error {
	msgs := rpc.GetPublish()
	var keep []*pb.Message // nil until the first drop, so the common case copies nothing
	for i, m := range msgs {
		r.viewsMu.RLock()
		st := r.views[m.GetTopic()]
		r.viewsMu.RUnlock()
		// Topics we do not hold are left to pubsub, which ignores them.
		if st == nil || st.admits(from) {
			if keep != nil {
				keep = append(keep, m)
			}
			continue
		}
		if keep == nil {
			keep = append(make([]*pb.Message, 0, len(msgs)), msgs[:i]...)
		}
	}
	if keep != nil {
		dropped := len(msgs) - len(keep)
		rpc.Publish = keep
		r.notNeighbour.Add(uint64(dropped))
		r.log.Debug("dropped messages from a peer that was never a neighbour", "peer", from, "count", dropped)
	}
	return nil
}

// validator opens every message of one topic before pubsub delivers or forwards it, and
// leaves the plaintext in ValidatorData for the read loop.
func (r *Router) validator(s *sealer) pubsub.ValidatorEx {
	return func(_ context.Context, from peer.ID, m *pubsub.Message) pubsub.ValidationResult {
		author := m.GetFrom()
		switch {
		case from == r.self:
			return pubsub.ValidationAccept // our own publish, sealed here a moment ago
		case author == r.self:
			// One of our messages coming back after pubsub forgot it: never new to us,
			// and not worth forwarding again.
			return pubsub.ValidationIgnore
		case len(m.Data) > r.maxSeal:
			r.unopenable.Add(1)
			r.log.Debug("rejected oversized message", "topic", s.name[:8], "from", from, "size", len(m.Data))
			return pubsub.ValidationReject
		}
		plain, err := s.open(author, m.Data)
		if err != nil {
			r.unopenable.Add(1)
			r.log.Debug("rejected message that does not open", "topic", s.name[:8], "from", from, "author", author)
			return pubsub.ValidationReject
		}
		m.ValidatorData = plain
		return pubsub.ValidationAccept
	}
}

// inView reports whether p is in the topic's active view; without membership every peer is.
func (st *topicState) inView(p peer.ID) bool {
	if st.overlay == nil {
		return true
	}
	return slices.Contains(st.overlay.ActiveView(), p)
}

// admits reports whether messages from p are accepted: p is in the topic's active view,
// or was and has stayed connected since. The peer filter lets GossipSub graft only peers
// of the active view, but GossipSub has no call to drop a mesh link when its peer leaves
// the view: both ends keep forwarding over the link until GossipSub prunes it or the peer
// disconnects, and the peer never learns that its copies are unwanted. Refusing what
// arrives over such a link therefore loses every message for which it was the only path;
// in a 30-node overlay settling through discovery most mesh links were of this kind, and
// nodes missed up to a third of the messages. A former neighbour holds the topic (it
// passed the overlay's join proof), so accepting from it reveals nothing new.
func (st *topicState) admits(p peer.ID) bool {
	if st.overlay == nil {
		return true
	}
	return st.overlay.WasNeighbor(p)
}

// demoted hands pubsub's logs on with everything below Warn turned into Debug: pubsub
// reports routine events (such as shutting down) at Info, and lfnet is quiet at Info.
type demoted struct{ slog.Handler }

func (d demoted) Enabled(ctx context.Context, l slog.Level) bool {
	return d.Handler.Enabled(ctx, demote(l))
}

func (d demoted) Handle(ctx context.Context, rec slog.Record) error {
	rec.Level = demote(rec.Level)
	return d.Handler.Handle(ctx, rec)
}

func (d demoted) WithAttrs(attrs []slog.Attr) slog.Handler {
	return demoted{d.Handler.WithAttrs(attrs)}
}

func (d demoted) WithGroup(name string) slog.Handler { return demoted{d.Handler.WithGroup(name)} }

func demote(l slog.Level) slog.Level {
	if l < slog.LevelWarn {
		return slog.LevelDebug
	}
	return l
}
