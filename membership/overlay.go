package membership

import (
	"container/heap"
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/lfnet/lfnet/codec"
	"github.com/lfnet/lfnet/topics"
)

// EventKind says what an Event reports.
type EventKind uint8

// Event kinds.
const (
	// EventNeighborUp: Peer entered the overlay's active view (a link to it is kept open).
	EventNeighborUp EventKind = iota + 1
	// EventNeighborDown: Peer left the active view.
	EventNeighborDown
	// EventNeedContacts: the overlay has run out of neighbours and passive peers to ask.
	// It retries by itself through the known contacts and the ContactSource; the
	// application may help with AddContacts.
	EventNeedContacts
)

// String returns the kind's name.
func (k EventKind) String() string {
	switch k {
	case EventNeighborUp:
		return "NeighborUp"
	case EventNeighborDown:
		return "NeighborDown"
	case EventNeedContacts:
		return "NeedContacts"
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event is a change in one overlay's active view.
type Event struct {
	Kind  EventKind
	Topic topics.Topic
	Peer  peer.ID
}

// maxContacts bounds the contacts an overlay remembers for rejoining.
const maxContacts = 64

type inputKind uint8

const (
	inMessage inputKind = iota + 1
	inPeerDown
	inSendFailed
	inSenderIdle
	inAddContacts
	inConnected
	inRejoin
	inLeave
)

type input struct {
	kind     inputKind
	peer     peer.ID
	msg      Message
	sender   *sender
	contacts []peer.AddrInfo
	leave    *leaveRequest
}

type leaveRequest struct {
	ctx  context.Context
	done chan error
}

// Overlay is this node's membership in one topic's overlay. Its methods are safe for
// concurrent use.
type Overlay struct {
	d     *Driver
	topic topics.Topic
	id    [32]byte
	tag   string

	// Owned by the run goroutine.
	state    *State[peer.ID]
	senders  map[peer.ID]*sender
	timers   timerHeap
	timer    *time.Timer
	queue    []Event
	contacts []peer.AddrInfo
	deferred []input

	// inputs carries messages from stream handlers; the blocking send gives backpressure.
	inputs chan input
	// mailbox carries inputs from places that must never block (libp2p notifications,
	// writer goroutines, the run goroutine itself).
	mailMu  sync.Mutex
	mail    []input
	mailSig chan struct{}

	events  chan Event
	done    chan struct{}
	ctx     context.Context // cancelled to abort dials and writes when leaving
	cancel  context.CancelFunc
	writers sync.WaitGroup

	outMu sync.Mutex
	outgo map[network.Stream]struct{} // open outgoing streams, reset when a leave times out
	abort bool

	snapMu  sync.RWMutex
	active  []peer.ID
	former  map[peer.ID]struct{} // left the active view, still connected (see WasNeighbor)
	stats   Stats
	dropped uint64

	leaveOnce sync.Once
}

func newOverlay(d *Driver, topic topics.Topic, id [32]byte, st *State[peer.ID]) *Overlay {
	ctx, cancel := context.WithCancel(context.Background())
	return &Overlay{
		d:       d,
		topic:   topic,
		id:      id,
		tag:     "lfnet-membership-" + hex.EncodeToString(id[:8]),
		state:   st,
		senders: make(map[peer.ID]*sender),
		inputs:  make(chan input, 64),
		mailSig: make(chan struct{}, 1),
		events:  make(chan Event, 16),
		done:    make(chan struct{}),
		outgo:   make(map[network.Stream]struct{}),
		former:  make(map[peer.ID]struct{}),
		ctx:     ctx,
		cancel:  cancel,
	}
}

// Topic returns the overlay's topic.
func (o *Overlay) Topic() topics.Topic { return o.topic }

// Events returns the overlay's NeighborUp, NeighborDown and NeedContacts events, in order.
// The channel is closed after Leave. Delivery policy: the protocol never waits for the
// consumer; undelivered events wait in the channel's small buffer (16) and then in a queue
// of up to the driver's event queue limit, beyond which the oldest are dropped and counted
// (DroppedEvents). A consumer that lost events can resynchronise from ActiveView. Events
// still queued when the overlay stops are delivered only as far as the buffer has room.
func (o *Overlay) Events() <-chan Event { return o.events }

// ActiveView returns the current neighbours.
func (o *Overlay) ActiveView() []peer.ID {
	o.snapMu.RLock()
	defer o.snapMu.RUnlock()
	return slices.Clone(o.active)
}

// WasNeighbor reports whether p is in the active view, or was in it earlier in this
// membership and has stayed connected to this host since. Layers that keep their own
// links to neighbours (GossipSub's mesh, say) use it: such a link, made while p was a
// neighbour, may outlive p's place in the view, and p is still a proven member of the
// topic (it passed the join proof). The set is bounded by the host's connections: a peer
// is forgotten when its last connection closes.
func (o *Overlay) WasNeighbor(p peer.ID) bool {
	o.snapMu.RLock()
	defer o.snapMu.RUnlock()
	_, ok := o.former[p]
	return ok || slices.Contains(o.active, p)
}

// Stats returns the overlay's rejection counters (Stats.RejectedAuth counts Join and
// Neighbor requests from nodes that do not hold the topic).
func (o *Overlay) Stats() Stats {
	o.snapMu.RLock()
	defer o.snapMu.RUnlock()
	return o.stats
}

// DroppedEvents returns how many events were dropped because the consumer fell behind.
func (o *Overlay) DroppedEvents() uint64 {
	o.snapMu.RLock()
	defer o.snapMu.RUnlock()
	return o.dropped
}

// AddContacts gives the overlay more nodes believed to share the topic. They are kept for
// rejoining after isolation, and joined through at once while the active view is not full.
func (o *Overlay) AddContacts(contacts ...peer.AddrInfo) {
	if len(contacts) == 0 {
		return
	}
	o.post(input{kind: inAddContacts, contacts: slices.Clone(contacts)})
}

// Leave sends Disconnect to every neighbour, waits until those messages are written or ctx
// ends, and stops the overlay. It returns ErrClosed if the overlay had already stopped.
func (o *Overlay) Leave(ctx context.Context) error {
	first := false
	req := &leaveRequest{ctx: ctx, done: make(chan error, 1)}
	o.leaveOnce.Do(func() {
		first = true
		o.post(input{kind: inLeave, leave: req})
	})
	if !first {
		select {
		case <-o.done:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	select {
	case err := <-req.done:
		return err
	case <-o.done:
		return nil
	}
}

// post queues an input without blocking.
func (o *Overlay) post(in input) {
	o.mailMu.Lock()
	o.mail = append(o.mail, in)
	o.mailMu.Unlock()
	select {
	case o.mailSig <- struct{}{}:
	default:
	}
}

func (o *Overlay) takeMail() []input {
	o.mailMu.Lock()
	defer o.mailMu.Unlock()
	m := o.mail
	o.mail = nil
	return m
}

// run is the overlay's goroutine: the only one that touches the State.
func (o *Overlay) run(contacts []peer.AddrInfo) {
	defer close(o.done)
	o.timer = time.NewTimer(time.Hour)
	defer o.timer.Stop()
	o.step(func(now time.Time) {
		o.state.SetData(o.selfData())
		for _, c := range contacts {
			if c.ID != o.d.h.ID() {
				o.state.Join(PeerInfo[peer.ID]{ID: c.ID}, now)
			}
		}
	})
	for {
		var evCh chan Event
		var next Event
		if len(o.queue) > 0 {
			evCh, next = o.events, o.queue[0]
		}
		select {
		case in := <-o.inputs:
			if o.handle(in) {
				return
			}
		case <-o.mailSig:
			for _, in := range o.takeMail() {
				if o.handle(in) {
					return
				}
			}
		case <-o.timer.C:
			o.fireTimers()
		case evCh <- next:
			o.queue[0] = Event{}
			o.queue = o.queue[1:]
		}
	}
}

// handle processes one input and reports whether the overlay stopped.
func (o *Overlay) handle(in input) bool {
	switch in.kind {
	case inMessage:
		o.step(func(now time.Time) { o.state.HandleMessage(in.peer, in.msg, now) })
	case inPeerDown:
		o.snapMu.Lock()
		delete(o.former, in.peer)
		o.snapMu.Unlock()
		// Only a neighbour's connection matters: other connections (a shuffle reply, a
		// refused request) close routinely and say nothing about the peer's health.
		if o.state.IsActive(in.peer) {
			o.step(func(now time.Time) { o.state.PeerDown(in.peer, now) })
		}
	case inSendFailed:
		if o.senders[in.peer] == in.sender {
			o.closeSender(in.peer)
			o.step(func(now time.Time) { o.state.PeerDown(in.peer, now) })
		}
	case inSenderIdle:
		if sd := o.senders[in.peer]; sd == in.sender && len(sd.queue) == 0 {
			o.closeSender(in.peer)
		}
	case inAddContacts:
		o.step(func(now time.Time) {
			for _, c := range in.contacts {
				o.state.PeerUp(PeerInfo[peer.ID]{ID: c.ID}, now)
			}
		})
		fresh := o.addContacts(in.contacts)
		if o.state.ActiveLen() == 0 && len(fresh) > 0 {
			// Outside the overlay: a Join gets in.
			o.joinThrough(fresh)
		} else if o.state.ActiveLen() < o.state.Config().ActiveSize {
			// Short of neighbours but in the overlay: ask the contacts for a link with a
			// low-priority Neighbor request, which a full peer refuses. A Join would make
			// the contact and the end of its random walk each drop a neighbour, whose
			// replacement requests drop others in turn; at 100 nodes, joining through
			// every contact discovery found kept the overlay churning (sixteen neighbour
			// changes per node in 20 s of lfbench convergence). Contacts known before are
			// offered too: after a partition heals, the nodes of the other side are
			// known, but nothing else would link to them again.
			offer := make([]PeerInfo[peer.ID], 0, len(in.contacts))
			for _, c := range in.contacts {
				offer = append(offer, PeerInfo[peer.ID]{ID: c.ID})
			}
			o.step(func(now time.Time) { o.state.Offer(offer, now) })
		}
	case inConnected:
		o.step(func(now time.Time) { o.state.PeerUp(PeerInfo[peer.ID]{ID: in.peer}, now) })
		// A new connection to a known contact while short of neighbours: most likely
		// the network healed (or the contact came back), so ask it for a link.
		if o.state.ActiveLen() < o.state.Config().ActiveSize && !o.state.IsActive(in.peer) &&
			slices.ContainsFunc(o.contacts, func(c peer.AddrInfo) bool { return c.ID == in.peer }) {
			o.step(func(now time.Time) { o.state.Offer([]PeerInfo[peer.ID]{{ID: in.peer}}, now) })
		}
	case inRejoin:
		o.rejoin(in.contacts)
	case inLeave:
		o.leave(in.leave)
		return true
	}
	return false
}

// step runs one input on the state and carries out the resulting actions; inputs that the
// actions themselves produce (a failed enqueue, a rejoin) run right after.
func (o *Overlay) step(f func(now time.Time)) {
	f(time.Now())
	o.apply()
	for len(o.deferred) > 0 {
		in := o.deferred[0]
		o.deferred = o.deferred[1:]
		o.handle(in)
	}
	o.snapMu.Lock()
	o.stats = o.state.Stats()
	o.snapMu.Unlock()
}

func (o *Overlay) apply() {
	for _, a := range o.state.Actions() {
		switch a.Kind {
		case ActionSend:
			o.send(a.Peer, a.Msg)
		case ActionConnect:
			o.learnAddrs(a.Peer, a.Data)
		case ActionDisconnect:
			// The outgoing stream stays open until it idles out: a message sent to the
			// peer right after the Disconnect (a new Neighbor request, say) then travels
			// behind it on the same stream instead of overtaking it on a new one.
		case ActionNeighborUp:
			o.d.h.ConnManager().Protect(a.Peer, o.tag)
			o.setActive()
			o.emit(Event{Kind: EventNeighborUp, Topic: o.topic, Peer: a.Peer})
		case ActionNeighborDown:
			o.d.h.ConnManager().Unprotect(a.Peer, o.tag)
			o.snapMu.Lock()
			// A neighbour lost because its connection closed is not kept: the
			// connection is what the links that outlive the view ride on.
			if o.d.h.Network().Connectedness(a.Peer) == network.Connected {
				o.former[a.Peer] = struct{}{}
			}
			o.snapMu.Unlock()
			o.setActive()
			o.emit(Event{Kind: EventNeighborDown, Topic: o.topic, Peer: a.Peer})
		case ActionSetTimer:
			heap.Push(&o.timers, timerEntry{at: time.Now().Add(a.After), timer: a.Timer})
			o.resetTimer()
		case ActionNeedContacts:
			o.emit(Event{Kind: EventNeedContacts, Topic: o.topic})
			o.findContacts()
		}
	}
}

func (o *Overlay) setActive() {
	view := o.state.ActiveView()
	o.snapMu.Lock()
	o.active = view
	o.snapMu.Unlock()
}

func (o *Overlay) emit(ev Event) {
	o.queue = append(o.queue, ev)
	if over := len(o.queue) - o.d.opts.eventLimit; over > 0 {
		o.queue = o.queue[over:]
		o.snapMu.Lock()
		o.dropped += uint64(over)
		total := o.dropped
		o.snapMu.Unlock()
		// A consumer that stopped reading would otherwise get one line per event.
		if total == uint64(over) || total%1024 == 0 {
			o.d.log.Warn("membership: event consumer too slow, dropping events", "overlay", o.topic.Short(), "dropped", total)
		}
	}
}

func (o *Overlay) fireTimers() {
	now := time.Now()
	for o.timers.Len() > 0 && !o.timers[0].at.After(now) {
		t := heap.Pop(&o.timers).(timerEntry).timer
		o.step(func(now time.Time) {
			if t.Kind == TimerShuffle {
				// Addresses change; refresh what we tell others about ourselves.
				o.state.SetData(o.selfData())
			}
			o.state.HandleTimer(t, now)
		})
	}
	o.resetTimer()
}

func (o *Overlay) resetTimer() {
	if o.timers.Len() == 0 {
		return
	}
	o.timer.Reset(time.Until(o.timers[0].at))
}

// send encodes m and hands it to the peer's writer, starting one if needed.
func (o *Overlay) send(p peer.ID, m Message) {
	frame, err := encodeMessage(m)
	if err != nil {
		// Only a bug can get here: the state machine produced a message we cannot encode.
		o.d.log.Error("membership: encode", "kind", m.Kind(), "err", err)
		return
	}
	sd := o.senders[p]
	if sd == nil {
		sd = &sender{o: o, peer: p, queue: make(chan []byte, senderQueue)}
		o.senders[p] = sd
		o.writers.Add(1)
		go sd.run()
	}
	select {
	case sd.queue <- frame:
	default:
		// The peer does not keep up with a protocol that sends a handful of messages per
		// minute: treat it as failed rather than buffer without bound.
		o.deferred = append(o.deferred, input{kind: inSendFailed, peer: p, sender: sd})
	}
}

func (o *Overlay) closeSender(p peer.ID) {
	if sd := o.senders[p]; sd != nil {
		close(sd.queue)
		delete(o.senders, p)
	}
}

// learnAddrs stores the addresses of a signed peer record so that the writer can dial p.
func (o *Overlay) learnAddrs(p peer.ID, data []byte) {
	if len(data) == 0 {
		return
	}
	cab, ok := peerstore.GetCertifiedAddrBook(o.d.h.Peerstore())
	if !ok {
		return
	}
	env, err := o.d.records.open(p, data)
	if err != nil {
		// Checked when the message arrived; a failure here is a bug, not bad input.
		o.d.log.Error("membership: stored peer record", "peer", p, "err", err)
		return
	}
	if _, err := cab.ConsumePeerRecord(env, peerstore.RecentlyConnectedAddrTTL); err != nil {
		o.d.log.Debug("membership: consume peer record", "peer", p, "err", err)
	}
}

// selfData returns this host's signed peer record, if the host keeps one.
func (o *Overlay) selfData() []byte {
	cab, ok := peerstore.GetCertifiedAddrBook(o.d.h.Peerstore())
	if !ok {
		return nil
	}
	env := cab.GetPeerRecord(o.d.h.ID())
	if env == nil {
		return nil
	}
	b, err := env.Marshal()
	if err != nil || len(b) > MaxPeerData {
		return nil
	}
	return b
}

// addContacts remembers contacts (bounded, newest kept) and returns the ones not known yet.
func (o *Overlay) addContacts(contacts []peer.AddrInfo) []peer.AddrInfo {
	var fresh []peer.AddrInfo
	for _, c := range contacts {
		if c.ID == "" || c.ID == o.d.h.ID() {
			continue
		}
		if len(c.Addrs) > 0 {
			o.d.h.Peerstore().AddAddrs(c.ID, c.Addrs, peerstore.AddressTTL)
		}
		if slices.ContainsFunc(o.contacts, func(k peer.AddrInfo) bool { return k.ID == c.ID }) {
			continue
		}
		fresh = append(fresh, c)
		o.contacts = append(o.contacts, c)
	}
	if over := len(o.contacts) - maxContacts; over > 0 {
		o.contacts = slices.Delete(o.contacts, 0, over)
	}
	return fresh
}

func (o *Overlay) joinThrough(contacts []peer.AddrInfo) {
	if len(contacts) == 0 {
		return
	}
	o.step(func(now time.Time) {
		for _, c := range contacts {
			if !o.state.IsActive(c.ID) {
				o.state.Join(PeerInfo[peer.ID]{ID: c.ID}, now)
			}
		}
	})
}

// rejoinFanout is how many contacts an isolated overlay joins through at once.
const rejoinFanout = 2

// findContacts answers ActionNeedContacts: it joins through known contacts at once and asks
// the ContactSource, off the run goroutine, for more.
func (o *Overlay) findContacts() {
	o.deferred = append(o.deferred, input{kind: inRejoin})
	if src := o.d.opts.contactSource; src != nil {
		o.writers.Add(1)
		go func() {
			defer o.writers.Done()
			ctx, cancel := context.WithTimeout(o.ctx, o.d.opts.dialTimeout)
			defer cancel()
			if found := src(ctx, o.topic); len(found) > 0 {
				o.post(input{kind: inRejoin, contacts: found})
			}
		}()
	}
}

func (o *Overlay) rejoin(found []peer.AddrInfo) {
	o.addContacts(found)
	candidates := slices.DeleteFunc(slices.Clone(o.contacts), func(c peer.AddrInfo) bool {
		return o.state.IsActive(c.ID)
	})
	rand.Shuffle(len(candidates), func(i, j int) { candidates[i], candidates[j] = candidates[j], candidates[i] })
	o.joinThrough(candidates[:min(rejoinFanout, len(candidates))])
}

// leave runs Leave on the state, flushes the writers within the request's deadline and
// releases everything the overlay holds.
func (o *Overlay) leave(req *leaveRequest) {
	o.step(func(now time.Time) { o.state.Leave(now) })
	for p := range o.senders {
		o.closeSender(p)
	}
	flushed := make(chan struct{})
	go func() {
		o.writers.Wait()
		close(flushed)
	}()
	var err error
	// Writers may post failures while flushing; drain the mailbox so they never block.
wait:
	for {
		select {
		case <-flushed:
			break wait
		case <-o.mailSig:
			o.takeMail()
		case <-req.ctx.Done():
			err = fmt.Errorf("membership: leave %s: %w", o.topic.Short(), req.ctx.Err())
			o.abortWriters()
			<-flushed
			break wait
		}
	}
	o.cancel()
	o.d.remove(o)
	// Hand over what fits without waiting; the consumer sees the channel close after it.
flush:
	for _, ev := range o.queue {
		select {
		case o.events <- ev:
		default:
			break flush
		}
	}
	o.queue = nil
	close(o.events)
	req.done <- err
}

// senderQueue bounds the frames waiting for one peer's writer.
const senderQueue = 64

// sender owns the outgoing stream to one peer for one overlay.
type sender struct {
	o     *Overlay
	peer  peer.ID
	queue chan []byte
}

// run writes queued frames until the queue is closed. It opens the stream (dialling if
// needed) on the first frame; after a failure it reports once and discards the rest.
func (sd *sender) run() {
	o := sd.o
	defer o.writers.Done()
	var s network.Stream
	var w *codec.Writer
	failed := false
	idle := time.NewTimer(o.d.opts.idleTimeout)
	defer idle.Stop()
	fail := func(err error) {
		o.d.log.Debug("membership: send", "peer", sd.peer, "overlay", o.topic.Short(), "err", err)
		if s != nil {
			o.untrack(s)
			_ = s.Reset()
			s = nil
		}
		failed = true
		o.post(input{kind: inSendFailed, peer: sd.peer, sender: sd})
	}
	for {
		select {
		case frame, ok := <-sd.queue:
			if !ok {
				if s != nil {
					o.untrack(s)
					_ = s.Close()
				}
				return
			}
			if failed {
				continue
			}
			if s == nil {
				var err error
				if s, w, err = sd.open(); err != nil {
					fail(err)
					continue
				}
			}
			_ = s.SetWriteDeadline(time.Now().Add(o.d.opts.writeTimeout))
			if err := w.WriteFrame(frame); err != nil {
				fail(err)
				continue
			}
			idle.Reset(o.d.opts.idleTimeout)
		case <-idle.C:
			if !failed {
				o.post(input{kind: inSenderIdle, peer: sd.peer, sender: sd})
			}
		}
	}
}

func (sd *sender) open() (network.Stream, *codec.Writer, error) {
	o := sd.o
	ctx, cancel := context.WithTimeout(o.ctx, o.d.opts.dialTimeout)
	defer cancel()
	s, err := o.d.h.NewStream(ctx, sd.peer, o.d.proto)
	if err != nil {
		return nil, nil, fmt.Errorf("membership: open stream: %w", err)
	}
	if !o.track(s) {
		return nil, nil, fmt.Errorf("membership: open stream: %w", ErrClosed)
	}
	w, err := o.d.startStream(s, o.id)
	if err != nil {
		o.untrack(s)
		_ = s.Reset()
		return nil, nil, err
	}
	return s, w, nil
}

// abortWriters stops dials and resets open outgoing streams, so that blocked writes return.
func (o *Overlay) abortWriters() {
	o.cancel()
	o.outMu.Lock()
	defer o.outMu.Unlock()
	o.abort = true
	for s := range o.outgo {
		_ = s.Reset()
	}
}

// track registers an open outgoing stream; it reports false (and resets the stream) if the
// overlay is aborting.
func (o *Overlay) track(s network.Stream) bool {
	o.outMu.Lock()
	defer o.outMu.Unlock()
	if o.abort {
		_ = s.Reset()
		return false
	}
	o.outgo[s] = struct{}{}
	return true
}

func (o *Overlay) untrack(s network.Stream) {
	o.outMu.Lock()
	defer o.outMu.Unlock()
	delete(o.outgo, s)
}

type timerEntry struct {
	at    time.Time
	timer Timer[peer.ID]
}

// timerHeap orders pending core timers by deadline, so one time.Timer serves them all.
type timerHeap []timerEntry

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timerEntry)) }
func (h *timerHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
