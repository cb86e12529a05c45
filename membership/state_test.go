package membership_test

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/lfnet/lfnet/membership"
)

// nid is a cheap peer id for driving state machines by hand.
type nid uint16

func (n nid) MarshalBinary() ([]byte, error) { return []byte{byte(n >> 8), byte(n)}, nil }

var (
	epoch   = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	testKey = [32]byte{1, 2, 3}
)

func newState(t *testing.T, id nid, key [32]byte, cfg membership.Config) *membership.State[nid] {
	t.Helper()
	st, err := membership.NewState(id, key, cfg, rand.New(rand.NewPCG(uint64(id), 7)), epoch)
	if err != nil {
		t.Fatal(err)
	}
	acts := st.Actions()
	if len(acts) != 1 || acts[0].Kind != membership.ActionSetTimer || acts[0].Timer.Kind != membership.TimerShuffle {
		t.Fatalf("NewState actions = %v, want one shuffle timer", kinds(acts))
	}
	return st
}

func kinds(acts []membership.Action[nid]) []string {
	var out []string
	for _, a := range acts {
		s := a.Kind.String()
		if a.Kind == membership.ActionSend {
			s += ":" + a.Msg.Kind().String()
		}
		out = append(out, s)
	}
	return out
}

// take copies the outbox (it is reused by the next call).
func take(st *membership.State[nid]) []membership.Action[nid] {
	return slices.Clone(st.Actions())
}

func sends(acts []membership.Action[nid], kind membership.Kind) []membership.Action[nid] {
	var out []membership.Action[nid]
	for _, a := range acts {
		if a.Kind == membership.ActionSend && a.Msg.Kind() == kind {
			out = append(out, a)
		}
	}
	return out
}

func has(acts []membership.Action[nid], kind membership.ActionKind, peer nid) bool {
	return slices.ContainsFunc(acts, func(a membership.Action[nid]) bool { return a.Kind == kind && a.Peer == peer })
}

func one(t *testing.T, acts []membership.Action[nid], kind membership.Kind) membership.Action[nid] {
	t.Helper()
	s := sends(acts, kind)
	if len(s) != 1 {
		t.Fatalf("want exactly one %v send, got actions %v", kind, kinds(acts))
	}
	return s[0]
}

func sameSet(a, b []nid) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// link makes a and b neighbours by the Join handshake (b joins through a).
func link(t *testing.T, a, b *membership.State[nid]) {
	t.Helper()
	b.Join(membership.PeerInfo[nid]{ID: a.Self()}, epoch)
	join := one(t, take(b), membership.KindJoin)
	a.HandleMessage(b.Self(), join.Msg, epoch)
	nb := one(t, take(a), membership.KindNeighbor)
	b.HandleMessage(a.Self(), nb.Msg, epoch)
	reply := one(t, take(b), membership.KindNeighborReply)
	a.HandleMessage(b.Self(), reply.Msg, epoch)
	take(a)
	if !a.IsActive(b.Self()) || !b.IsActive(a.Self()) {
		t.Fatalf("link %d-%d not symmetric", a.Self(), b.Self())
	}
}

func TestJoinOfFreshNode(t *testing.T) {
	cfg := membership.DefaultConfig()
	contact := newState(t, 1, testKey, cfg)
	joiner := newState(t, 2, testKey, cfg)

	joiner.Join(membership.PeerInfo[nid]{ID: 1, Data: []byte("contact-record")}, epoch)
	acts := take(joiner)
	if len(acts) != 2 || acts[0].Kind != membership.ActionConnect || acts[0].Peer != 1 || string(acts[0].Data) != "contact-record" {
		t.Fatalf("Join actions = %v, want Connect(1) then Send(Join)", kinds(acts))
	}
	join := one(t, acts, membership.KindJoin)
	if join.Peer != 1 {
		t.Fatalf("Join sent to %d", join.Peer)
	}

	// The contact adds the joiner and tells it so with a high-priority Neighbor request; it
	// has no other neighbour, so no ForwardJoin walk starts.
	contact.HandleMessage(2, join.Msg, epoch)
	acts = take(contact)
	if !has(acts, membership.ActionNeighborUp, 2) {
		t.Fatalf("contact actions = %v, want NeighborUp(2)", kinds(acts))
	}
	if len(sends(acts, membership.KindForwardJoin)) != 0 {
		t.Fatalf("contact without neighbours started walks: %v", kinds(acts))
	}
	nb := one(t, acts, membership.KindNeighbor)
	if nb.Peer != 2 || !nb.Msg.(membership.Neighbor).HighPriority {
		t.Fatalf("contact's Neighbor = %+v, want high priority to 2", nb)
	}

	joiner.HandleMessage(1, nb.Msg, epoch)
	acts = take(joiner)
	if !has(acts, membership.ActionNeighborUp, 1) {
		t.Fatalf("joiner actions = %v, want NeighborUp(1)", kinds(acts))
	}
	reply := one(t, acts, membership.KindNeighborReply)
	if !reply.Msg.(membership.NeighborReply).Accepted {
		t.Fatal("joiner refused the contact")
	}
	contact.HandleMessage(2, reply.Msg, epoch)
	if acts := take(contact); len(acts) != 0 {
		t.Fatalf("reply to an existing link produced %v", kinds(acts))
	}
	if !slices.Equal(contact.ActiveView(), []nid{2}) || !slices.Equal(joiner.ActiveView(), []nid{1}) {
		t.Fatalf("views %v / %v", contact.ActiveView(), joiner.ActiveView())
	}
}

func TestJoinStartsWalksThroughOtherNeighbours(t *testing.T) {
	cfg := membership.DefaultConfig()
	c := newState(t, 1, testKey, cfg)
	for id := nid(10); id < 13; id++ {
		link(t, c, newState(t, id, testKey, cfg))
	}
	j := newState(t, 2, testKey, cfg)
	j.Join(membership.PeerInfo[nid]{ID: 1}, epoch)
	c.HandleMessage(2, one(t, take(j), membership.KindJoin).Msg, epoch)
	walks := sends(take(c), membership.KindForwardJoin)
	var to []nid
	for _, w := range walks {
		fj := w.Msg.(membership.ForwardJoin[nid])
		if fj.Peer.ID != 2 || fj.TTL != cfg.ActiveRandomWalkLength {
			t.Fatalf("ForwardJoin %+v, want peer 2 ttl %d", fj, cfg.ActiveRandomWalkLength)
		}
		to = append(to, w.Peer)
	}
	if !sameSet(to, []nid{10, 11, 12}) {
		t.Fatalf("walks went to %v, want every other neighbour", to)
	}
}

func TestForwardJoinWalk(t *testing.T) {
	cfg := membership.DefaultConfig()
	x := newState(t, 1, testKey, cfg)
	for id := nid(10); id < 13; id++ {
		link(t, x, newState(t, id, testKey, cfg))
	}
	joiner := membership.PeerInfo[nid]{ID: 50, Data: []byte("r")}

	t.Run("forwards with ttl-1 to a neighbour other than sender and joiner", func(t *testing.T) {
		x.HandleMessage(10, membership.ForwardJoin[nid]{Peer: joiner, TTL: 5}, epoch)
		fw := one(t, take(x), membership.KindForwardJoin)
		if fw.Peer == 10 || fw.Peer == 50 {
			t.Fatalf("forwarded to %d", fw.Peer)
		}
		if got := fw.Msg.(membership.ForwardJoin[nid]); got.TTL != 4 || got.Peer.ID != 50 {
			t.Fatalf("forwarded %+v", got)
		}
		if slices.Contains(x.PassiveView(), 50) {
			t.Fatal("joiner added to passive view away from ttl == PRWL")
		}
	})
	t.Run("inserts into passive view at ttl == PRWL", func(t *testing.T) {
		x.HandleMessage(10, membership.ForwardJoin[nid]{Peer: joiner, TTL: cfg.PassiveRandomWalkLength}, epoch)
		take(x)
		if !slices.Contains(x.PassiveView(), 50) {
			t.Fatalf("passive view %v lacks the joiner", x.PassiveView())
		}
	})
	t.Run("ends at ttl 0 by adding the joiner", func(t *testing.T) {
		x.HandleMessage(11, membership.ForwardJoin[nid]{Peer: joiner, TTL: 0}, epoch)
		acts := take(x)
		if !has(acts, membership.ActionNeighborUp, 50) || len(sends(acts, membership.KindForwardJoin)) != 0 {
			t.Fatalf("actions %v, want NeighborUp(50) and no forwarding", kinds(acts))
		}
		nb := one(t, acts, membership.KindNeighbor)
		if nb.Peer != 50 || !nb.Msg.(membership.Neighbor).HighPriority {
			t.Fatalf("Neighbor %+v", nb)
		}
		if slices.Contains(x.PassiveView(), 50) {
			t.Fatal("joiner both active and passive")
		}
	})
	t.Run("ends at a node whose only neighbour is the sender", func(t *testing.T) {
		y := newState(t, 2, testKey, cfg)
		z := newState(t, 3, testKey, cfg)
		link(t, y, z)
		y.HandleMessage(3, membership.ForwardJoin[nid]{Peer: membership.PeerInfo[nid]{ID: 60}, TTL: 6}, epoch)
		if acts := take(y); !has(acts, membership.ActionNeighborUp, 60) {
			t.Fatalf("actions %v, want the walk to end here", kinds(acts))
		}
	})
	t.Run("ignored from a non-neighbour, which is told to disconnect", func(t *testing.T) {
		x.HandleMessage(99, membership.ForwardJoin[nid]{Peer: membership.PeerInfo[nid]{ID: 70}, TTL: 3}, epoch)
		acts := take(x)
		d := one(t, acts, membership.KindDisconnect)
		if d.Peer != 99 || has(acts, membership.ActionNeighborUp, 70) {
			t.Fatalf("actions %v", kinds(acts))
		}
	})
	t.Run("a ttl beyond ARWL is clamped", func(t *testing.T) {
		x.HandleMessage(10, membership.ForwardJoin[nid]{Peer: membership.PeerInfo[nid]{ID: 80}, TTL: 200}, epoch)
		for _, a := range sends(take(x), membership.KindForwardJoin) {
			if ttl := a.Msg.(membership.ForwardJoin[nid]).TTL; ttl >= cfg.ActiveRandomWalkLength {
				t.Fatalf("forwarded ttl %d", ttl)
			}
		}
	})
}

// TestWalksTerminate runs whole joins through a small network and checks that every walk
// ends (the message count is bounded) and that the joiners end up with neighbours.
func TestWalksTerminate(t *testing.T) {
	n := newTestNet(t, membership.DefaultConfig(), 1)
	for id := nid(1); id <= 40; id++ {
		n.add(id)
		if id > 1 {
			n.join(id, nid(1+n.rng.IntN(int(id-1))))
		}
		if steps := n.deliverAll(10000); steps >= 10000 {
			t.Fatalf("join of %d did not quiesce", id)
		}
	}
	for id, st := range n.states {
		if st.ActiveLen() == 0 {
			t.Fatalf("node %d has no neighbour", id)
		}
	}
	n.checkSymmetric()
}

func TestPassivePromotionAfterFailure(t *testing.T) {
	cfg := membership.DefaultConfig()
	x := newState(t, 1, testKey, cfg)
	a := newState(t, 2, testKey, cfg)
	link(t, x, a)
	// Two passive peers, learned from a shuffle reply.
	p3, p4 := newState(t, 3, testKey, cfg), newState(t, 4, testKey, cfg)
	feedPassive(t, x, a, 3, 4)

	x.PeerDown(2, epoch)
	acts := take(x)
	if !has(acts, membership.ActionNeighborDown, 2) {
		t.Fatalf("actions %v, want NeighborDown(2)", kinds(acts))
	}
	reqs := sends(acts, membership.KindNeighbor)
	if len(reqs) != 2 {
		t.Fatalf("want a Neighbor request to each passive peer, got %v", kinds(acts))
	}
	for _, r := range reqs {
		if !r.Msg.(membership.Neighbor).HighPriority {
			t.Fatal("replacement of a failed neighbour not sent with high priority")
		}
		if !has(acts, membership.ActionConnect, r.Peer) {
			t.Fatalf("no Connect before the request to %d", r.Peer)
		}
	}
	if slices.Contains(x.PassiveView(), 2) {
		t.Fatal("failed peer kept in passive view")
	}

	// p3 accepts, p4 (pretend full and low priority) refuses.
	p3.HandleMessage(1, reqs[0].Msg, epoch)
	if reqs[0].Peer != 3 {
		reqs[0], reqs[1] = reqs[1], reqs[0]
		p3.HandleMessage(1, reqs[0].Msg, epoch)
	}
	acc := one(t, take(p3), membership.KindNeighborReply)
	x.HandleMessage(3, acc.Msg, epoch)
	if acts := take(x); !has(acts, membership.ActionNeighborUp, 3) {
		t.Fatalf("accept produced %v", kinds(acts))
	}
	_ = p4
	x.HandleMessage(4, membership.NeighborReply{Accepted: false}, epoch)
	take(x)
	if !slices.Equal(x.ActiveView(), []nid{3}) || !slices.Contains(x.PassiveView(), 4) {
		t.Fatalf("active %v passive %v, want [3] and 4 kept passive", x.ActiveView(), x.PassiveView())
	}
}

func TestPromotionTimeoutTriesNextPeer(t *testing.T) {
	cfg := membership.DefaultConfig()
	cfg.UrgentReplacement = false
	x := newState(t, 1, testKey, cfg)
	a := newState(t, 2, testKey, cfg)
	link(t, x, a)
	feedPassive(t, x, a, 3)
	for id := nid(4); id < 8; id++ {
		link(t, x, newState(t, id, testKey, cfg)) // active view now full: 2, 4, 5, 6, 7
	}
	x.PeerDown(2, epoch)
	acts := take(x)
	req := one(t, acts, membership.KindNeighbor)
	if req.Peer != 3 || req.Msg.(membership.Neighbor).HighPriority {
		t.Fatalf("request %+v, want low priority to 3 (paper behaviour, view not empty)", req)
	}
	var timer membership.Action[nid]
	for _, a := range acts {
		if a.Kind == membership.ActionSetTimer && a.Timer.Kind == membership.TimerNeighbor {
			timer = a
		}
	}
	if timer.Timer.Peer != 3 || timer.After != cfg.NeighborTimeout {
		t.Fatalf("timeout timer %+v", timer)
	}
	x.HandleTimer(timer.Timer, epoch.Add(cfg.NeighborTimeout))
	take(x)
	if slices.Contains(x.PassiveView(), 3) {
		t.Fatal("unresponsive peer kept in passive view")
	}
	// A late accept is undone so that views stay symmetric.
	x.HandleMessage(3, membership.NeighborReply{Accepted: true}, epoch.Add(time.Second))
	acts = take(x)
	if d := one(t, acts, membership.KindDisconnect); d.Peer != 3 || x.IsActive(3) {
		t.Fatalf("late accept: %v", kinds(acts))
	}
}

// feedPassive puts ids into x's passive view through a genuine shuffle exchange with its
// neighbour a.
func feedPassive(t *testing.T, x, a *membership.State[nid], ids ...nid) {
	t.Helper()
	x.HandleTimer(membership.Timer[nid]{Kind: membership.TimerShuffle, Seq: 1}, epoch)
	sh := one(t, take(x), membership.KindShuffle)
	var peers []membership.PeerInfo[nid]
	for _, id := range ids {
		peers = append(peers, membership.PeerInfo[nid]{ID: id})
	}
	x.HandleMessage(a.Self(), membership.ShuffleReply[nid]{ID: sh.Msg.(membership.Shuffle[nid]).ID, Peers: peers}, epoch)
	take(x)
	for _, id := range ids {
		if !slices.Contains(x.PassiveView(), id) {
			t.Fatalf("passive view %v lacks %d", x.PassiveView(), id)
		}
	}
}

func TestShuffleExchange(t *testing.T) {
	cfg := membership.DefaultConfig()
	a := newState(t, 1, testKey, cfg)
	b := newState(t, 2, testKey, cfg)
	c := newState(t, 3, testKey, cfg)
	link(t, a, b)
	link(t, b, c)
	passiveVia(t, a, 100, 101, 102, 103)
	passiveVia(t, c, 200, 201, 202, 203)

	a.HandleTimer(membership.Timer[nid]{Kind: membership.TimerShuffle, Seq: 1}, epoch)
	acts := take(a)
	sh := one(t, acts, membership.KindShuffle)
	msg := sh.Msg.(membership.Shuffle[nid])
	if sh.Peer != 2 || msg.Origin.ID != 1 || msg.TTL != cfg.ShuffleTTL {
		t.Fatalf("shuffle %+v to %d", msg, sh.Peer)
	}
	if len(msg.Peers) != min(cfg.ShufflePassive, 4) {
		t.Fatalf("shuffle carries %d entries, want the %d passive ones (no other neighbour)", len(msg.Peers), 4)
	}
	if !slices.ContainsFunc(acts, func(x membership.Action[nid]) bool {
		return x.Kind == membership.ActionSetTimer && x.Timer.Kind == membership.TimerShuffle
	}) {
		t.Fatal("shuffle timer not re-armed")
	}

	// b has two neighbours and ttl left: it forwards to c, which has only b and accepts.
	b.HandleMessage(1, msg, epoch)
	fw := one(t, take(b), membership.KindShuffle)
	if fw.Peer != 3 || fw.Msg.(membership.Shuffle[nid]).TTL != cfg.ShuffleTTL-1 {
		t.Fatalf("b forwarded %+v to %d", fw.Msg, fw.Peer)
	}
	c.HandleMessage(2, fw.Msg, epoch)
	acts = take(c)
	reply := one(t, acts, membership.KindShuffleReply)
	if reply.Peer != 1 || !has(acts, membership.ActionConnect, 1) {
		t.Fatalf("c's reply to %d, actions %v", reply.Peer, kinds(acts))
	}
	rmsg := reply.Msg.(membership.ShuffleReply[nid])
	if rmsg.ID != msg.ID || len(rmsg.Peers) == 0 {
		t.Fatalf("reply %+v", rmsg)
	}
	for _, p := range append(slices.Clone(msg.Peers), msg.Origin) {
		if !slices.Contains(c.PassiveView(), p.ID) {
			t.Fatalf("c's passive view %v lacks %d", c.PassiveView(), p.ID)
		}
	}

	// A reply with the wrong id is ignored; the right one is integrated.
	before := a.Stats().Ignored
	bad := rmsg
	bad.ID++
	a.HandleMessage(3, bad, epoch)
	if a.Stats().Ignored != before+1 {
		t.Fatal("reply with a wrong id not ignored")
	}
	a.HandleMessage(3, rmsg, epoch)
	for _, p := range rmsg.Peers {
		if !slices.Contains(a.PassiveView(), p.ID) && p.ID != 1 {
			t.Fatalf("a's passive view %v lacks %d", a.PassiveView(), p.ID)
		}
	}
	a.HandleMessage(3, rmsg, epoch)
	if a.Stats().Ignored != before+2 {
		t.Fatal("a second reply to the same shuffle was accepted")
	}
}

func TestBadMACRejected(t *testing.T) {
	cfg := membership.DefaultConfig()
	contact := newState(t, 1, testKey, cfg)
	outsider := newState(t, 2, [32]byte{9, 9, 9}, cfg) // knows the overlay, not the topic

	outsider.Join(membership.PeerInfo[nid]{ID: 1}, epoch)
	join := one(t, take(outsider), membership.KindJoin)
	contact.HandleMessage(2, join.Msg, epoch)
	if acts := take(contact); len(acts) != 0 {
		t.Fatalf("bad Join answered with %v", kinds(acts))
	}
	if got := contact.Stats().RejectedAuth; got != 1 {
		t.Fatalf("RejectedAuth = %d, want 1", got)
	}
	if contact.ActiveLen() != 0 {
		t.Fatal("outsider admitted")
	}

	contact.HandleMessage(2, membership.Neighbor{HighPriority: true, Proof: join.Msg.(membership.Join).Proof}, epoch)
	if acts := take(contact); len(acts) != 0 || contact.Stats().RejectedAuth != 2 {
		t.Fatalf("bad Neighbor: actions %v, RejectedAuth %d", kinds(acts), contact.Stats().RejectedAuth)
	}

	// A genuine request is bound to its sender and receiver: replayed by another sender,
	// or towards another receiver, it fails.
	member := newState(t, 3, testKey, cfg)
	member.Join(membership.PeerInfo[nid]{ID: 1}, epoch)
	genuine := one(t, take(member), membership.KindJoin)
	contact.HandleMessage(4, genuine.Msg, epoch)
	other := newState(t, 5, testKey, cfg)
	other.HandleMessage(3, genuine.Msg, epoch)
	if contact.Stats().RejectedAuth != 3 || other.Stats().RejectedAuth != 1 {
		t.Fatalf("replays accepted: %+v %+v", contact.Stats(), other.Stats())
	}
	contact.HandleMessage(3, genuine.Msg, epoch)
	if !contact.IsActive(3) {
		t.Fatal("genuine Join rejected")
	}

	// The joiner also checks the contact: a Neighbor from a node without the topic fails.
	j := newState(t, 6, testKey, cfg)
	j.HandleMessage(7, membership.Neighbor{HighPriority: true}, epoch)
	if j.ActiveLen() != 0 || j.Stats().RejectedAuth != 1 {
		t.Fatal("Neighbor with a zero proof accepted")
	}
}

func TestNeighborPriority(t *testing.T) {
	cfg := membership.DefaultConfig()
	cfg.ActiveSize = 2
	x := newState(t, 1, testKey, cfg)
	link(t, x, newState(t, 2, testKey, cfg))
	link(t, x, newState(t, 3, testKey, cfg))

	low := newState(t, 4, testKey, cfg)
	req := one(t, feedPassiveDirect(t, low, 1), membership.KindNeighbor)
	if req.Peer != 1 || !req.Msg.(membership.Neighbor).HighPriority {
		t.Fatal("request from a node with an empty active view is not high priority")
	}
	lowReq := req.Msg.(membership.Neighbor)
	lowReq.HighPriority = false
	x.HandleMessage(4, lowReq, epoch)
	acts := take(x)
	if r := one(t, acts, membership.KindNeighborReply); r.Msg.(membership.NeighborReply).Accepted {
		t.Fatal("full node accepted a low-priority request")
	}
	x.HandleMessage(4, req.Msg, epoch)
	acts = take(x)
	if r := one(t, acts, membership.KindNeighborReply); !r.Msg.(membership.NeighborReply).Accepted {
		t.Fatal("high-priority request refused")
	}
	d := one(t, acts, membership.KindDisconnect)
	if !d.Msg.(membership.Disconnect).Alive || !has(acts, membership.ActionNeighborDown, d.Peer) {
		t.Fatalf("dropping a neighbour: %v", kinds(acts))
	}
	if x.ActiveLen() != 2 || !x.IsActive(4) || !slices.Contains(x.PassiveView(), d.Peer) {
		t.Fatalf("active %v passive %v", x.ActiveView(), x.PassiveView())
	}
}

// feedPassiveDirect leaves x isolated with id as its only passive entry: id joins through
// x, then disconnects alive. It returns x's actions on that disconnect, which include the
// request to id.
func feedPassiveDirect(t *testing.T, x *membership.State[nid], id nid) []membership.Action[nid] {
	t.Helper()
	link(t, x, newState(t, id, testKey, x.Config()))
	x.HandleMessage(id, membership.Disconnect{Alive: true}, epoch)
	acts := take(x)
	if !slices.Equal(x.PassiveView(), []nid{id}) || x.ActiveLen() != 0 {
		t.Fatalf("setup: active %v passive %v", x.ActiveView(), x.PassiveView())
	}
	return acts
}

// passiveVia puts ids into x's passive view: each joins through x, then disconnects alive.
func passiveVia(t *testing.T, x *membership.State[nid], ids ...nid) {
	t.Helper()
	for _, id := range ids {
		link(t, x, newState(t, id, testKey, x.Config()))
		x.HandleMessage(id, membership.Disconnect{Alive: true}, epoch)
		take(x)
		if !slices.Contains(x.PassiveView(), id) {
			t.Fatalf("setup: passive view %v lacks %d", x.PassiveView(), id)
		}
	}
}

func TestDisconnectAndLeave(t *testing.T) {
	cfg := membership.DefaultConfig()
	a, b, c := newState(t, 1, testKey, cfg), newState(t, 2, testKey, cfg), newState(t, 3, testKey, cfg)
	link(t, a, b)
	link(t, a, c)

	b.HandleMessage(1, membership.Disconnect{Alive: true}, epoch)
	acts := take(b)
	if !has(acts, membership.ActionNeighborDown, 1) || !has(acts, membership.ActionDisconnect, 1) {
		t.Fatalf("Disconnect: %v", kinds(acts))
	}
	if !slices.Contains(b.PassiveView(), 1) {
		t.Fatal("a live peer that disconnected is not kept as passive")
	}

	a.Leave(epoch)
	acts = take(a)
	ds := sends(acts, membership.KindDisconnect)
	if len(ds) != 2 || ds[0].Msg.(membership.Disconnect).Alive {
		t.Fatalf("Leave: %v", kinds(acts))
	}
	c.HandleMessage(1, ds[0].Msg, epoch)
	take(c)
	if c.IsActive(1) || slices.Contains(c.PassiveView(), 1) {
		t.Fatal("a node that left is still known")
	}
	a.Join(membership.PeerInfo[nid]{ID: 2}, epoch)
	if acts := take(a); len(acts) != 0 || !a.Left() {
		t.Fatalf("a left state still acts: %v", kinds(acts))
	}
}

func TestNeedContacts(t *testing.T) {
	cfg := membership.DefaultConfig()
	a, b := newState(t, 1, testKey, cfg), newState(t, 2, testKey, cfg)
	link(t, a, b)
	a.PeerDown(2, epoch)
	acts := take(a)
	if !has(acts, membership.ActionNeedContacts, 0) {
		t.Fatalf("isolated node did not ask for contacts: %v", kinds(acts))
	}
	a.HandleTimer(membership.Timer[nid]{Kind: membership.TimerShuffle, Seq: 1}, epoch)
	if acts := take(a); !has(acts, membership.ActionNeedContacts, 0) {
		t.Fatalf("still isolated, but the shuffle tick did not ask again: %v", kinds(acts))
	}
}

func TestStaleTimersIgnored(t *testing.T) {
	cfg := membership.DefaultConfig()
	a := newState(t, 1, testKey, cfg)
	a.HandleTimer(membership.Timer[nid]{Kind: membership.TimerShuffle, Seq: 42}, epoch)
	a.HandleTimer(membership.Timer[nid]{Kind: membership.TimerNeighbor, Peer: 5, Seq: 3}, epoch)
	if acts := take(a); len(acts) != 0 {
		t.Fatalf("stale timers produced %v", kinds(acts))
	}
}

func TestConfigValidate(t *testing.T) {
	if err := membership.DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := membership.DefaultConfig()
	bad.PassiveRandomWalkLength = bad.ActiveRandomWalkLength + 1
	if err := bad.Validate(); err == nil {
		t.Fatal("PRWL > ARWL accepted")
	}
	if _, err := membership.NewState(nid(1), testKey, membership.Config{}, rand.New(rand.NewPCG(1, 1)), epoch); err == nil {
		t.Fatal("zero config accepted")
	}
}

// TestViewLimitsNeverExceeded drives a small network with tiny views through joins, random
// crashes, message loss and shuffles, and checks the view invariants after every input.
func TestViewLimitsNeverExceeded(t *testing.T) {
	cfg := membership.DefaultConfig()
	cfg.ActiveSize, cfg.PassiveSize = 3, 5
	cfg.ActiveRandomWalkLength, cfg.PassiveRandomWalkLength = 4, 2
	cfg.ShuffleActive, cfg.ShufflePassive = 2, 3
	for seed := uint64(1); seed <= 5; seed++ {
		n := newTestNet(t, cfg, seed)
		n.loss = 0.05
		n.checkEvery = true
		for id := nid(1); id <= 60; id++ {
			n.add(id)
			if id > 1 {
				n.join(id, nid(1+n.rng.IntN(int(id-1))))
			}
			n.deliverAll(5000)
		}
		for round := 0; round < 20; round++ {
			if round%5 == 4 {
				victim := nid(1 + n.rng.IntN(60))
				n.crash(victim)
			}
			n.tickAll()
			n.deliverAll(20000)
		}
	}
}

// testNet delivers messages between states in FIFO order, with optional loss and crashes.
type testNet struct {
	t          *testing.T
	cfg        membership.Config
	rng        *rand.Rand
	states     map[nid]*membership.State[nid]
	down       map[nid]bool
	queue      []envelope
	timers     map[nid][]membership.Timer[nid]
	loss       float64
	checkEvery bool
	now        time.Time
}

type envelope struct {
	from, to nid
	msg      membership.Message
	peerDown bool
}

func newTestNet(t *testing.T, cfg membership.Config, seed uint64) *testNet {
	return &testNet{
		t: t, cfg: cfg, rng: rand.New(rand.NewPCG(seed, 0)),
		states: map[nid]*membership.State[nid]{}, down: map[nid]bool{},
		timers: map[nid][]membership.Timer[nid]{}, now: epoch,
	}
}

func (n *testNet) add(id nid) {
	st, err := membership.NewState(id, testKey, n.cfg, rand.New(rand.NewPCG(n.rng.Uint64(), uint64(id))), n.now)
	if err != nil {
		n.t.Fatal(err)
	}
	n.states[id] = st
	n.collect(id)
}

func (n *testNet) join(id, contact nid) {
	n.states[id].Join(membership.PeerInfo[nid]{ID: contact}, n.now)
	n.collect(id)
}

func (n *testNet) crash(id nid) { n.down[id] = true }

func (n *testNet) collect(id nid) {
	st := n.states[id]
	for _, a := range st.Actions() {
		switch a.Kind {
		case membership.ActionSend:
			if n.loss > 0 && n.rng.Float64() < n.loss {
				continue
			}
			n.queue = append(n.queue, envelope{from: id, to: a.Peer, msg: a.Msg})
		case membership.ActionSetTimer:
			n.timers[id] = append(n.timers[id], a.Timer)
		}
	}
	if n.checkEvery {
		n.checkInvariants(id)
	}
}

func (n *testNet) checkInvariants(id nid) {
	st := n.states[id]
	active, passive := st.ActiveView(), st.PassiveView()
	if len(active) > n.cfg.ActiveSize || len(passive) > n.cfg.PassiveSize {
		n.t.Fatalf("node %d: active %d passive %d exceed %d/%d", id, len(active), len(passive), n.cfg.ActiveSize, n.cfg.PassiveSize)
	}
	seen := map[nid]bool{}
	for _, p := range append(active, passive...) {
		if p == id || seen[p] {
			n.t.Fatalf("node %d: views %v / %v contain itself or a duplicate", id, active, passive)
		}
		seen[p] = true
	}
}

// deliverAll delivers queued messages (and the failures of sends to crashed nodes) until
// none are left or max steps were taken; it returns the steps taken.
func (n *testNet) deliverAll(max int) int {
	steps := 0
	for len(n.queue) > 0 && steps < max {
		e := n.queue[0]
		n.queue = n.queue[1:]
		steps++
		n.now = n.now.Add(time.Millisecond)
		if e.peerDown {
			if !n.down[e.to] {
				n.states[e.to].PeerDown(e.from, n.now)
				n.collect(e.to)
			}
			continue
		}
		if n.down[e.to] {
			if !n.down[e.from] {
				n.queue = append(n.queue, envelope{from: e.to, to: e.from, peerDown: true})
			}
			continue
		}
		n.states[e.to].HandleMessage(e.from, e.msg, n.now)
		n.collect(e.to)
	}
	return steps
}

// tickAll fires every node's pending timers (shuffles and request timeouts).
func (n *testNet) tickAll() {
	n.now = n.now.Add(n.cfg.ShuffleInterval + n.cfg.ShuffleJitter)
	for id := nid(0); id < 1<<15; id++ {
		st, ok := n.states[id]
		if !ok {
			continue
		}
		timers := n.timers[id]
		n.timers[id] = nil
		if n.down[id] {
			continue
		}
		for _, tm := range timers {
			st.HandleTimer(tm, n.now)
			n.collect(id)
		}
	}
}

func (n *testNet) checkSymmetric() {
	for id, st := range n.states {
		if n.down[id] {
			continue
		}
		for _, p := range st.ActiveView() {
			if !n.down[p] && !n.states[p].IsActive(id) {
				n.t.Fatalf("link %d->%d not symmetric", id, p)
			}
		}
	}
}

func TestDeterministic(t *testing.T) {
	run := func() [][]nid {
		n := newTestNet(t, membership.DefaultConfig(), 3)
		for id := nid(1); id <= 30; id++ {
			n.add(id)
			if id > 1 {
				n.join(id, nid(1+n.rng.IntN(int(id-1))))
			}
			n.deliverAll(10000)
		}
		n.tickAll()
		n.deliverAll(10000)
		var views [][]nid
		for id := nid(1); id <= 30; id++ {
			views = append(views, n.states[id].ActiveView(), n.states[id].PassiveView())
		}
		return views
	}
	a, b := run(), run()
	for i := range a {
		if !slices.Equal(a[i], b[i]) {
			t.Fatalf("runs differ at %d: %v vs %v", i, a[i], b[i])
		}
	}
}

// TestOfferAsksKnownNodesWhileNotFull: nodes offered from outside the protocol enter the
// passive view and, while the active view has room, get a low-priority Neighbor request;
// neighbours and the node itself are skipped, and a full node only remembers them.
func TestOfferAsksKnownNodesWhileNotFull(t *testing.T) {
	cfg := membership.DefaultConfig()
	a, b := newState(t, 1, testKey, cfg), newState(t, 2, testKey, cfg)
	link(t, a, b)
	a.Offer([]membership.PeerInfo[nid]{{ID: 1}, {ID: 2}, {ID: 3}}, epoch)
	acts := take(a)
	nb := one(t, acts, membership.KindNeighbor)
	if nb.Peer != 3 || nb.Msg.(membership.Neighbor).HighPriority {
		t.Fatalf("Neighbor request %+v, want a low-priority one to 3", nb)
	}
	if !slices.Contains(a.PassiveView(), 3) {
		t.Fatalf("offered node not in the passive view %v", a.PassiveView())
	}
	// Not asked twice while a request is in flight.
	a.Offer([]membership.PeerInfo[nid]{{ID: 3}}, epoch)
	if s := sends(take(a), membership.KindNeighbor); len(s) != 0 {
		t.Fatalf("asked again with a request in flight: %v", kinds(acts))
	}
	// A peer that failed is asked again when offered again (the offer is news about it).
	a.PeerDown(3, epoch)
	take(a)
	a.Offer([]membership.PeerInfo[nid]{{ID: 3}}, epoch)
	if nb := one(t, take(a), membership.KindNeighbor); nb.Peer != 3 {
		t.Fatalf("re-offered peer not asked: %+v", nb)
	}

	cfg.ActiveSize = 1
	full := newState(t, 4, testKey, cfg)
	link(t, full, newState(t, 5, testKey, cfg))
	full.Offer([]membership.PeerInfo[nid]{{ID: 6}}, epoch)
	if s := sends(take(full), membership.KindNeighbor); len(s) != 0 || !slices.Contains(full.PassiveView(), 6) {
		t.Fatalf("full node: Neighbor sends %d, passive %v; want none and 6 remembered", len(s), full.PassiveView())
	}
}

// A peer asked for a link just before the node left may accept the request after the node
// stopped listening; the Disconnect that follows the request on the same link undoes that.
func TestLeaveDisconnectsPendingRequests(t *testing.T) {
	cfg := membership.DefaultConfig()
	a, b := newState(t, 1, testKey, cfg), newState(t, 2, testKey, cfg)
	a.Offer([]membership.PeerInfo[nid]{{ID: 2}}, epoch)
	req := one(t, take(a), membership.KindNeighbor)
	a.Leave(epoch)
	bye := one(t, take(a), membership.KindDisconnect)
	if bye.Peer != 2 || bye.Msg.(membership.Disconnect).Alive {
		t.Fatalf("Leave sent %+v, want Disconnect{Alive: false} to the pending peer", bye)
	}
	b.HandleMessage(1, req.Msg, epoch)
	take(b)
	if !b.IsActive(1) {
		t.Fatal("setup: the request was not accepted")
	}
	b.HandleMessage(1, bye.Msg, epoch)
	if acts := take(b); !has(acts, membership.ActionNeighborDown, 1) || b.IsActive(1) {
		t.Fatalf("the node that left is still a neighbour: %v", kinds(acts))
	}
}

// A neighbour lost to a failure that turns up again is joined through, once: after a
// partition heals, that is what links full views across it (a full peer refuses offers).
func TestLostNeighbourIsJoinedThroughOnceWhenItComesBack(t *testing.T) {
	cfg := membership.DefaultConfig()
	a, b, c := newState(t, 1, testKey, cfg), newState(t, 2, testKey, cfg), newState(t, 3, testKey, cfg)
	link(t, a, b)
	link(t, a, c)

	a.PeerUp(membership.PeerInfo[nid]{ID: 3}, epoch) // a neighbour: nothing to do
	if acts := take(a); len(acts) != 0 {
		t.Fatalf("PeerUp of a neighbour: %v", kinds(acts))
	}
	a.PeerDown(2, epoch)
	take(a)
	a.PeerUp(membership.PeerInfo[nid]{ID: 2}, epoch)
	if j := one(t, take(a), membership.KindJoin); j.Peer != 2 {
		t.Fatalf("joined through %d", j.Peer)
	}
	a.PeerUp(membership.PeerInfo[nid]{ID: 2}, epoch)
	if acts := sends(take(a), membership.KindJoin); len(acts) != 0 {
		t.Fatal("joined through the same lost neighbour twice")
	}

	// Discovery finding it again counts as coming back, too.
	a.PeerDown(3, epoch)
	take(a)
	a.Offer([]membership.PeerInfo[nid]{{ID: 3}}, epoch)
	if j := sends(take(a), membership.KindJoin); len(j) != 1 || j[0].Peer != 3 {
		t.Fatalf("offered lost neighbour: joins %v", j)
	}
	// A peer that was never a neighbour is only offered.
	a.PeerUp(membership.PeerInfo[nid]{ID: 9}, epoch)
	if acts := take(a); len(acts) != 0 {
		t.Fatalf("PeerUp of a stranger: %v", kinds(acts))
	}
}
