package gossip

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/lfnet/lfnet/internal/bus"
	"github.com/lfnet/lfnet/topics"
)

// Message is one received gossip message.
type Message struct {
	// From is the author, authenticated by GossipSub's message signature.
	From peer.ID
	// Data is the payload as published.
	Data []byte
	// ReceivedAt is when this node's router took the message from GossipSub.
	ReceivedAt time.Time
}

// topicState is one open topic. Everything but refs and shut is fixed once open returns;
// refs and shut are guarded by Router.mu.
type topicState struct {
	topic    topics.Topic
	sealer   *sealer
	overlay  Overlay // nil without membership: every peer is a neighbour
	ptopic   *pubsub.Topic
	psub     *pubsub.Subscription
	events   *bus.Bus[Message]
	loopDone chan struct{}
	refs     int
	shut     bool
}

// open joins t's overlay and pubsub topic and starts its read loop. Called with r.mu held.
func (r *Router) open(ctx context.Context, t topics.Topic) (st *topicState, err error) {
	s, err := newSealer(t)
	if err != nil {
		return nil, err
	}
	st = &topicState{topic: t, sealer: s, events: bus.New[Message](), loopDone: make(chan struct{})}
	var undo []func() error
	defer func() {
		if err != nil {
			var errs []error
			for _, f := range slices.Backward(undo) {
				errs = append(errs, f())
			}
			if cleanupErr := errors.Join(errs...); cleanupErr != nil {
				r.log.Debug("cleaning up a failed topic join", "topic", t.Short(), "err", cleanupErr)
			}
		}
	}()

	if r.cfg.Membership != nil {
		ov, err := r.cfg.Membership.Join(ctx, t)
		if err != nil {
			return nil, fmt.Errorf("gossip: join overlay of %s: %w", t.Short(), err)
		}
		st.overlay = ov
		undo = append(undo, func() error { return r.leaveOverlay(ov) })
	}

	// The filter and inspector must know the topic before pubsub starts grafting for it.
	r.viewsMu.Lock()
	r.views[s.name] = st
	r.viewsMu.Unlock()
	undo = append(undo, func() error {
		r.viewsMu.Lock()
		delete(r.views, s.name)
		r.viewsMu.Unlock()
		return nil
	})

	// The validator goes in before the subscription so no message slips past unopened.
	// Inline: opening is cheaper than the goroutine pubsub would otherwise start.
	if err := r.ps.RegisterTopicValidator(s.name, r.validator(s), pubsub.WithValidatorInline(true)); err != nil {
		return nil, fmt.Errorf("gossip: register validator for %s: %w", t.Short(), err)
	}
	undo = append(undo, func() error { return r.ps.UnregisterTopicValidator(s.name) })

	if st.ptopic, err = r.ps.Join(s.name); err != nil {
		return nil, fmt.Errorf("gossip: join pubsub topic of %s: %w", t.Short(), err)
	}
	undo = append(undo, st.ptopic.Close)

	if st.psub, err = st.ptopic.Subscribe(pubsub.WithBufferSize(pubsubBuffer)); err != nil {
		return nil, fmt.Errorf("gossip: subscribe to %s: %w", t.Short(), err)
	}
	go r.readLoop(st)
	return st, nil
}

// shut stops st: pubsub unsubscribes (peers see it leave the mesh), the overlay is left
// and every subscription ends. Called with r.mu held.
func (r *Router) shut(st *topicState) error {
	st.shut = true
	name := st.sealer.name
	// Cancelling makes pubsub close the subscription, which ends the read loop; only then
	// will pubsub let the topic close.
	st.psub.Cancel()
	<-st.loopDone
	var errs []error
	if err := st.ptopic.Close(); err != nil {
		errs = append(errs, fmt.Errorf("gossip: close pubsub topic of %s: %w", st.topic.Short(), err))
	}
	if err := r.ps.UnregisterTopicValidator(name); err != nil {
		errs = append(errs, fmt.Errorf("gossip: unregister validator of %s: %w", st.topic.Short(), err))
	}
	r.viewsMu.Lock()
	delete(r.views, name)
	r.viewsMu.Unlock()
	st.events.Close()
	if st.overlay != nil {
		if err := r.leaveOverlay(st.overlay); err != nil {
			errs = append(errs, fmt.Errorf("gossip: leave overlay of %s: %w", st.topic.Short(), err))
		}
	}
	return errors.Join(errs...)
}

func (r *Router) leaveOverlay(ov Overlay) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), r.cfg.LeaveTimeout)
	defer cancel()
	return ov.Leave(ctx)
}

// readLoop hands st's messages to its subscriptions. It never blocks on a subscriber: the
// bus drops the oldest messages of one that falls behind.
func (r *Router) readLoop(st *topicState) {
	defer close(st.loopDone)
	for {
		m, err := st.psub.Next(r.ctx)
		if err != nil {
			return // cancelled by shut, or the router is closing
		}
		if m.GetFrom() == r.self {
			continue // pubsub hands our own publications to local subscribers
		}
		plain, ok := m.ValidatorData.([]byte)
		if !ok {
			continue // only the validator's accepted messages carry plaintext
		}
		st.events.Publish(Message{From: m.GetFrom(), Data: plain, ReceivedAt: time.Now()})
	}
}

// Handle is one user's reference to a topic's gossip. Close it when done; the topic is left
// when its last handle closes.
type Handle struct {
	r  *Router
	st *topicState

	mu     sync.Mutex
	closed bool
	subs   map[*Subscription]struct{}
}

// Topic returns the handle's topic.
func (h *Handle) Topic() topics.Topic { return h.st.topic }

// Publish seals payload and hands it to GossipSub, which sends it to this node's mesh for
// the topic. It returns once the message is queued, not once anyone received it; a message
// published while the mesh is still empty reaches no one. Payloads larger than
// Config.MaxMessageSize fail with ErrMessageTooLarge.
func (h *Handle) Publish(ctx context.Context, payload []byte) error {
	if len(payload) > h.r.cfg.MaxMessageSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrMessageTooLarge, len(payload), h.r.cfg.MaxMessageSize)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return ErrClosed
	}
	err := h.st.ptopic.Publish(ctx, h.st.sealer.seal(h.r.self, payload))
	switch {
	case errors.Is(err, pubsub.ErrTopicClosed), err != nil && h.r.ctx.Err() != nil:
		return ErrClosed
	case err != nil:
		return fmt.Errorf("gossip: publish on %s: %w", h.st.topic.Short(), err)
	}
	return nil
}

// Subscribe returns a new, independent subscription to messages other nodes publish on the
// topic from now on. It ends when the handle closes.
func (h *Handle) Subscribe() *Subscription {
	s := &Subscription{handle: h}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		s.closed = true
		return s
	}
	s.sub = h.st.events.Subscribe(h.r.cfg.SubscriptionBuffer)
	h.subs[s] = struct{}{}
	return s
}

// MeshPeers returns the peers this node currently forwards the topic's messages to (its
// GossipSub mesh for the topic), which GossipSub grows from the active view at each
// heartbeat.
func (h *Handle) MeshPeers() []peer.ID {
	return h.r.tracker.meshPeers(h.st.sealer.name)
}

// Close ends the handle's subscriptions and drops its reference to the topic; the last
// Close leaves the topic's pubsub topic and overlay, and reports errors from leaving.
// Closing twice does nothing.
func (h *Handle) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	subs := h.subs
	h.subs = nil
	h.mu.Unlock()
	for s := range subs {
		s.end()
	}
	return h.r.release(h.st)
}

// Subscription delivers a topic's messages to one reader.
type Subscription struct {
	handle *Handle
	sub    *bus.Subscription[Message] // nil if created on a closed handle

	mu      sync.Mutex
	dropped uint64
	closed  bool
}

// Next returns the next message, waiting until one arrives, ctx ends or the subscription
// closes (ErrClosed). Each call returns its own copy of the payload.
func (s *Subscription) Next(ctx context.Context) (Message, error) {
	s.mu.Lock()
	sub, closed := s.sub, s.closed
	s.mu.Unlock()
	if closed || sub == nil {
		return Message{}, ErrClosed
	}
	m, lost, err := sub.Next(ctx)
	if errors.Is(err, bus.ErrClosed) {
		return Message{}, ErrClosed
	}
	if err != nil {
		return Message{}, err
	}
	if lost > 0 {
		s.mu.Lock()
		s.dropped += lost
		s.mu.Unlock()
	}
	// The bus hands every subscriber the same slice; copying keeps readers independent.
	m.Data = slices.Clone(m.Data)
	return m, nil
}

// Dropped returns how many messages this subscription lost because its reader fell behind.
// The count is updated as Next returns the messages after the gap.
func (s *Subscription) Dropped() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// Close ends the subscription; the handle and its other subscriptions are unaffected.
func (s *Subscription) Close() {
	h := s.handle
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
	s.end()
}

func (s *Subscription) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.sub != nil {
		s.sub.Close()
	}
}
