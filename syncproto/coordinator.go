package syncproto

import (
	"math/rand/v2"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// CoordinatorConfig tunes a topic's coordinator.
type CoordinatorConfig struct {
	// Live keeps sessions open after catch-up.
	Live bool
	// RetryBase and RetryMax bound the exponential backoff after a failed session.
	RetryBase, RetryMax time.Duration
	// Resync is how long after a completed session, without live mode, the neighbour is
	// synced again.
	Resync time.Duration
}

// DefaultCoordinatorConfig returns the defaults of the design: retries from 5 s doubling up
// to 2 min (with jitter), re-sync every minute.
func DefaultCoordinatorConfig() CoordinatorConfig {
	return CoordinatorConfig{RetryBase: 5 * time.Second, RetryMax: 2 * time.Minute, Resync: time.Minute}
}

// ActionKind says what the driver must do.
type ActionKind uint8

// Coordinator actions.
const (
	// StartSession: open a stream to Peer and run session SessionID as initiator.
	StartSession ActionKind = iota + 1
	// CancelSession: stop session SessionID (its outcome will be ignored).
	CancelSession
	// SetTimer: call Coordinator.Timer(Peer, Gen) after After.
	SetTimer
)

// Action is one instruction from the Coordinator to its driver.
type Action struct {
	Kind      ActionKind
	Peer      peer.ID
	SessionID uint64
	Gen       uint64
	After     time.Duration
	// Probe marks a StartSession with a node that is not a neighbour (see Probe): the
	// session must end once the two sides are in sync instead of staying open in live mode.
	Probe bool
}

type peerState struct {
	neighbor  bool
	session   uint64 // 0: none
	initiator bool
	probe     bool // the running session was started as a probe
	failures  int
	timerGen  uint64 // only the timer with this generation is current
}

// Coordinator decides, for one topic, which sessions run: exactly one per neighbour,
// started when membership reports the neighbour, stopped when it leaves, retried with
// backoff after failures and repeated periodically when not in live mode. It does no I/O
// and keeps no clock of its own: randomness (for jitter) is injected, and session ids come
// from the driver-supplied allocator so they are unique across topics.
type Coordinator struct {
	self   peer.ID
	cfg    CoordinatorConfig
	rng    *rand.Rand
	nextID func() uint64
	peers  map[peer.ID]*peerState
	out    []Action
}

// NewCoordinator returns a coordinator for the node self. nextID must return unique,
// non-zero session ids.
func NewCoordinator(self peer.ID, cfg CoordinatorConfig, rng *rand.Rand, nextID func() uint64) *Coordinator {
	return &Coordinator{self: self, cfg: cfg, rng: rng, nextID: nextID, peers: make(map[peer.ID]*peerState)}
}

// Actions returns and clears the pending actions.
func (c *Coordinator) Actions() []Action {
	out := c.out
	c.out = nil
	return out
}

func (c *Coordinator) peer(p peer.ID) *peerState {
	ps, ok := c.peers[p]
	if !ok {
		ps = &peerState{}
		c.peers[p] = ps
	}
	return ps
}

func (c *Coordinator) start(p peer.ID, ps *peerState) {
	ps.session = c.nextID()
	ps.initiator = true
	ps.probe = !ps.neighbor
	ps.timerGen++ // a pending retry or re-sync is moot now
	c.out = append(c.out, Action{Kind: StartSession, Peer: p, SessionID: ps.session, Probe: ps.probe})
}

func (c *Coordinator) cancel(p peer.ID, ps *peerState) {
	if ps.session != 0 {
		c.out = append(c.out, Action{Kind: CancelSession, Peer: p, SessionID: ps.session})
		ps.session = 0
	}
}

func (c *Coordinator) schedule(p peer.ID, ps *peerState, after time.Duration) {
	ps.timerGen++
	c.out = append(c.out, Action{Kind: SetTimer, Peer: p, Gen: ps.timerGen, After: after})
}

// NeighborUp: membership added p to the topic's active view.
func (c *Coordinator) NeighborUp(p peer.ID) {
	ps := c.peer(p)
	ps.neighbor = true
	if ps.session == 0 {
		c.start(p, ps)
	}
}

// Probe starts a one-off session with p, a node known to share the topic that is not a
// neighbour, unless one is running. It is how two overlay components that never link up
// (after a partition heals, for instance) still converge: nothing is retried or kept
// alive for it, and the session does not stay open in live mode (Action.Probe), or every
// probe would leave a live link to a node outside the overlay.
func (c *Coordinator) Probe(p peer.ID) {
	ps := c.peer(p)
	if ps.session == 0 {
		c.start(p, ps)
	}
}

// NeighborDown: p left the active view; its session stops and no retry is pending.
func (c *Coordinator) NeighborDown(p peer.ID) {
	ps, ok := c.peers[p]
	if !ok {
		return
	}
	c.cancel(p, ps)
	delete(c.peers, p)
}

// Incoming decides on a session that p initiated and that passed the handshake for this
// topic. It returns the id of the accepted session, or 0 to reject it. When both nodes
// initiate at once, the initiation of the lower node id wins on both sides, so exactly one
// session survives without further messages.
func (c *Coordinator) Incoming(p peer.ID) uint64 {
	ps := c.peer(p)
	if ps.session != 0 && ps.initiator && c.self < p {
		return 0
	}
	// Either nothing runs, our own initiation loses the tie-break, or the remote restarted
	// its side of an accepted session: the new session replaces the old.
	c.cancel(p, ps)
	ps.session = c.nextID()
	ps.initiator = false
	ps.probe = false
	ps.timerGen++
	return ps.session
}

// SessionEnded reports the outcome of session id with p; failed says whether it ended with
// an error. Outcomes of sessions that were cancelled or replaced are ignored.
func (c *Coordinator) SessionEnded(p peer.ID, id uint64, failed bool) {
	ps, ok := c.peers[p]
	if !ok || ps.session != id {
		return
	}
	ps.session = 0
	wasProbe := ps.probe
	ps.probe = false
	if !ps.neighbor {
		// An accepted session from a node that is not (yet) our neighbour: nothing to
		// keep alive.
		delete(c.peers, p)
		return
	}
	switch {
	case failed:
		ps.failures++
		c.schedule(p, ps, c.backoff(ps.failures))
	case wasProbe && c.cfg.Live:
		// The probed node became a neighbour while the one-off session ran: now the
		// session that stays open.
		ps.failures = 0
		c.start(p, ps)
	case c.cfg.Live:
		// A live session only ends cleanly when the remote closed the topic; try again
		// later in case it reopens.
		ps.failures = 0
		c.schedule(p, ps, c.jitter(c.cfg.RetryBase))
	default:
		ps.failures = 0
		c.schedule(p, ps, c.jitter(c.cfg.Resync))
	}
}

// Timer fires a timer set by a SetTimer action.
func (c *Coordinator) Timer(p peer.ID, gen uint64) {
	ps, ok := c.peers[p]
	if !ok || ps.timerGen != gen || !ps.neighbor || ps.session != 0 {
		return
	}
	c.start(p, ps)
}

// Close cancels every session.
func (c *Coordinator) Close() {
	for p, ps := range c.peers {
		c.cancel(p, ps)
	}
	clear(c.peers)
}

// Sessions returns the number of sessions the coordinator considers running.
func (c *Coordinator) Sessions() int {
	n := 0
	for _, ps := range c.peers {
		if ps.session != 0 {
			n++
		}
	}
	return n
}

// backoff returns RetryBase * 2^(failures-1), capped at RetryMax, with jitter.
func (c *Coordinator) backoff(failures int) time.Duration {
	d := c.cfg.RetryBase
	for i := 1; i < failures && d < c.cfg.RetryMax; i++ {
		d *= 2
	}
	return c.jitter(min(d, c.cfg.RetryMax))
}

// jitter spreads d over [d/2, d) so that nodes which failed together do not retry together.
func (c *Coordinator) jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + time.Duration(c.rng.Int64N(int64(d-half)))
}
