// Package sim runs many membership state machines over a deterministic in-memory network:
// virtual time, one seeded random source, optional message loss and per-link latency. It
// crashes nodes, floods broadcasts over the active views and measures what the HyParView
// paper measures (connectivity, symmetry, in-degree, broadcast reliability). Runs with the
// same Config and seed produce the same results.
package sim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/lfnet/lfnet/membership"
)

// NodeID names a simulated node: its index in the simulation.
type NodeID uint32

// MarshalBinary returns the id's 4 bytes (big-endian), for the join proof.
func (n NodeID) MarshalBinary() ([]byte, error) {
	return binary.BigEndian.AppendUint32(make([]byte, 0, 4), uint32(n)), nil
}

// Config describes a simulation. Zero durations take the defaults listed per field.
type Config struct {
	// Nodes is the number of nodes that join the overlay.
	Nodes int
	// Seed makes the run reproducible: every random choice derives from it.
	Seed uint64
	// Membership is the HyParView configuration of every node.
	Membership membership.Config
	// Latency is the minimum one-way delay of a message (default 20 ms).
	Latency time.Duration
	// LatencyJitter adds a per-link delay in [0, LatencyJitter) (default 30 ms). It is fixed
	// per ordered pair of nodes, so each link stays FIFO like a TCP connection.
	LatencyJitter time.Duration
	// Loss is the probability that a message silently disappears (default 0). TCP links
	// do not lose messages; this models worse transports and stresses the repair paths.
	Loss float64
	// FailureDetection is how long after reaching a crashed node a send fails at the
	// sender, like a TCP reset (default: Latency).
	FailureDetection time.Duration
	// CrashDetection models how neighbours learn of a crash without sending to the crashed
	// node. Zero (the default) is the paper's model: a crash is noticed only when someone
	// sends to the crashed node. A positive value makes every live node holding a crashed
	// node in its active view get PeerDown at a uniformly random time in (0, CrashDetection]
	// after the crash: a few milliseconds model a process crash whose TCP connections are
	// reset by the kernel, tens of seconds model a machine crash found by transport
	// keep-alives (yamux pings every 30 s in libp2p).
	CrashDetection time.Duration
	// Heal answers ActionNeedContacts with a Join to a random live node after
	// DiscoveryDelay, modelling lfnet's address book and topic discovery (DESIGN.md 4,
	// "healer").
	Heal bool
	// DiscoveryDelay is the delay of a Heal answer (default 1 s).
	DiscoveryDelay time.Duration
	// JoinInterval is the time between two consecutive joins during Bootstrap
	// (default 10 ms).
	JoinInterval time.Duration
	// ForwardToNewNeighbors makes a node that holds the current broadcast also send it to
	// every neighbour it gains while the broadcast runs (replacements found after a failed
	// send), as gossip layers' repair does. Off: a node forwards only when it receives.
	ForwardToNewNeighbors bool
}

// ErrInvalid is returned for a Config that cannot run.
var ErrInvalid = errors.New("sim: invalid config")

func (c *Config) setDefaults() {
	if c.Latency == 0 {
		c.Latency = 20 * time.Millisecond
	}
	if c.LatencyJitter == 0 {
		c.LatencyJitter = 30 * time.Millisecond
	}
	if c.FailureDetection == 0 {
		c.FailureDetection = c.Latency
	}
	if c.DiscoveryDelay == 0 {
		c.DiscoveryDelay = time.Second
	}
	if c.JoinInterval == 0 {
		c.JoinInterval = 10 * time.Millisecond
	}
}

// Sim is one simulated network. It is not safe for concurrent use.
type Sim struct {
	cfg   Config
	rng   *rand.Rand
	epoch time.Time
	now   time.Duration
	seq   uint64
	queue eventQueue

	nodes []node
	live  []NodeID // started and not crashed, for Heal's contact choice

	bcastID     uint32
	bcastActive bool

	messages uint64
	lost     uint64
	scratch  []NodeID

	// split is set between Partition and HealPartition: messages between nodes of
	// different sides fail at the sender, and Heal finds contacts on the node's own side.
	split bool
}

type node struct {
	state   *membership.State[NodeID]
	started bool
	crashed bool
	// gotBcast is the id of the last broadcast this node received.
	gotBcast uint32
	// side is the node's side of the last Partition.
	side int
}

func (n *node) up() bool { return n.started && !n.crashed }

type eventKind uint8

const (
	evMessage eventKind = iota + 1
	evTimer
	evPeerDown
	evStart
	evHeal
	evBroadcast
)

type event struct {
	at    time.Duration
	seq   uint64
	kind  eventKind
	node  NodeID // the node the event happens at
	peer  NodeID // sender, failed peer or contact
	bcast uint32
	msg   membership.Message
	timer membership.Timer[NodeID]
}

// New returns a simulation of cfg.Nodes nodes, none started yet; call Bootstrap.
func New(cfg Config) (*Sim, error) {
	cfg.setDefaults()
	if cfg.Nodes < 1 {
		return nil, fmt.Errorf("%w: %d nodes", ErrInvalid, cfg.Nodes)
	}
	if cfg.Loss < 0 || cfg.Loss >= 1 {
		return nil, fmt.Errorf("%w: loss %v not in [0, 1)", ErrInvalid, cfg.Loss)
	}
	if err := cfg.Membership.Validate(); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	return &Sim{
		cfg:   cfg,
		rng:   rand.New(rand.NewPCG(cfg.Seed, 0x6c666e6574)),
		epoch: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		nodes: make([]node, cfg.Nodes),
	}, nil
}

// Clone returns an independent copy of the simulation whose further random choices derive
// from seed instead of the original seed, so one settled overlay can be crashed in many
// different ways.
func (s *Sim) Clone(seed uint64) *Sim {
	c := *s
	c.cfg.Seed = seed
	c.rng = rand.New(rand.NewPCG(seed, 0x6c666e6574))
	c.queue = eventQueue{items: slices.Clone(s.queue.items)}
	c.live = slices.Clone(s.live)
	c.scratch = nil
	c.nodes = make([]node, len(s.nodes))
	for i, n := range s.nodes {
		c.nodes[i] = n
		if n.state != nil {
			c.nodes[i].state = n.state.Clone(rand.New(rand.NewPCG(seed, uint64(i)+1)))
		}
	}
	return &c
}

// Now returns the virtual time elapsed since the simulation started.
func (s *Sim) Now() time.Duration { return s.now }

// Messages returns how many membership messages were sent, and how many of them Loss
// dropped.
func (s *Sim) Messages() (sent, lost uint64) { return s.messages, s.lost }

// State returns node n's state machine, for inspection only.
func (s *Sim) State(n NodeID) *membership.State[NodeID] { return s.nodes[n].state }

// Up reports whether node n has started and not crashed.
func (s *Sim) Up(n NodeID) bool { return s.nodes[n].up() }

// Bootstrap starts node 0 and lets every other node join, one every JoinInterval, through
// a random node that joined before it; then it runs until the last join has been handled.
func (s *Sim) Bootstrap() error {
	if len(s.live) > 0 {
		return fmt.Errorf("%w: Bootstrap called twice", ErrInvalid)
	}
	for i := range s.nodes {
		s.push(event{at: s.now + time.Duration(i)*s.cfg.JoinInterval, kind: evStart, node: NodeID(i)})
	}
	s.RunFor(time.Duration(len(s.nodes))*s.cfg.JoinInterval + 5*time.Second)
	return nil
}

// RunFor processes every event up to d from now and advances the clock by d.
func (s *Sim) RunFor(d time.Duration) {
	end := s.now + d
	for s.queue.len() > 0 && s.queue.peek().at <= end {
		ev := s.queue.pop()
		s.now = ev.at
		s.handle(&ev)
	}
	s.now = end
}

// Crash stops the given nodes at once: they receive nothing more and sends to them fail.
func (s *Sim) Crash(ids []NodeID) {
	for _, id := range ids {
		if s.nodes[id].up() {
			s.nodes[id].crashed = true
		}
	}
	s.rebuildLive()
	if s.cfg.CrashDetection <= 0 {
		return
	}
	for _, id := range s.live {
		s.scratch = s.nodes[id].state.AppendActive(s.scratch[:0])
		for _, p := range s.scratch {
			if s.nodes[p].crashed {
				after := 1 + time.Duration(s.rng.Int64N(int64(s.cfg.CrashDetection)))
				s.push(event{at: s.now + after, kind: evPeerDown, node: id, peer: p})
			}
		}
	}
}

// CrashFraction crashes round(fraction × live nodes) live nodes chosen at random and
// returns them.
func (s *Sim) CrashFraction(fraction float64) []NodeID {
	live := append([]NodeID(nil), s.live...)
	k := int(fraction*float64(len(live)) + 0.5)
	k = min(max(k, 0), len(live))
	for i := 0; i < k; i++ {
		j := i + s.rng.IntN(len(live)-i)
		live[i], live[j] = live[j], live[i]
	}
	victims := live[:k]
	s.Crash(victims)
	return victims
}

// Partition splits the network: side gives each node's side. Connections between sides
// break, so every node learns (after FailureDetection) that its neighbours on the other
// side failed, and from now on a message between sides fails at its sender.
func (s *Sim) Partition(side func(NodeID) int) {
	for i := range s.nodes {
		s.nodes[i].side = side(NodeID(i))
	}
	s.split = true
	for _, id := range s.live {
		s.scratch = s.nodes[id].state.AppendActive(s.scratch[:0])
		for _, p := range s.scratch {
			if s.cut(id, p) {
				s.push(event{at: s.now + s.cfg.FailureDetection, kind: evPeerDown, node: id, peer: p})
			}
		}
	}
}

// HealPartition reconnects the sides. Nothing crosses by itself: like lfnet's nodes, the
// sides find each other again through discovery (Rediscover).
func (s *Sim) HealPartition() { s.split = false }

// Rediscover gives every live node k random live nodes as discovery would: each is
// reported reachable (State.PeerUp) and offered (State.Offer), as lfnet's membership
// driver does with the contacts topic discovery finds.
func (s *Sim) Rediscover(k int) {
	now := s.epoch.Add(s.now)
	contacts := make([]membership.PeerInfo[NodeID], 0, k)
	for _, id := range s.live {
		contacts = contacts[:0]
		for range k {
			if c, ok := s.randomLiveExcept(id); ok {
				contacts = append(contacts, membership.PeerInfo[NodeID]{ID: c})
			}
		}
		st := s.nodes[id].state
		for _, c := range contacts {
			st.PeerUp(c, now)
		}
		st.Offer(contacts, now)
		s.apply(id)
	}
}

// cut reports whether a partition separates a and b.
func (s *Sim) cut(a, b NodeID) bool {
	return s.split && s.nodes[a].side != s.nodes[b].side
}

// RandomLive returns a random live node (there must be one).
func (s *Sim) RandomLive() NodeID { return s.live[s.rng.IntN(len(s.live))] }

// BroadcastResult is the outcome of one flood.
type BroadcastResult struct {
	// Reached counts live nodes (the source included) that received the message.
	Reached int
	// Live is the number of live nodes when the broadcast ended.
	Live int
}

// Reliability is Reached / Live, the paper's reliability metric.
func (r BroadcastResult) Reliability() float64 {
	if r.Live == 0 {
		return 0
	}
	return float64(r.Reached) / float64(r.Live)
}

// Broadcast floods one message from src over the active views: every node forwards it to
// all its neighbours except the one it came from, the first time it receives it. A send to
// a crashed node fails at the sender (PeerDown), which repairs its view as in the paper.
// The simulation then runs for window, and the nodes reached are counted.
func (s *Sim) Broadcast(src NodeID, window time.Duration) BroadcastResult {
	s.bcastID++
	s.bcastActive = true
	s.nodes[src].gotBcast = s.bcastID
	s.forwardBroadcast(src, src)
	s.RunFor(window)
	s.bcastActive = false
	res := BroadcastResult{Live: len(s.live)}
	for _, id := range s.live {
		if s.nodes[id].gotBcast == s.bcastID {
			res.Reached++
		}
	}
	return res
}

func (s *Sim) forwardBroadcast(at, except NodeID) {
	s.scratch = s.nodes[at].state.AppendActive(s.scratch[:0])
	for _, p := range s.scratch {
		if p != except {
			s.sendBroadcast(at, p)
		}
	}
}

func (s *Sim) sendBroadcast(from, to NodeID) {
	s.push(event{at: s.now + s.latency(from, to), kind: evBroadcast, node: to, peer: from, bcast: s.bcastID})
}

func (s *Sim) handle(ev *event) {
	n := &s.nodes[ev.node]
	switch ev.kind {
	case evStart:
		s.start(ev.node)
		return
	case evMessage, evBroadcast:
		if !n.up() || s.cut(ev.peer, ev.node) {
			// The receiver is gone: the send fails at the sender, like a TCP reset.
			if s.nodes[ev.peer].up() {
				s.push(event{at: s.now + s.cfg.FailureDetection, kind: evPeerDown, node: ev.peer, peer: ev.node})
			}
			return
		}
	}
	if !n.up() {
		return
	}
	now := s.epoch.Add(s.now)
	switch ev.kind {
	case evMessage:
		n.state.HandleMessage(ev.peer, ev.msg, now)
	case evTimer:
		n.state.HandleTimer(ev.timer, now)
	case evPeerDown:
		n.state.PeerDown(ev.peer, now)
	case evHeal:
		contact, ok := s.randomLiveExcept(ev.node)
		if !ok {
			return
		}
		n.state.Join(membership.PeerInfo[NodeID]{ID: contact}, now)
	case evBroadcast:
		if ev.bcast == s.bcastID && n.gotBcast != ev.bcast {
			n.gotBcast = ev.bcast
			s.forwardBroadcast(ev.node, ev.peer)
		}
		return
	}
	s.apply(ev.node)
}

func (s *Sim) start(id NodeID) {
	n := &s.nodes[id]
	rng := rand.New(rand.NewPCG(s.cfg.Seed, uint64(id)+1))
	st, err := membership.NewState(id, authKey, s.cfg.Membership, rng, s.epoch.Add(s.now))
	if err != nil {
		// New validated the config; NewState has no other failure.
		panic(fmt.Sprintf("sim: NewState: %v", err))
	}
	n.state = st
	n.started = true
	s.live = append(s.live, id)
	if len(s.live) > 1 {
		contact, _ := s.randomLiveExcept(id)
		st.Join(membership.PeerInfo[NodeID]{ID: contact}, s.epoch.Add(s.now))
	}
	s.apply(id)
}

// authKey is the simulated topic's membership-auth key; every node holds the topic.
var authKey = [32]byte{'l', 'f', 's', 'i', 'm'}

// apply carries out the actions node id just produced.
func (s *Sim) apply(id NodeID) {
	n := &s.nodes[id]
	for _, a := range n.state.Actions() {
		switch a.Kind {
		case membership.ActionSend:
			s.messages++
			if s.cfg.Loss > 0 && s.rng.Float64() < s.cfg.Loss {
				s.lost++
				continue
			}
			s.push(event{at: s.now + s.latency(id, a.Peer), kind: evMessage, node: a.Peer, peer: id, msg: a.Msg})
		case membership.ActionSetTimer:
			s.push(event{at: s.now + a.After, kind: evTimer, node: id, timer: a.Timer})
		case membership.ActionNeedContacts:
			if s.cfg.Heal {
				s.push(event{at: s.now + s.cfg.DiscoveryDelay, kind: evHeal, node: id})
			}
		case membership.ActionNeighborUp:
			if s.cfg.ForwardToNewNeighbors && s.bcastActive && n.gotBcast == s.bcastID {
				s.sendBroadcast(id, a.Peer)
			}
		}
	}
}

// randomLiveExcept returns a random live node other than id that id can reach.
func (s *Sim) randomLiveExcept(id NodeID) (NodeID, bool) {
	if len(s.live) == 0 || (len(s.live) == 1 && s.live[0] == id) {
		return 0, false
	}
	// Rejection sampling is fast while most nodes are eligible; a scan settles the rest.
	for range 64 {
		c := s.live[s.rng.IntN(len(s.live))]
		if c != id && !s.cut(id, c) {
			return c, true
		}
	}
	n := 0
	for _, c := range s.live {
		if c != id && !s.cut(id, c) {
			n++
		}
	}
	if n == 0 {
		return 0, false
	}
	k := s.rng.IntN(n)
	for _, c := range s.live {
		if c != id && !s.cut(id, c) {
			if k == 0 {
				return c, true
			}
			k--
		}
	}
	return 0, false
}

func (s *Sim) rebuildLive() {
	s.live = s.live[:0]
	for i := range s.nodes {
		if s.nodes[i].up() {
			s.live = append(s.live, NodeID(i))
		}
	}
}

// latency is fixed per ordered pair, so messages on one link arrive in the order sent.
func (s *Sim) latency(from, to NodeID) time.Duration {
	if s.cfg.LatencyJitter <= 0 {
		return s.cfg.Latency
	}
	h := splitmix64(s.cfg.Seed ^ uint64(from)<<32 ^ uint64(to))
	return s.cfg.Latency + time.Duration(h%uint64(s.cfg.LatencyJitter))
}

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func (s *Sim) push(ev event) {
	s.seq++
	ev.seq = s.seq
	s.queue.push(ev)
}
