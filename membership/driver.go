package membership

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/lfnet/lfnet/codec"
	"github.com/lfnet/lfnet/topics"
)

// Derivation purposes of the overlay id (on the wire) and of the join-proof key (never on
// the wire).
const (
	overlayPurpose = "membership"
	authPurpose    = "membership-auth"
)

// Option configures a Driver.
type Option func(*driverOptions)

type driverOptions struct {
	cfg           Config
	logger        *slog.Logger
	eventLimit    int
	contactSource ContactSource
	idleTimeout   time.Duration
	dialTimeout   time.Duration
	writeTimeout  time.Duration
	helloTimeout  time.Duration
	leaveTimeout  time.Duration
}

// ContactSource returns nodes believed to share topic (from the address book or topic
// discovery). The driver calls it, on its own goroutine, when an overlay runs out of
// neighbours and passive peers. It must return when ctx ends: leaving the overlay waits
// for it.
type ContactSource func(ctx context.Context, topic topics.Topic) []peer.AddrInfo

// WithConfig sets the HyParView configuration of every overlay (default DefaultConfig()).
func WithConfig(cfg Config) Option { return func(o *driverOptions) { o.cfg = cfg } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *driverOptions) { o.logger = l } }

// WithContactSource sets where an isolated overlay looks for new contacts besides the ones
// given to Join and AddContacts.
func WithContactSource(src ContactSource) Option {
	return func(o *driverOptions) { o.contactSource = src }
}

// WithEventQueueLimit bounds how many undelivered events an overlay keeps for a slow
// consumer before it drops the oldest (default 1024). See Overlay.Events.
func WithEventQueueLimit(n int) Option { return func(o *driverOptions) { o.eventLimit = n } }

// WithIdleTimeout sets how long an outgoing stream to a peer stays open without traffic
// (default 30 s).
func WithIdleTimeout(d time.Duration) Option { return func(o *driverOptions) { o.idleTimeout = d } }

// Driver runs HyParView overlays, one per topic, for one libp2p host. It is the only part of
// the package that does I/O: each overlay's State runs on its own goroutine, fed by a
// channel of inputs (messages read from streams, timers, send failures, libp2p disconnect
// notifications), and its actions become stream writes, peerstore updates, connection
// manager protections and events.
//
// Streams: each (overlay, peer) direction uses one long-lived outgoing stream, opened on the
// first message and closed after an idle period (30 s by default) or when the overlay is
// left. The first frame names the overlay (its derived id, never the topic); every further
// frame is one message. One stream per direction keeps the messages from one node to
// another in order, which the protocol relies on (a Neighbor request sent right after a
// Disconnect must not overtake it), and a dedicated writer goroutine per stream keeps a
// slow peer from blocking the state machine. A message-per-stream design would lose that
// order, since each incoming stream is read by its own goroutine.
type Driver struct {
	h     host.Host
	proto protocol.ID
	opts  driverOptions
	log   *slog.Logger

	mu       sync.Mutex
	overlays map[[32]byte]*Overlay
	inbound  map[network.Stream]struct{}
	closed   bool
	// left remembers overlays this node left recently (see tellGone), at most maxLeft.
	left map[[32]byte]*leftOverlay
	// stopping ends when Close starts waiting for the stream handlers, so that an answer
	// being sent (tellGone) does not hold it up.
	stopping     context.Context
	stopHandlers context.CancelFunc

	notifiee *network.NotifyBundle
	handlers sync.WaitGroup
	records  verifiedRecords
}

// NewDriver registers the membership protocol proto (e.g. "/lfnet/<net>/membership/1") on h.
// Close removes it again; the host itself stays open.
func NewDriver(h host.Host, proto protocol.ID, opts ...Option) (*Driver, error) {
	o := driverOptions{
		cfg:          DefaultConfig(),
		logger:       slog.Default(),
		eventLimit:   1024,
		idleTimeout:  30 * time.Second,
		dialTimeout:  15 * time.Second,
		writeTimeout: 10 * time.Second,
		helloTimeout: 10 * time.Second,
		leaveTimeout: 2 * time.Second,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.cfg.Validate(); err != nil {
		return nil, err
	}
	if o.eventLimit < 1 {
		return nil, fmt.Errorf("%w: event queue limit %d", ErrInvalidConfig, o.eventLimit)
	}
	if o.idleTimeout <= 0 {
		return nil, fmt.Errorf("%w: idle timeout %v", ErrInvalidConfig, o.idleTimeout)
	}
	d := &Driver{
		h:        h,
		proto:    proto,
		opts:     o,
		log:      o.logger.With("component", "membership"),
		overlays: make(map[[32]byte]*Overlay),
		inbound:  make(map[network.Stream]struct{}),
	}
	d.stopping, d.stopHandlers = context.WithCancel(context.Background())
	d.notifiee = &network.NotifyBundle{ConnectedF: d.connected, DisconnectedF: d.disconnected}
	h.SetStreamHandler(proto, d.handleStream)
	h.Network().Notify(d.notifiee)
	return d, nil
}

// Join starts the overlay of topic and joins it through contacts (none for the first node
// of a topic). It returns at once; neighbours are reported on the overlay's Events. ctx
// only bounds this call.
func (d *Driver) Join(ctx context.Context, topic topics.Topic, contacts []peer.AddrInfo) (*Overlay, error) {
	return d.join(ctx, topic, topics.Derive(topic, overlayPurpose), topics.Derive(topic, authPurpose), contacts)
}

// join is Join with the derived values explicit, so that tests can play a node that knows
// an overlay id but not the topic.
func (d *Driver) join(ctx context.Context, topic topics.Topic, id, key [32]byte, contacts []peer.AddrInfo) (*Overlay, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var seed [32]byte
	_, _ = rand.Read(seed[:])
	// The state's randomness also makes the proofs' nonces, so it comes from a secure seed.
	rng := mrand.New(mrand.NewChaCha8(seed))
	st, err := NewState(d.h.ID(), key, d.opts.cfg, rng, time.Now())
	if err != nil {
		return nil, err
	}
	o := newOverlay(d, topic, id, st)
	d.mu.Lock()
	switch {
	case d.closed:
		d.mu.Unlock()
		return nil, ErrClosed
	case d.overlays[id] != nil:
		d.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrAlreadyJoined, topic.Short())
	}
	d.overlays[id] = o
	delete(d.left, id)
	d.mu.Unlock()
	o.addContacts(contacts)
	go o.run(contacts)
	return o, nil
}

// Close leaves every overlay (sending Disconnect to neighbours, waiting up to 2 s for the
// messages to go out; what is not out by then is dropped, as a crash would) and removes the
// protocol handler. It does not close the host. It always returns nil; the error result
// makes Driver an io.Closer.
func (d *Driver) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	overlays := make([]*Overlay, 0, len(d.overlays))
	for _, o := range d.overlays {
		overlays = append(overlays, o)
	}
	d.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), d.opts.leaveTimeout)
	defer cancel()
	for _, o := range overlays {
		if err := o.Leave(ctx); err != nil && !errors.Is(err, ErrClosed) {
			d.log.Debug("membership: close", "overlay", o.topic.Short(), "err", err)
		}
	}
	d.h.RemoveStreamHandler(d.proto)
	d.h.Network().StopNotify(d.notifiee)
	d.mu.Lock()
	for s := range d.inbound {
		_ = s.Reset()
	}
	d.mu.Unlock()
	d.stopHandlers()
	d.handlers.Wait()
	return nil
}

func (d *Driver) remove(o *Overlay) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.overlays[o.id] == o {
		delete(d.overlays, o.id)
		if d.left == nil {
			d.left = map[[32]byte]*leftOverlay{}
		}
		if len(d.left) >= maxLeft {
			var oldest [32]byte
			var at time.Time
			for id, l := range d.left {
				if at.IsZero() || l.at.Before(at) {
					oldest, at = id, l.at
				}
			}
			delete(d.left, oldest)
		}
		d.left[o.id] = &leftOverlay{at: time.Now()}
	}
}

// startStream writes the hello that names overlay id on a new outgoing stream and returns
// the writer for the messages that follow.
func (d *Driver) startStream(s network.Stream, id [32]byte) (*codec.Writer, error) {
	_ = s.SetWriteDeadline(time.Now().Add(d.opts.writeTimeout))
	w := codec.NewWriter(s, codec.MaxFrameMembership)
	if err := w.Encode(wireHello{Overlay: id[:]}); err != nil {
		return nil, err
	}
	return w, nil
}

// A node that left an overlay can still be taken for a neighbour by a peer that accepted
// a request of it just before, or that a Join walk ended at: its links are made by the
// peer, and the Disconnects of Leave have gone out already. So for a while after leaving,
// a message for the overlay is answered with Disconnect{Alive: false}, once per peer.
const (
	maxLeft         = 64
	leftMemory      = 2 * time.Minute
	maxGoneAnswered = 64
)

type leftOverlay struct {
	at       time.Time
	answered []peer.ID
}

// goneTo reports whether p, which just sent a message for overlay id, should be told that
// this node left it, and records that it was.
func (d *Driver) goneTo(id [32]byte, p peer.ID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.left[id]
	if l == nil || d.closed || time.Since(l.at) > leftMemory ||
		len(l.answered) >= maxGoneAnswered || slices.Contains(l.answered, p) {
		return false
	}
	l.answered = append(l.answered, p)
	return true
}

// tellGone sends Disconnect{Alive: false} for overlay id to p over a new stream, if p should
// be told (goneTo). It never dials: p just reached us, so a connection is open.
func (d *Driver) tellGone(id [32]byte, p peer.ID) {
	if !d.goneTo(id, p) {
		return
	}
	frame, err := encodeMessage(Disconnect{Alive: false})
	if err != nil {
		d.log.Error("membership: encode", "kind", KindDisconnect, "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(network.WithNoDial(d.stopping, "membership: answer for a left overlay"), d.opts.writeTimeout)
	defer cancel()
	s, err := d.h.NewStream(ctx, p, d.proto)
	if err != nil {
		d.log.Debug("membership: tell a peer we left", "peer", p, "err", err)
		return
	}
	w, err := d.startStream(s, id)
	if err == nil {
		err = w.WriteFrame(frame)
	}
	if err != nil {
		d.log.Debug("membership: tell a peer we left", "peer", p, "err", err)
		_ = s.Reset()
		return
	}
	_ = s.Close()
}

// disconnected turns libp2p's loss of the last connection to a peer into PeerDown for every
// overlay that has it as a neighbour. It must not block (libp2p calls it inline).
func (d *Driver) disconnected(n network.Network, c network.Conn) {
	p := c.RemotePeer()
	if n.Connectedness(p) == network.Connected {
		return // another connection to the peer remains
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, o := range d.overlays {
		o.post(input{kind: inPeerDown, peer: p})
	}
}

// connected tells every overlay of a first connection to a peer, which may be a contact
// it lost touch with (see Offer). It must not block (libp2p calls it inline).
func (d *Driver) connected(n network.Network, c network.Conn) {
	p := c.RemotePeer()
	if len(n.ConnsToPeer(p)) > 1 {
		return // not news: another connection to the peer was open already
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, o := range d.overlays {
		o.post(input{kind: inConnected, peer: p})
	}
}

// handleStream reads one incoming stream: a hello naming the overlay, then messages until
// the sender closes it. Streams for overlays we do not hold are reset without an answer,
// so a stranger learns nothing about which topics we have; only an overlay left in the last
// two minutes is answered, with a Disconnect (tellGone), and only a holder of its topic can
// name it.
func (d *Driver) handleStream(s network.Stream) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		_ = s.Reset()
		return
	}
	d.inbound[s] = struct{}{}
	d.handlers.Add(1)
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.inbound, s)
		d.mu.Unlock()
		d.handlers.Done()
	}()

	from := s.Conn().RemotePeer()
	r := codec.NewReader(s, codec.MaxFrameMembership)
	_ = s.SetReadDeadline(time.Now().Add(d.opts.helloTimeout))
	var hello wireHello
	err := r.Decode(&hello)
	if err == nil && len(hello.Overlay) != overlayIDSize {
		err = fmt.Errorf("%w: overlay id of %d bytes", ErrBadMessage, len(hello.Overlay))
	}
	if err != nil {
		level := slog.LevelDebug // the peer went away or was too slow
		if badInput(err) {
			level = slog.LevelInfo
		}
		d.log.Log(context.Background(), level, "membership: bad stream hello", "peer", from, "err", err)
		_ = s.Reset()
		return
	}
	var id [32]byte
	copy(id[:], hello.Overlay)
	d.mu.Lock()
	o := d.overlays[id]
	d.mu.Unlock()
	if o == nil {
		_ = s.Reset()
		d.tellGone(id, from)
		return
	}
	for {
		// Senders close idle streams well within this, so only a stuck peer hits it.
		_ = s.SetReadDeadline(time.Now().Add(2*d.opts.idleTimeout + d.opts.writeTimeout))
		frame, err := r.ReadFrame()
		if err != nil {
			switch {
			case errors.Is(err, io.EOF):
				_ = s.Close()
			case badInput(err):
				d.log.Info("membership: bad frame", "peer", from, "overlay", o.topic.Short(), "err", err)
				_ = s.Reset()
			default:
				d.log.Debug("membership: read", "peer", from, "overlay", o.topic.Short(), "err", err)
				_ = s.Reset()
			}
			return
		}
		msg, err := decodeMessage(frame)
		if err == nil {
			err = checkRecordsWith(from, msg, d.records.open)
		}
		if err != nil {
			d.log.Info("membership: bad message", "peer", from, "overlay", o.topic.Short(), "err", err)
			_ = s.Reset()
			return
		}
		select {
		case o.inputs <- input{kind: inMessage, peer: from, msg: msg}:
		case <-o.done:
			_ = s.Reset()
			d.tellGone(id, from)
			return
		}
	}
}

// badInput reports whether err means the peer sent bytes that break the protocol, as
// opposed to the stream failing.
func badInput(err error) bool {
	for _, e := range []error{ErrBadMessage, codec.ErrFrameTooLarge, codec.ErrMalformed, codec.ErrNonCanonical, codec.ErrTrailingBytes, codec.ErrUnknownKind} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
