package membership

import (
	"crypto/subtle"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// Stats counts what the state machine refused. They exist so that tests and metrics can
// observe silent rejections.
type Stats struct {
	// RejectedAuth counts Join and Neighbor requests whose MAC did not verify: the sender
	// does not hold the topic (or forged the request). They get no answer.
	RejectedAuth uint64
	// Ignored counts messages that did not fit the current state: ForwardJoin or Shuffle from
	// a peer that is not a neighbour, unsolicited replies, Disconnect from a non-neighbour.
	Ignored uint64
}

// State is one node's HyParView state for one overlay: a pure, deterministic state machine.
// It performs no I/O, starts no goroutines and reads neither clock nor global randomness;
// every input carries the current time and all randomness comes from the injected source.
// Inputs are the methods Join, Offer, PeerUp, HandleMessage, HandleTimer, PeerDown and Leave; each appends
// Actions to an outbox that the embedder drains with Actions and carries out in order.
//
// A State is not safe for concurrent use.
type State[P ID] struct {
	self      P
	selfBytes []byte
	data      []byte
	auth      macer
	cfg       Config
	rng       *rand.Rand
	now       time.Time

	active  []PeerInfo[P]
	passive []PeerInfo[P]
	pending []pendingNeighbor[P]
	// tried holds passive peers asked for a link since the last shuffle tick, so that a round
	// of promotions never asks the same peer twice and always ends.
	tried []P
	// lost holds neighbours that failed (PeerDown), oldest first, at most maxLost. One that
	// comes back was most likely cut off by a partition that has healed: see rejoinLost.
	lost []P

	shuffle    outstandingShuffle[P]
	shuffleSeq uint64
	timerSeq   uint64

	starvingSignalled bool
	left              bool

	out     []Action[P]
	scratch []PeerInfo[P]
	stats   Stats
}

type pendingNeighbor[P ID] struct {
	peer     P
	seq      uint64
	deadline time.Time
	// urgent marks a request that replaces a failed neighbour (see Config.UrgentReplacement);
	// if it fails too, its replacement is urgent as well.
	urgent bool
}

type outstandingShuffle[P ID] struct {
	active bool
	id     uint64
	sent   []P
}

// NewState returns the state of node self in the overlay whose membership-auth key is key
// (topics.Derive(topic, "membership-auth") in lfnet). rng is the only source of randomness;
// nonces of join proofs come from it, so in production it must be seeded from a secure
// source. The outbox starts with the first shuffle timer: drain Actions after NewState.
func NewState[P ID](self P, key [32]byte, cfg Config, rng *rand.Rand, now time.Time) (*State[P], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if rng == nil {
		return nil, fmt.Errorf("%w: nil random source", ErrInvalidConfig)
	}
	s := &State[P]{
		self:      self,
		selfBytes: idBytes(self),
		auth:      macer{key: key},
		cfg:       cfg,
		rng:       rng,
		now:       now,
		active:    make([]PeerInfo[P], 0, cfg.ActiveSize+1),
		passive:   make([]PeerInfo[P], 0, min(cfg.PassiveSize, 64)),
	}
	s.armShuffle()
	return s, nil
}

// Clone returns an independent copy of the state that draws its randomness from rng.
// Simulators use it to branch one settled overlay into many experiments.
func (s *State[P]) Clone(rng *rand.Rand) *State[P] {
	c := *s
	c.rng = rng
	c.auth = macer{key: s.auth.key}
	c.active = slices.Clone(s.active)
	c.passive = slices.Clone(s.passive)
	c.pending = slices.Clone(s.pending)
	c.tried = slices.Clone(s.tried)
	c.lost = slices.Clone(s.lost)
	c.shuffle.sent = slices.Clone(s.shuffle.sent)
	c.out = slices.Clone(s.out)
	c.scratch = nil
	return &c
}

// SetData sets the peer data this node sends about itself (its signed peer record in the
// driver). It is carried in Join, Neighbor, NeighborReply and Shuffle.
func (s *State[P]) SetData(data []byte) { s.data = data }

// Self returns this node's id.
func (s *State[P]) Self() P { return s.self }

// Config returns the configuration the state runs with.
func (s *State[P]) Config() Config { return s.cfg }

// Stats returns the rejection counters.
func (s *State[P]) Stats() Stats { return s.stats }

// Left reports whether Leave was called; a state that left ignores every input.
func (s *State[P]) Left() bool { return s.left }

// ActiveView returns a copy of the active view's ids.
func (s *State[P]) ActiveView() []P { return appendIDs(nil, s.active) }

// PassiveView returns a copy of the passive view's ids.
func (s *State[P]) PassiveView() []P { return appendIDs(nil, s.passive) }

// AppendActive appends the active view's ids to dst, for callers that poll many states.
func (s *State[P]) AppendActive(dst []P) []P { return appendIDs(dst, s.active) }

// ActiveLen returns the size of the active view.
func (s *State[P]) ActiveLen() int { return len(s.active) }

// PassiveLen returns the size of the passive view.
func (s *State[P]) PassiveLen() int { return len(s.passive) }

// IsActive reports whether p is in the active view.
func (s *State[P]) IsActive(p P) bool { return indexOf(s.active, p) >= 0 }

// Actions returns the actions produced since the last call and empties the outbox. The
// returned slice is reused: it is valid only until the next call of any State method.
func (s *State[P]) Actions() []Action[P] {
	out := s.out
	s.out = s.out[:0]
	return out
}

// Join asks contact to let this node into the overlay. It may be called again at any time,
// e.g. when ActionNeedContacts asks for more nodes.
func (s *State[P]) Join(contact PeerInfo[P], now time.Time) {
	s.now = now
	if s.left || contact.ID == s.self {
		return
	}
	s.emit(Action[P]{Kind: ActionConnect, Peer: contact.ID, Data: contact.Data})
	s.send(contact.ID, Join{Data: s.data, Proof: s.proof(contact.ID)})
}

// Offer hands the state nodes believed to share the topic that it learned outside the
// protocol (from the address book, discovery, or a fresh connection). They enter the
// passive view, and while the active view is not full they are asked for a link like any
// passive peer (a low-priority Neighbor request, which a full peer refuses without
// dropping anyone). This is how the halves of an overlay split by a network partition
// find each other again: each half refills its views from its own side while split, and
// no protocol message crosses back once the network heals. An offer is news about the
// peer, so a peer that failed to answer earlier in this shuffle period may be asked again;
// neighbours, peers with a request in flight and this node itself are skipped. A former
// neighbour that failed is joined through instead (see PeerUp).
func (s *State[P]) Offer(peers []PeerInfo[P], now time.Time) {
	s.now = now
	if s.left {
		return
	}
	for _, p := range peers {
		if p.ID == s.self || s.IsActive(p.ID) {
			continue
		}
		if s.rejoinLost(p) {
			continue
		}
		s.addPassive(p, nil)
		if i := slices.Index(s.tried, p.ID); i >= 0 {
			s.tried = slices.Delete(s.tried, i, i+1)
		}
	}
	s.refill(false)
}

// PeerUp reports that p can be reached again: a new connection to it opened, or discovery
// found it again. If p is a
// neighbour this node lost to a failure, the node joins through it, once per loss. After
// a partition each side refills its views from its own side, so both sides can end up with
// full views; a full node refuses an offered peer's low-priority Neighbor request, so
// offers alone would leave the sides apart, while a Join is taken in by a full node too.
// Joining only through lost neighbours keeps this to partitions and crashes: joining
// through every peer that turns up kept a 100-node overlay churning, because each Join
// makes the contact and the end of its random walk drop a neighbour.
func (s *State[P]) PeerUp(p PeerInfo[P], now time.Time) {
	s.now = now
	if s.left || p.ID == s.self || s.IsActive(p.ID) {
		return
	}
	s.rejoinLost(p)
}

// maxLost bounds the failed neighbours a State remembers (see PeerUp).
const maxLost = 64

func (s *State[P]) rememberLost(p P) {
	if i := slices.Index(s.lost, p); i >= 0 {
		s.lost = slices.Delete(s.lost, i, i+1)
	}
	if len(s.lost) >= maxLost {
		s.lost = slices.Delete(s.lost, 0, 1)
	}
	s.lost = append(s.lost, p)
}

// rejoinLost joins through p if it is a lost neighbour and forgets the loss; it reports
// whether it did.
func (s *State[P]) rejoinLost(p PeerInfo[P]) bool {
	i := slices.Index(s.lost, p.ID)
	if i < 0 {
		return false
	}
	s.lost = slices.Delete(s.lost, i, i+1)
	s.Join(p, s.now)
	return true
}

// Leave sends Disconnect to every neighbour and stops the state machine. Peers asked for a
// link that has not been answered get a Disconnect too: they may accept the request after
// this node stopped listening, and would otherwise keep it as a neighbour.
func (s *State[P]) Leave(now time.Time) {
	s.now = now
	if s.left {
		return
	}
	for _, p := range s.active {
		s.send(p.ID, Disconnect{Alive: false})
		s.emit(Action[P]{Kind: ActionDisconnect, Peer: p.ID})
		s.emit(Action[P]{Kind: ActionNeighborDown, Peer: p.ID})
	}
	for _, p := range s.pending {
		s.send(p.peer, Disconnect{Alive: false})
	}
	s.active = s.active[:0]
	s.passive = s.passive[:0]
	s.pending = s.pending[:0]
	s.lost = s.lost[:0]
	s.left = true
}

// PeerDown reports that p failed: a send to it failed or its connection broke. p leaves
// both views and the active view is refilled from the passive view. A neighbour that
// failed is remembered, so that the node rejoins through it when it comes back (PeerUp).
func (s *State[P]) PeerDown(p P, now time.Time) {
	s.now = now
	if s.left {
		return
	}
	urgent := false
	if i := indexOf(s.active, p); i >= 0 {
		s.active = removeAt(s.active, i)
		s.emit(Action[P]{Kind: ActionNeighborDown, Peer: p})
		s.rememberLost(p)
		urgent = true
	}
	if i := indexOf(s.passive, p); i >= 0 {
		s.passive = removeAt(s.passive, i)
	}
	if i := s.pendingIndex(p); i >= 0 {
		urgent = urgent || s.pending[i].urgent
		s.pending = slices.Delete(s.pending, i, i+1)
	}
	s.refill(urgent && s.cfg.UrgentReplacement)
}

// HandleTimer handles a timer set earlier by ActionSetTimer.
func (s *State[P]) HandleTimer(t Timer[P], now time.Time) {
	s.now = now
	if s.left {
		return
	}
	switch t.Kind {
	case TimerShuffle:
		if t.Seq != s.shuffleSeq {
			return // superseded
		}
		s.shuffleTick()
		s.armShuffle()
	case TimerNeighbor:
		i := s.pendingIndex(t.Peer)
		if i < 0 || s.pending[i].seq != t.Seq {
			return // answered in time
		}
		urgent := s.pending[i].urgent
		s.pending = slices.Delete(s.pending, i, i+1)
		// An unanswered request is treated like a failed connection: the peer is probably
		// gone, and keeping it would make every later promotion round wait for it again.
		if j := indexOf(s.passive, t.Peer); j >= 0 {
			s.passive = removeAt(s.passive, j)
		}
		s.refill(urgent)
	}
}

// HandleMessage handles msg received from peer from. from must be the authenticated sender
// (in the driver, the remote peer of the libp2p stream).
func (s *State[P]) HandleMessage(from P, msg Message, now time.Time) {
	s.now = now
	if s.left || from == s.self {
		return
	}
	switch m := msg.(type) {
	case Join:
		s.onJoin(from, m)
	case ForwardJoin[P]:
		s.onForwardJoin(from, m)
	case Neighbor:
		s.onNeighbor(from, m)
	case NeighborReply:
		s.onNeighborReply(from, m)
	case Disconnect:
		s.onDisconnect(from, m)
	case Shuffle[P]:
		s.onShuffle(from, m)
	case ShuffleReply[P]:
		s.onShuffleReply(from, m)
	default:
		s.stats.Ignored++
	}
}

func (s *State[P]) onJoin(from P, m Join) {
	if !s.verify(from, &m.Proof) {
		s.stats.RejectedAuth++
		return
	}
	joiner := PeerInfo[P]{ID: from, Data: m.Data}
	if !s.addActive(joiner) {
		s.updateData(joiner)
	}
	// The joiner learns that it has a neighbour only from this request; it is high priority
	// because the joiner must accept it, and it proves to the joiner that we hold the topic.
	s.send(from, Neighbor{HighPriority: true, Data: s.data, Proof: s.proof(from)})
	for _, p := range s.active {
		if p.ID != from {
			s.send(p.ID, ForwardJoin[P]{Peer: joiner, TTL: s.cfg.ActiveRandomWalkLength})
		}
	}
}

func (s *State[P]) onForwardJoin(from P, m ForwardJoin[P]) {
	if !s.IsActive(from) {
		s.rejectLink(from)
		return
	}
	joiner := m.Peer
	if joiner.ID == s.self {
		return
	}
	ttl := min(m.TTL, s.cfg.ActiveRandomWalkLength)
	if ttl <= 0 || len(s.active) <= 1 {
		s.acceptJoiner(joiner)
		return
	}
	if ttl == s.cfg.PassiveRandomWalkLength {
		s.addPassive(joiner, nil)
	}
	next, ok := s.randomActiveExcept(from, joiner.ID)
	if !ok {
		s.acceptJoiner(joiner)
		return
	}
	s.send(next, ForwardJoin[P]{Peer: joiner, TTL: ttl - 1})
}

// acceptJoiner ends a ForwardJoin walk: the joiner becomes our neighbour and is told so
// with a high-priority Neighbor request it must accept.
func (s *State[P]) acceptJoiner(joiner PeerInfo[P]) {
	if s.IsActive(joiner.ID) {
		return
	}
	s.emit(Action[P]{Kind: ActionConnect, Peer: joiner.ID, Data: joiner.Data})
	s.addActive(joiner)
	s.send(joiner.ID, Neighbor{HighPriority: true, Data: s.data, Proof: s.proof(joiner.ID)})
}

func (s *State[P]) onNeighbor(from P, m Neighbor) {
	if !s.verify(from, &m.Proof) {
		s.stats.RejectedAuth++
		return
	}
	peer := PeerInfo[P]{ID: from, Data: m.Data}
	switch {
	case s.IsActive(from):
		s.updateData(peer)
	case m.HighPriority || len(s.active) < s.cfg.ActiveSize:
		s.addActive(peer)
	default:
		s.send(from, NeighborReply{Accepted: false, Data: s.data})
		// The requester just proved it is a live member: a good replacement candidate.
		s.addPassive(peer, nil)
		return
	}
	s.send(from, NeighborReply{Accepted: true, Data: s.data})
}

func (s *State[P]) onNeighborReply(from P, m NeighborReply) {
	peer := PeerInfo[P]{ID: from, Data: m.Data}
	i := s.pendingIndex(from)
	if i < 0 {
		if m.Accepted && !s.IsActive(from) {
			// A reply we no longer wait for (it came after the timeout, or was never
			// asked for): the sender now counts us as a neighbour, so undo that to keep
			// views symmetric.
			s.stats.Ignored++
			s.send(from, Disconnect{Alive: true})
			s.emit(Action[P]{Kind: ActionDisconnect, Peer: from})
		}
		return
	}
	s.pending = slices.Delete(s.pending, i, i+1)
	switch {
	case !m.Accepted || s.IsActive(from):
		s.updateData(peer)
	case len(s.active) >= s.cfg.ActiveSize:
		// Filled by others meanwhile; taking this peer would only push out another one.
		s.send(from, Disconnect{Alive: true})
		s.emit(Action[P]{Kind: ActionDisconnect, Peer: from})
		s.updateData(peer)
	default:
		s.addActive(peer)
	}
	s.refill(false)
}

func (s *State[P]) onDisconnect(from P, m Disconnect) {
	i := indexOf(s.active, from)
	if i < 0 {
		if !m.Alive {
			if j := indexOf(s.passive, from); j >= 0 {
				s.passive = removeAt(s.passive, j)
			}
		}
		s.stats.Ignored++
		return
	}
	peer := s.active[i]
	s.active = removeAt(s.active, i)
	s.emit(Action[P]{Kind: ActionDisconnect, Peer: from})
	s.emit(Action[P]{Kind: ActionNeighborDown, Peer: from})
	if m.Alive {
		s.addPassive(peer, nil)
	} else if j := indexOf(s.passive, from); j >= 0 {
		s.passive = removeAt(s.passive, j)
	}
	s.refill(false)
}

func (s *State[P]) onShuffle(from P, m Shuffle[P]) {
	if !s.IsActive(from) {
		s.rejectLink(from)
		return
	}
	origin := m.Origin
	if origin.ID == s.self {
		return // the walk came back to us
	}
	ttl := min(m.TTL, s.cfg.ShuffleTTL) - 1
	if ttl > 0 && len(s.active) > 1 {
		if next, ok := s.randomActiveExcept(from, origin.ID); ok {
			m.TTL = ttl
			s.send(next, m)
			return
		}
	}
	offered := m.Peers
	if len(offered) > s.cfg.PassiveSize {
		offered = offered[:s.cfg.PassiveSize]
	}
	reply := s.samplePassive(len(offered)+1, origin.ID)
	if !s.IsActive(origin.ID) {
		s.emit(Action[P]{Kind: ActionConnect, Peer: origin.ID, Data: origin.Data})
	}
	s.send(origin.ID, ShuffleReply[P]{ID: m.ID, Peers: reply})
	replied := appendIDs(nil, reply)
	s.addPassive(origin, replied)
	for _, p := range offered {
		s.addPassive(p, replied)
	}
}

func (s *State[P]) onShuffleReply(from P, m ShuffleReply[P]) {
	if !s.shuffle.active || s.shuffle.id != m.ID {
		s.stats.Ignored++
		return
	}
	peers := m.Peers
	if len(peers) > s.cfg.PassiveSize {
		peers = peers[:s.cfg.PassiveSize]
	}
	for _, p := range peers {
		s.addPassive(p, s.shuffle.sent)
	}
	s.shuffle = outstandingShuffle[P]{}
}

// rejectLink answers a message that only a neighbour may send. The sender believes we are
// linked, so tell it otherwise; this repairs any asymmetry a lost message left behind.
func (s *State[P]) rejectLink(from P) {
	s.stats.Ignored++
	s.send(from, Disconnect{Alive: true})
}

func (s *State[P]) shuffleTick() {
	s.tried = s.tried[:0]
	s.starvingSignalled = false
	// Timers should have expired these; this keeps a lost timer from wedging promotion.
	s.pending = slices.DeleteFunc(s.pending, func(p pendingNeighbor[P]) bool {
		return !s.now.Before(p.deadline)
	})
	s.refill(false)
	if len(s.active) == 0 {
		return
	}
	target := s.active[s.rng.IntN(len(s.active))].ID
	peers := make([]PeerInfo[P], 0, s.cfg.ShuffleActive+s.cfg.ShufflePassive)
	peers = s.appendSample(peers, s.active, s.cfg.ShuffleActive, target)
	peers = s.appendSample(peers, s.passive, s.cfg.ShufflePassive, target)
	s.shuffle = outstandingShuffle[P]{active: true, id: s.rng.Uint64(), sent: appendIDs(s.shuffle.sent[:0], peers)}
	s.send(target, Shuffle[P]{
		ID:     s.shuffle.id,
		Origin: PeerInfo[P]{ID: s.self, Data: s.data},
		Peers:  peers,
		TTL:    s.cfg.ShuffleTTL,
	})
}

func (s *State[P]) armShuffle() {
	s.shuffleSeq++
	after := s.cfg.ShuffleInterval
	if j := s.cfg.ShuffleJitter; j > 0 {
		after += time.Duration(s.rng.Int64N(int64(2*j)+1)) - j
	}
	s.emit(Action[P]{Kind: ActionSetTimer, Timer: Timer[P]{Kind: TimerShuffle, Seq: s.shuffleSeq}, After: after})
}

// refill promotes passive peers until the active view plus the requests in flight reach
// the active view size, then signals ActionNeedContacts if nothing is left to try. urgent
// requests replace failed neighbours and are sent with high priority.
func (s *State[P]) refill(urgent bool) {
	for len(s.active)+len(s.pending) < s.cfg.ActiveSize {
		cand, ok := s.pickCandidate()
		if !ok {
			break
		}
		high := urgent || (len(s.active) == 0 && len(s.pending) == 0)
		s.tried = append(s.tried, cand.ID)
		s.timerSeq++
		s.pending = append(s.pending, pendingNeighbor[P]{
			peer: cand.ID, seq: s.timerSeq, deadline: s.now.Add(s.cfg.NeighborTimeout), urgent: urgent,
		})
		s.emit(Action[P]{Kind: ActionConnect, Peer: cand.ID, Data: cand.Data})
		s.send(cand.ID, Neighbor{HighPriority: high, Data: s.data, Proof: s.proof(cand.ID)})
		s.emit(Action[P]{Kind: ActionSetTimer, Timer: Timer[P]{Kind: TimerNeighbor, Peer: cand.ID, Seq: s.timerSeq}, After: s.cfg.NeighborTimeout})
	}
	s.checkStarving()
}

// checkStarving signals ActionNeedContacts when the node is short of neighbours and has
// nobody left to ask: no neighbour at all, or no passive peer at all. (A node with some
// neighbours whose passive peers merely refused it is not starving.)
func (s *State[P]) checkStarving() {
	starving := len(s.active) < s.cfg.ActiveSize && len(s.pending) == 0 &&
		(len(s.active) == 0 || len(s.passive) == 0)
	if !starving {
		s.starvingSignalled = false
		return
	}
	if s.starvingSignalled {
		return
	}
	s.starvingSignalled = true
	s.emit(Action[P]{Kind: ActionNeedContacts})
}

func (s *State[P]) pickCandidate() (PeerInfo[P], bool) {
	eligible := func(p P) bool { return s.pendingIndex(p) < 0 && !slices.Contains(s.tried, p) }
	n := 0
	for _, p := range s.passive {
		if eligible(p.ID) {
			n++
		}
	}
	if n == 0 {
		return PeerInfo[P]{}, false
	}
	k := s.rng.IntN(n)
	for _, p := range s.passive {
		if eligible(p.ID) {
			if k == 0 {
				return p, true
			}
			k--
		}
	}
	panic("unreachable")
}

// addActive puts p in the active view, dropping a random neighbour if the view is full. It
// reports false if p is this node or already a neighbour.
func (s *State[P]) addActive(p PeerInfo[P]) bool {
	if p.ID == s.self || s.IsActive(p.ID) {
		return false
	}
	if len(s.active) >= s.cfg.ActiveSize {
		s.dropRandomActive()
	}
	if i := indexOf(s.passive, p.ID); i >= 0 {
		if len(p.Data) == 0 {
			p.Data = s.passive[i].Data
		}
		s.passive = removeAt(s.passive, i)
	}
	s.active = append(s.active, p)
	s.emit(Action[P]{Kind: ActionNeighborUp, Peer: p.ID, Data: p.Data})
	return true
}

func (s *State[P]) dropRandomActive() {
	i := s.rng.IntN(len(s.active))
	victim := s.active[i]
	s.active = removeAt(s.active, i)
	s.send(victim.ID, Disconnect{Alive: true})
	s.emit(Action[P]{Kind: ActionDisconnect, Peer: victim.ID})
	s.emit(Action[P]{Kind: ActionNeighborDown, Peer: victim.ID})
	s.addPassive(victim, nil)
}

// addPassive adds p to the passive view unless it is this node or a neighbour. When the
// view is full it evicts, by preference, an entry listed in evictFirst (the entries we just
// gave away in a shuffle, as the paper suggests), otherwise a random one.
func (s *State[P]) addPassive(p PeerInfo[P], evictFirst []P) {
	if p.ID == s.self || s.IsActive(p.ID) || s.cfg.PassiveSize == 0 {
		return
	}
	if i := indexOf(s.passive, p.ID); i >= 0 {
		if len(p.Data) > 0 {
			s.passive[i].Data = p.Data
		}
		return
	}
	if len(s.passive) >= s.cfg.PassiveSize {
		victim := -1
		for _, e := range evictFirst {
			if i := indexOf(s.passive, e); i >= 0 {
				victim = i
				break
			}
		}
		if victim < 0 {
			victim = s.rng.IntN(len(s.passive))
		}
		s.passive = removeAt(s.passive, victim)
	}
	s.passive = append(s.passive, p)
}

// updateData records newer peer data for a peer we already know.
func (s *State[P]) updateData(p PeerInfo[P]) {
	if len(p.Data) == 0 {
		return
	}
	if i := indexOf(s.active, p.ID); i >= 0 {
		s.active[i].Data = p.Data
	} else if i := indexOf(s.passive, p.ID); i >= 0 {
		s.passive[i].Data = p.Data
	}
}

func (s *State[P]) randomActiveExcept(a, b P) (P, bool) {
	n := 0
	for _, p := range s.active {
		if p.ID != a && p.ID != b {
			n++
		}
	}
	if n == 0 {
		var zero P
		return zero, false
	}
	k := s.rng.IntN(n)
	for _, p := range s.active {
		if p.ID != a && p.ID != b {
			if k == 0 {
				return p.ID, true
			}
			k--
		}
	}
	panic("unreachable")
}

// appendSample appends up to n random entries of view, other than except, to dst.
func (s *State[P]) appendSample(dst, view []PeerInfo[P], n int, except P) []PeerInfo[P] {
	s.scratch = s.scratch[:0]
	for _, p := range view {
		if p.ID != except {
			s.scratch = append(s.scratch, p)
		}
	}
	for i := 0; i < n && i < len(s.scratch); i++ {
		j := i + s.rng.IntN(len(s.scratch)-i)
		s.scratch[i], s.scratch[j] = s.scratch[j], s.scratch[i]
		dst = append(dst, s.scratch[i])
	}
	return dst
}

func (s *State[P]) samplePassive(n int, except P) []PeerInfo[P] {
	return s.appendSample(make([]PeerInfo[P], 0, min(n, len(s.passive))), s.passive, n, except)
}

func (s *State[P]) pendingIndex(p P) int {
	for i := range s.pending {
		if s.pending[i].peer == p {
			return i
		}
	}
	return -1
}

func (s *State[P]) proof(to P) Proof {
	var pr Proof
	for i := 0; i < NonceSize; i += 8 {
		v := s.rng.Uint64()
		for j := 0; j < 8; j++ {
			pr.Nonce[i+j] = byte(v >> (8 * j))
		}
	}
	pr.MAC = s.auth.mac(s.selfBytes, idBytes(to), &pr.Nonce)
	return pr
}

func (s *State[P]) verify(from P, pr *Proof) bool {
	want := s.auth.mac(idBytes(from), s.selfBytes, &pr.Nonce)
	return subtle.ConstantTimeCompare(want[:], pr.MAC[:]) == 1
}

func (s *State[P]) send(to P, m Message) {
	s.emit(Action[P]{Kind: ActionSend, Peer: to, Msg: m})
}

func (s *State[P]) emit(a Action[P]) { s.out = append(s.out, a) }

func indexOf[P ID](view []PeerInfo[P], p P) int {
	for i := range view {
		if view[i].ID == p {
			return i
		}
	}
	return -1
}

// removeAt removes element i by moving the last element into its place: views are sets,
// and all choices among them are random, so order carries no meaning.
func removeAt[P ID](view []PeerInfo[P], i int) []PeerInfo[P] {
	last := len(view) - 1
	view[i] = view[last]
	view[last] = PeerInfo[P]{}
	return view[:last]
}

func appendIDs[P ID](dst []P, view []PeerInfo[P]) []P {
	for _, p := range view {
		dst = append(dst, p.ID)
	}
	return dst
}
