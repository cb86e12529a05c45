package syncproto

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/lfnet/lfnet/codec"
	"github.com/lfnet/lfnet/internal/bus"
	"github.com/lfnet/lfnet/topics"
)

// HandshakeTimeout bounds the whole handshake; a peer that stalls it loses its stream.
const HandshakeTimeout = 10 * time.Second

// A subscription holds at most defaultEventBuffer unread events, and at most
// EventBufferBytes of the items they carry, before it lags (dropping the oldest). Items are
// delivered whole, not fetched lazily from the store, so that a subscriber sees exactly
// what arrived; the byte bound keeps a subscriber that lags behind a sync of large items
// from holding them all (8192 events of 1 MiB bodies would be 8 GiB). The count bound is
// well above one store transaction of log sync (4096 operations, whose ItemReceived events
// arrive together), so that a subscriber that keeps up on average does not lag on a burst;
// the buffer grows only as far as it is used.
const (
	defaultEventBuffer = 8192
	EventBufferBytes   = 64 << 20
)

// eventWeight is what one buffered event counts against EventBufferBytes.
func eventWeight(ev Event) int { return ev.ItemBytes + eventOverhead }

// eventOverhead approximates an Event's own size, so that events without items count too.
const eventOverhead = 256

// Service runs the sync protocol for all topics of one node on one libp2p host.
type Service struct {
	h     host.Host
	proto protocol.ID
	log   *slog.Logger

	nextSession atomic.Uint64
	stats       serviceStats

	mu     sync.Mutex
	topics map[topics.Topic]*Topic
	closed bool
	wg     sync.WaitGroup // stream handlers
}

// Stats are a Service's running totals since it started.
type Stats struct {
	SessionsStarted, SessionsFailed uint64
	// Items and bytes that crossed finished sessions, as their protocols reported them.
	ItemsSent, ItemsReceived, BytesSent, BytesReceived uint64
}

type serviceStats struct {
	started, failed                      atomic.Uint64
	itemsOut, itemsIn, bytesOut, bytesIn atomic.Uint64
}

// Stats returns the service's running totals.
func (s *Service) Stats() Stats {
	return Stats{
		SessionsStarted: s.stats.started.Load(), SessionsFailed: s.stats.failed.Load(),
		ItemsSent: s.stats.itemsOut.Load(), ItemsReceived: s.stats.itemsIn.Load(),
		BytesSent: s.stats.bytesOut.Load(), BytesReceived: s.stats.bytesIn.Load(),
	}
}

// ServiceOption configures a Service.
type ServiceOption func(*Service)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) ServiceOption { return func(s *Service) { s.log = l } }

// NewService registers the sync protocol proto (normally host.ProtocolID("sync", "1")) on
// h. Close unregisters it; h itself is never closed.
func NewService(h host.Host, proto protocol.ID, opts ...ServiceOption) *Service {
	s := &Service{h: h, proto: proto, log: slog.Default(), topics: make(map[topics.Topic]*Topic)}
	for _, o := range opts {
		o(s)
	}
	s.log = s.log.With("component", "sync")
	h.SetStreamHandler(proto, s.handleStream)
	return s
}

// Open starts syncing topic with m as its data type. Sessions start as membership reports
// neighbours through the returned Topic's NeighborUp.
func (s *Service) Open(t topics.Topic, m Manager, cfg CoordinatorConfig) (*Topic, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if _, ok := s.topics[t]; ok {
		return nil, fmt.Errorf("%w: %s", ErrTopicExists, t.Short())
	}
	ctx, cancel := context.WithCancel(context.Background())
	var seed [32]byte
	copy(seed[:], newNonce())
	tp := &Topic{
		svc:      s,
		topic:    t,
		mgr:      m,
		cfg:      cfg,
		ctx:      ctx,
		cancel:   cancel,
		inputs:   make(chan func(), 64),
		events:   bus.NewWeighted(eventWeight),
		sessions: make(map[uint64]context.CancelFunc),
		timers:   make(map[peer.ID]*time.Timer),
		loopDone: make(chan struct{}),
		log:      s.log.With("topic", t.Short()),
	}
	tp.coord = NewCoordinator(s.h.ID(), cfg, rand.New(rand.NewChaCha8(seed)), func() uint64 { return s.nextSession.Add(1) })
	s.topics[t] = tp
	go tp.loop()
	return tp, nil
}

// Close stops every topic and session and unregisters the protocol.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	open := make([]*Topic, 0, len(s.topics))
	for _, t := range s.topics {
		open = append(open, t)
	}
	s.mu.Unlock()
	s.h.RemoveStreamHandler(s.proto)
	for _, t := range open {
		t.Close()
	}
	s.wg.Wait()
	return nil
}

func (s *Service) lookup(t topics.Topic) *Topic {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.topics[t]
}

func (s *Service) candidates() []topics.Topic {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]topics.Topic, 0, len(s.topics))
	for t := range s.topics {
		out = append(out, t)
	}
	return out
}

// track registers a stream handler goroutine unless the service is closing.
func (s *Service) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

func (s *Service) handleStream(st network.Stream) {
	if !s.track() {
		_ = st.Reset()
		return
	}
	defer s.wg.Done()
	remote := st.Conn().RemotePeer()
	_ = st.SetDeadline(time.Now().Add(HandshakeTimeout))
	r := codec.NewReader(st, codec.MaxFrameHandshake)
	w := codec.NewWriter(st, codec.MaxFrameHandshake)
	t, found, err := acceptHandshake(r, w, s.candidates(), s.h.ID(), remote)
	if err != nil {
		s.log.Debug("inbound handshake failed", "peer", remote, "err", err)
		_ = st.Reset()
		return
	}
	tp := (*Topic)(nil)
	if found {
		tp = s.lookup(t)
	}
	if tp == nil {
		s.log.Debug("inbound session for a topic we do not hold", "peer", remote)
		_ = sendVerdict(w, false)
		_ = st.Close()
		return
	}
	id, ctx, ok := tp.incoming(remote)
	if !ok || id == 0 {
		_ = sendVerdict(w, false)
		_ = st.Close()
		return
	}
	defer tp.sessionWG.Done()
	if err := sendVerdict(w, true); err != nil {
		_ = st.Reset()
		tp.do(func() { tp.coord.SessionEnded(remote, id, true) })
		return
	}
	tp.runSession(ctx, st, r, SessionInfo{ID: id, Topic: t, Remote: remote, Live: tp.cfg.Live})
}

// Topic is one topic's coordinator and its sessions.
type Topic struct {
	svc   *Service
	topic topics.Topic
	mgr   Manager
	cfg   CoordinatorConfig
	log   *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	inputs chan func()
	events *bus.Bus[Event]

	// Owned by the loop goroutine.
	coord    *Coordinator
	sessions map[uint64]context.CancelFunc
	timers   map[peer.ID]*time.Timer

	loopDone  chan struct{}
	sessionWG sync.WaitGroup
	closeOnce sync.Once
}

// NeighborUp tells the coordinator that membership made p a neighbour on this topic.
func (t *Topic) NeighborUp(p peer.ID) { t.do(func() { t.coord.NeighborUp(p) }) }

// Probe runs one session with p, a node that shares the topic but is not a neighbour
// (anti-entropy across overlay components).
func (t *Topic) Probe(p peer.ID) { t.do(func() { t.coord.Probe(p) }) }

// NeighborDown tells the coordinator that p is no longer a neighbour.
func (t *Topic) NeighborDown(p peer.ID) { t.do(func() { t.coord.NeighborDown(p) }) }

// Subscribe returns this topic's session events. A subscriber that does not keep up
// receives a Lagged event telling how many it missed; sessions never wait for it. It falls
// behind after 8192 unread events or EventBufferBytes of unread items, whichever is first.
func (t *Topic) Subscribe() *Subscription {
	return &Subscription{sub: t.events.SubscribeWeighted(defaultEventBuffer, EventBufferBytes)}
}

// Close stops every session of the topic and unregisters it from the service.
func (t *Topic) Close() {
	t.closeOnce.Do(func() {
		t.svc.mu.Lock()
		if t.svc.topics[t.topic] == t {
			delete(t.svc.topics, t.topic)
		}
		t.svc.mu.Unlock()
		t.cancel()
		<-t.loopDone
		t.sessionWG.Wait()
		t.events.Close()
	})
}

// do runs f on the loop goroutine; it is dropped once the topic is closed.
func (t *Topic) do(f func()) {
	select {
	case t.inputs <- f:
	case <-t.ctx.Done():
	}
}

func (t *Topic) loop() {
	defer close(t.loopDone)
	for {
		select {
		case f := <-t.inputs:
			f()
			t.apply(t.coord.Actions())
		case <-t.ctx.Done():
			t.coord.Close()
			t.apply(t.coord.Actions())
			for _, tm := range t.timers {
				tm.Stop()
			}
			return
		}
	}
}

func (t *Topic) apply(actions []Action) {
	for _, a := range actions {
		switch a.Kind {
		case StartSession:
			ctx, cancel := context.WithCancel(t.ctx)
			t.sessions[a.SessionID] = cancel
			t.sessionWG.Add(1)
			go t.initiate(ctx, a.Peer, a.SessionID, a.Probe)
		case CancelSession:
			if cancel, ok := t.sessions[a.SessionID]; ok {
				cancel()
				delete(t.sessions, a.SessionID)
			}
		case SetTimer:
			if old, ok := t.timers[a.Peer]; ok {
				old.Stop()
			}
			p, gen := a.Peer, a.Gen
			t.timers[a.Peer] = time.AfterFunc(a.After, func() { t.do(func() { t.coord.Timer(p, gen) }) })
		}
	}
}

// incoming asks the coordinator whether to accept a session from p and, if so, registers
// it. It runs on the caller's goroutine and waits for the loop.
func (t *Topic) incoming(p peer.ID) (id uint64, ctx context.Context, ok bool) {
	type verdict struct {
		id  uint64
		ctx context.Context
	}
	reply := make(chan verdict, 1)
	t.do(func() {
		id := t.coord.Incoming(p)
		if id == 0 {
			reply <- verdict{}
			return
		}
		ctx, cancel := context.WithCancel(t.ctx)
		t.sessions[id] = cancel
		t.sessionWG.Add(1)
		reply <- verdict{id: id, ctx: ctx}
	})
	select {
	case v := <-reply:
		return v.id, v.ctx, true
	case <-t.loopDone:
		// The loop may have accepted (and counted) the session just before stopping; the
		// caller must then run it, or Close would wait for it forever.
		select {
		case v := <-reply:
			return v.id, v.ctx, true
		default:
			return 0, nil, false
		}
	}
}

func (t *Topic) initiate(ctx context.Context, p peer.ID, id uint64, probe bool) {
	defer t.sessionWG.Done()
	info := SessionInfo{ID: id, Topic: t.topic, Remote: p, Initiator: true, Live: t.cfg.Live && !probe}
	st, r, err := t.open(ctx, p)
	if err != nil {
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, ErrRejected):
			// Normal when the remote does not hold the topic (yet) or won a tie-break.
			t.log.Debug("session rejected", "peer", p)
		default:
			t.log.Debug("cannot start session", "peer", p, "err", err)
			t.emit(info, Event{Kind: SessionFailed, Err: err})
		}
		t.do(func() { t.coord.SessionEnded(p, id, true) })
		return
	}
	t.runSession(ctx, st, r, info)
}

// open dials p's sync protocol and runs the initiator's handshake.
func (t *Topic) open(ctx context.Context, p peer.ID) (network.Stream, *codec.Reader, error) {
	sctx, cancel := context.WithTimeout(network.WithAllowLimitedConn(ctx, "lfnet-sync"), HandshakeTimeout)
	defer cancel()
	st, err := t.svc.h.NewStream(sctx, p, t.svc.proto)
	if err != nil {
		return nil, nil, fmt.Errorf("syncproto: open stream to %s: %w", p, err)
	}
	stop := context.AfterFunc(sctx, func() { _ = st.Reset() })
	defer stop()
	r := codec.NewReader(st, codec.MaxFrameHandshake)
	w := codec.NewWriter(st, codec.MaxFrameHandshake)
	if err := initiateHandshake(r, w, t.topic, t.svc.h.ID(), p); err != nil {
		_ = st.Reset()
		return nil, nil, err
	}
	return st, r, nil
}

// runSession hands an authenticated stream to the data type and reports the outcome.
// The handshake's writer is not needed beyond the handshake: the session writes through
// its own buffered writer.
func (t *Topic) runSession(ctx context.Context, st network.Stream, r *codec.Reader, info SessionInfo) {
	err := t.session(ctx, st, r, info)
	cancelled := ctx.Err() != nil
	switch {
	case err != nil && !cancelled:
		t.log.Debug("session failed", "peer", info.Remote, "session", info.ID, "err", err)
		t.emit(info, Event{Kind: SessionFailed, Err: err})
	default:
		t.emit(info, Event{Kind: SessionEnded})
	}
	t.do(func() { t.coord.SessionEnded(info.Remote, info.ID, err != nil && !cancelled) })
}

func (t *Topic) session(ctx context.Context, st network.Stream, r *codec.Reader, info SessionInfo) (err error) {
	// Reset unblocks the protocol's reads and writes when the session is cancelled.
	stop := context.AfterFunc(ctx, func() { _ = st.Reset() })
	defer stop()
	defer func() {
		if rec := recover(); rec != nil {
			err = fmt.Errorf("syncproto: protocol panicked: %v", rec)
		}
		if err != nil {
			_ = st.Reset()
		} else {
			_ = st.Close()
		}
	}()
	_ = st.SetDeadline(time.Time{})
	r.SetMaxFrame(codec.MaxFrameSync)
	proto, err := t.mgr.NewSession(info)
	if err != nil {
		return fmt.Errorf("syncproto: create session: %w", err)
	}
	t.emit(info, Event{Kind: SessionStarted})
	conn := newStreamConn(st, r)
	if err := proto.Run(ctx, conn, func(ev Event) { t.emit(info, ev) }); err != nil {
		return err
	}
	return nil
}

func (t *Topic) emit(info SessionInfo, ev Event) {
	st := &t.svc.stats
	switch ev.Kind {
	case SessionStarted:
		st.started.Add(1)
	case SessionFailed:
		st.failed.Add(1)
	case SyncFinished:
		st.itemsOut.Add(ev.Metrics.ItemsSent)
		st.itemsIn.Add(ev.Metrics.ItemsReceived)
		st.bytesOut.Add(ev.Metrics.BytesSent)
		st.bytesIn.Add(ev.Metrics.BytesReceived)
	}
	ev.Topic, ev.Remote, ev.SessionID, ev.Initiator, ev.Live = t.topic, info.Remote, info.ID, info.Initiator, info.Live
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	t.events.Publish(ev)
}

// connWriteBuffer is the size of a session's write buffer: large enough that a catch-up of
// small operations leaves in few transport writes (each a yamux frame, a TLS record and a
// syscall over TCP), small enough to hold per session.
const connWriteBuffer = 64 << 10

type streamConn struct {
	st network.Stream
	r  *codec.Reader
	wm sync.Mutex // protocols may write from several goroutines (live pushes)
	bw *bufio.Writer
	w  *codec.Writer
}

func newStreamConn(st network.Stream, r *codec.Reader) *streamConn {
	bw := bufio.NewWriterSize(st, connWriteBuffer)
	return &streamConn{st: st, r: r, bw: bw, w: codec.NewWriter(bw, codec.MaxFrameSync)}
}

func (c *streamConn) ReadFrame() ([]byte, error) { return c.r.ReadFrame() }

func (c *streamConn) WriteFrame(b []byte) error {
	c.wm.Lock()
	defer c.wm.Unlock()
	return c.w.WriteFrame(b)
}

func (c *streamConn) Flush() error {
	c.wm.Lock()
	defer c.wm.Unlock()
	return c.flushLocked()
}

func (c *streamConn) flushLocked() error {
	if err := c.bw.Flush(); err != nil {
		return fmt.Errorf("syncproto: flush: %w", err)
	}
	return nil
}

func (c *streamConn) CloseWrite() error {
	c.wm.Lock()
	defer c.wm.Unlock()
	if err := c.flushLocked(); err != nil {
		return err
	}
	return c.st.CloseWrite()
}

func (c *streamConn) Reset() error { return c.st.Reset() }

// Subscription delivers a topic's session events to one consumer goroutine.
type Subscription struct {
	sub     *bus.Subscription[Event]
	pending *Event
}

// Next returns the next event. After lag it first returns a Lagged event carrying the
// count of missed events, then the event that followed them. It returns ErrClosed once the
// topic is closed and every buffered event was read.
func (s *Subscription) Next(ctx context.Context) (Event, error) {
	if s.pending != nil {
		ev := *s.pending
		s.pending = nil
		return ev, nil
	}
	ev, dropped, err := s.sub.Next(ctx)
	if errors.Is(err, bus.ErrClosed) {
		return Event{}, ErrClosed
	}
	if err != nil {
		return Event{}, err
	}
	if dropped > 0 {
		s.pending = &ev
		return Event{Kind: Lagged, Dropped: dropped, Topic: ev.Topic, Time: time.Now()}, nil
	}
	return ev, nil
}

// Close ends the subscription.
func (s *Subscription) Close() { s.sub.Close() }
