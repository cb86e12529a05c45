package discovery

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/record"

	"github.com/lfnet/lfnet/codec"
	lfhost "github.com/lfnet/lfnet/host"
	"github.com/lfnet/lfnet/internal/bus"
	"github.com/lfnet/lfnet/topics"
)

// Config tunes a Service.
type Config struct {
	Walker WalkerConfig
	// StepInterval is the pause between two steps of the walks; 0 disables the walks
	// (sessions then run only through Discover and for inbound streams).
	StepInterval time.Duration
	// StepIntervalMax is how far the pause stretches while the walks bring no news: after
	// a round of steps that changed nothing in the address book (no node, no node sharing
	// a held topic, added or dropped), had no failed session and found somebody to walk
	// to, the pause doubles, up to StepIntervalMax. News, a failure, a newly held topic or
	// an overlay asking for contacts (Kick) bring it back to StepInterval. Zero means
	// 8 × StepInterval; a value below StepInterval keeps the walks at StepInterval.
	StepIntervalMax time.Duration
	// SessionTimeout bounds one session.
	SessionTimeout time.Duration
	Logger         *slog.Logger
}

// DefaultConfig returns two walkers stepping every 10 s (jittered), slowing down to every
// 80 s while they learn nothing new, and 10 s sessions.
func DefaultConfig() Config {
	return Config{Walker: DefaultWalkerConfig(), StepInterval: 10 * time.Second, SessionTimeout: 10 * time.Second}
}

// stepIntervalSlowdown is the default ratio of StepIntervalMax to StepInterval.
const stepIntervalSlowdown = 8

// EventKind says what an Event reports.
type EventKind uint8

// Session events.
const (
	SessionStarted EventKind = iota + 1
	SessionEnded
	SessionFailed
)

// Event reports a discovery session.
type Event struct {
	Kind      EventKind
	Peer      peer.ID
	Initiator bool
	// Common is how many topics the two nodes found they share (SessionEnded).
	Common int
	// Learned is how many node records the remote sent (SessionEnded).
	Learned int
	Err     error
}

// Result is the outcome of one session.
type Result struct {
	Peer    peer.ID
	Common  []topics.Topic
	Learned []peer.ID
}

// Service runs discovery sessions and random walks on one host.
type Service struct {
	h     host.Host
	proto protocol.ID
	book  *lfhost.AddressBook
	reg   *topics.Registry
	cfg   Config
	log   *slog.Logger

	events *bus.Bus[Event]

	walkMu sync.Mutex
	walker *Walker
	rng    *mrand.Rand // guarded by walkMu

	ownMu   sync.Mutex
	ownRec  []byte
	ownAddr string

	ctx    context.Context
	cancel context.CancelFunc
	kick   chan struct{}

	// wgMu orders inbound handlers' wg.Add against Close's wg.Wait: a stream can arrive
	// while Close runs, and an Add racing a Wait on a zero counter is a data race.
	wgMu    sync.Mutex
	closing bool
	wg      sync.WaitGroup
}

// New registers the discovery protocol proto (normally host.ProtocolID("discovery", "1"))
// on h and starts the walks. Learned nodes go to book; the topics looked for are those held
// in reg.
func New(h host.Host, proto protocol.ID, book *lfhost.AddressBook, reg *topics.Registry, cfg Config) *Service {
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = DefaultConfig().SessionTimeout
	}
	if cfg.StepIntervalMax == 0 {
		cfg.StepIntervalMax = stepIntervalSlowdown * cfg.StepInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var seed [32]byte
	_, _ = rand.Read(seed[:])
	rng := mrand.New(mrand.NewChaCha8(seed))
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{
		h: h, proto: proto, book: book, reg: reg, cfg: cfg,
		log:    cfg.Logger.With("component", "discovery"),
		events: bus.New[Event](),
		walker: NewWalker(h.ID(), cfg.Walker, rng),
		rng:    rng,
		ctx:    ctx, cancel: cancel,
		kick: make(chan struct{}, 1),
	}
	h.SetStreamHandler(proto, s.handle)
	if cfg.StepInterval > 0 {
		s.wg.Add(2)
		go s.walk()
		go s.watchTopics()
	}
	return s
}

// Close stops the walks and inbound sessions; it does not close the host.
func (s *Service) Close() error {
	s.h.RemoveStreamHandler(s.proto)
	s.wgMu.Lock()
	s.closing = true
	s.wgMu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.events.Close()
	return nil
}

// Subscription delivers session events to one consumer goroutine.
type Subscription struct{ sub *bus.Subscription[Event] }

// Next returns the next event and how many were dropped before it because the consumer
// fell behind.
func (s *Subscription) Next(ctx context.Context) (Event, uint64, error) { return s.sub.Next(ctx) }

// Close ends the subscription.
func (s *Subscription) Close() { s.sub.Close() }

// Subscribe returns session events from now on.
func (s *Service) Subscribe() *Subscription { return &Subscription{sub: s.events.Subscribe(256)} }

// Kick makes the walks take a step now, for example after a topic was opened.
func (s *Service) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Service) watchTopics() {
	defer s.wg.Done()
	w := s.reg.Watch()
	defer w.Close()
	for {
		c, _, err := w.Next(s.ctx)
		if err != nil {
			return
		}
		if c.Held {
			s.Kick()
		}
	}
}

func (s *Service) walk() {
	defer s.wg.Done()
	timer := time.NewTimer(0)
	defer timer.Stop()
	pace := pacer{base: s.cfg.StepInterval, max: s.cfg.StepIntervalMax}
	seen := s.fingerprint()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-timer.C:
		case <-s.kick:
			pace.reset()
		}
		settled := true
		for i := range s.walker.Walkers() {
			if !s.step(i) {
				settled = false
			}
		}
		now := s.fingerprint()
		timer.Reset(s.jittered(pace.next(!settled || now != seen)))
		seen = now
	}
}

// bookFingerprint summarises what the address book knows that the walks care about: how
// many nodes, and how many node-topic pairs for the topics held.
type bookFingerprint struct{ nodes, holders int }

func (s *Service) fingerprint() bookFingerprint {
	f := bookFingerprint{nodes: s.book.Len()}
	for _, t := range s.reg.Topics() {
		f.holders += len(s.book.NodesForTopic(t))
	}
	return f
}

func (s *Service) jittered(d time.Duration) time.Duration {
	s.walkMu.Lock()
	defer s.walkMu.Unlock()
	return d/2 + time.Duration(s.rng.Int64N(int64(d)))
}

func (s *Service) candidates() Candidates {
	var c Candidates
	for _, e := range s.book.All() {
		if e.ID == s.h.ID() || e.Record == nil && len(s.h.Peerstore().Addrs(e.ID)) == 0 {
			continue
		}
		if e.Bootstrap {
			c.Bootstrap = append(c.Bootstrap, e.ID)
		}
		c.Known = append(c.Known, e.ID)
	}
	for _, p := range s.h.Network().Peers() {
		if !slices.Contains(c.Known, p) {
			c.Known = append(c.Known, p)
		}
	}
	return c
}

// step runs one step of walk i. It reports false if the walks should not slow down: the
// session failed, or there was nobody to walk to (a round then costs nothing, and a node
// waiting for its first contact, from mDNS say, should use it at once).
func (s *Service) step(i int) bool {
	cands := s.candidates()
	s.walkMu.Lock()
	p, ok := s.walker.Next(i, cands, time.Now())
	s.walkMu.Unlock()
	if !ok {
		return false
	}
	res, err := s.Discover(s.ctx, p)
	if s.ctx.Err() != nil {
		return true
	}
	s.walkMu.Lock()
	s.walker.Result(i, p, res.Learned, err != nil, time.Now())
	s.walkMu.Unlock()
	return err == nil
}

// Discover runs one session with p as initiator and records what it learns.
func (s *Service) Discover(ctx context.Context, p peer.ID) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SessionTimeout)
	defer cancel()
	s.events.Publish(Event{Kind: SessionStarted, Peer: p, Initiator: true})
	res, err := s.initiate(ctx, p)
	s.finish(p, true, res, err)
	return res, err
}

func (s *Service) finish(p peer.ID, initiator bool, res Result, err error) {
	if err != nil {
		s.log.Debug("discovery session failed", "peer", p, "initiator", initiator, "err", err)
		if bErr := s.book.MarkFailure(p); bErr != nil {
			s.log.Debug("address book", "err", bErr)
		}
		s.events.Publish(Event{Kind: SessionFailed, Peer: p, Initiator: initiator, Err: err})
		return
	}
	s.events.Publish(Event{Kind: SessionEnded, Peer: p, Initiator: initiator, Common: len(res.Common), Learned: len(res.Learned)})
}

func newSalt() []byte {
	b := make([]byte, saltSize)
	_, _ = rand.Read(b)
	return b
}

func (s *Service) initiate(ctx context.Context, p peer.ID) (Result, error) {
	res := Result{Peer: p}
	st, err := s.h.NewStream(ctx, p, s.proto)
	if err != nil {
		return res, fmt.Errorf("discovery: open stream to %s: %w", p, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = st.Reset() })
	defer stop()
	r := codec.NewReader(st, codec.MaxFrameDiscovery)
	w := codec.NewWriter(st, codec.MaxFrameDiscovery)
	saltI := newSalt()
	if err := send(w, kindHello, helloMsg{Salt: saltI}); err != nil {
		_ = st.Reset()
		return res, err
	}
	m, err := receive(r, kindOffer)
	if err != nil {
		_ = st.Reset()
		return res, err
	}
	offer := m.(offerMsg)
	theirs, _ := checkTokens(offer.Tokens, MaxTopicsOffered)
	common := intersect(s.reg.Topics(), theirs, saltI, offer.Salt, roleAcceptor)
	match := matchMsg{Tokens: make([][]byte, 0, len(common))}
	for _, t := range common {
		tok := topicToken(t, saltI, offer.Salt, roleInitiator)
		match.Tokens = append(match.Tokens, tok[:])
	}
	if err := send(w, kindMatch, match); err != nil {
		_ = st.Reset()
		return res, err
	}
	res, err = s.exchangeRecords(r, w, p, common, saltI, offer.Salt, roleInitiator)
	if err != nil {
		_ = st.Reset()
		return res, err
	}
	_ = st.Close()
	return res, nil
}

// track registers an inbound session's goroutine unless the service is closing.
func (s *Service) track() bool {
	s.wgMu.Lock()
	defer s.wgMu.Unlock()
	if s.closing {
		return false
	}
	s.wg.Add(1)
	return true
}

func (s *Service) handle(st network.Stream) {
	if !s.track() {
		_ = st.Reset()
		return
	}
	defer s.wg.Done()
	p := st.Conn().RemotePeer()
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.SessionTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = st.Reset() })
	defer stop()
	s.events.Publish(Event{Kind: SessionStarted, Peer: p})
	res, err := s.accept(st, p)
	if err != nil {
		_ = st.Reset()
	} else {
		_ = st.Close()
	}
	s.finish(p, false, res, err)
}

func (s *Service) accept(st network.Stream, p peer.ID) (Result, error) {
	r := codec.NewReader(st, codec.MaxFrameDiscovery)
	w := codec.NewWriter(st, codec.MaxFrameDiscovery)
	m, err := receive(r, kindHello)
	if err != nil {
		return Result{Peer: p}, err
	}
	saltI, saltA := m.(helloMsg).Salt, newSalt()
	mine := s.reg.Topics()
	if len(mine) > MaxTopicsOffered {
		mine = mine[:MaxTopicsOffered]
	}
	offer := offerMsg{Salt: saltA, Tokens: make([][]byte, 0, len(mine))}
	for _, t := range mine {
		tok := topicToken(t, saltI, saltA, roleAcceptor)
		offer.Tokens = append(offer.Tokens, tok[:])
	}
	// Token order would otherwise follow topic order, the same in every session.
	s.walkMu.Lock()
	s.rng.Shuffle(len(offer.Tokens), func(i, j int) { offer.Tokens[i], offer.Tokens[j] = offer.Tokens[j], offer.Tokens[i] })
	s.walkMu.Unlock()
	if err := send(w, kindOffer, offer); err != nil {
		return Result{Peer: p}, err
	}
	m, err = receive(r, kindMatch)
	if err != nil {
		return Result{Peer: p}, err
	}
	claimed, _ := checkTokens(m.(matchMsg).Tokens, MaxTopicsOffered)
	common := intersect(mine, claimed, saltI, saltA, roleInitiator)
	return s.exchangeRecords(r, w, p, common, saltI, saltA, roleAcceptor)
}

// exchangeRecords sends our records and reads the remote's; both sides write before they
// read, which stream buffering allows.
func (s *Service) exchangeRecords(r *codec.Reader, w *codec.Writer, p peer.ID, common []topics.Topic, saltI, saltA []byte, role byte) (Result, error) {
	res := Result{Peer: p, Common: common}
	out, err := s.records(p, common, saltI, saltA, role)
	if err != nil {
		return res, err
	}
	if err := send(w, kindRecords, out); err != nil {
		return res, err
	}
	m, err := receive(r, kindRecords)
	if err != nil {
		return res, err
	}
	res.Learned = s.ingest(p, m.(recordsMsg), common, saltI, saltA, 1-role)
	if len(common) > 0 {
		if err := s.book.AddTopics(p, common...); err != nil {
			return res, fmt.Errorf("discovery: address book: %w", err)
		}
	}
	if err := s.book.MarkSuccess(p); err != nil {
		s.log.Debug("address book", "err", err)
	}
	return res, nil
}

// records builds what we tell p: our own record with every common topic, nodes known to
// share a common topic, and a small sample of other nodes without topics.
func (s *Service) records(p peer.ID, common []topics.Topic, saltI, saltA []byte, role byte) (recordsMsg, error) {
	own, err := s.ownRecord()
	if err != nil {
		return recordsMsg{}, err
	}
	tok := make(map[topics.Topic][]byte, len(common))
	for _, t := range common {
		tk := topicToken(t, saltI, saltA, role)
		tok[t] = tk[:]
	}
	msg := recordsMsg{Records: []recordEntry{{Record: own, Tokens: tokenList(tok, common)}}}
	seen := map[peer.ID]bool{s.h.ID(): true, p: true}
	var tagged []recordEntry
	for _, t := range common {
		for _, id := range s.book.NodesForTopic(t) {
			if seen[id] {
				continue
			}
			seen[id] = true
			e, ok := s.book.Get(id)
			if !ok || e.Record == nil {
				continue
			}
			raw, err := e.Record.Marshal()
			if err != nil || len(raw) > maxRecordSize {
				continue
			}
			var shared []topics.Topic
			for _, et := range e.Topics {
				if _, ok := tok[et]; ok {
					shared = append(shared, et)
				}
			}
			tagged = append(tagged, recordEntry{Record: raw, Tokens: tokenList(tok, shared)})
		}
	}
	var sample []recordEntry
	for _, e := range s.book.All() {
		if seen[e.ID] || e.Record == nil {
			continue
		}
		raw, err := e.Record.Marshal()
		if err != nil || len(raw) > maxRecordSize {
			continue
		}
		sample = append(sample, recordEntry{Record: raw})
	}
	s.walkMu.Lock()
	s.rng.Shuffle(len(tagged), func(i, j int) { tagged[i], tagged[j] = tagged[j], tagged[i] })
	s.rng.Shuffle(len(sample), func(i, j int) { sample[i], sample[j] = sample[j], sample[i] })
	s.walkMu.Unlock()
	sample = sample[:min(len(sample), sampleSize)]
	tagged = tagged[:min(len(tagged), MaxRecords-1-len(sample))]
	msg.Records = append(append(msg.Records, tagged...), sample...)
	return msg, nil
}

func tokenList(tok map[topics.Topic][]byte, ts []topics.Topic) [][]byte {
	out := make([][]byte, 0, len(ts))
	for _, t := range ts {
		out = append(out, tok[t])
	}
	return out
}

// ingest stores the remote's records; tokens name common topics in the remote's role.
// Records that do not verify, and tokens that name no common topic, are skipped.
func (s *Service) ingest(p peer.ID, m recordsMsg, common []topics.Topic, saltI, saltA []byte, remoteRole byte) []peer.ID {
	byToken := tokensFor(common, saltI, saltA, remoteRole)
	var learned []peer.ID
	for _, e := range m.Records {
		id, err := s.book.AddRecordBytes(e.Record)
		if err != nil && !errors.Is(err, lfhost.ErrStaleRecord) {
			s.log.Debug("rejected peer record", "from", p, "err", err)
			continue
		}
		if id == "" || id == s.h.ID() {
			continue
		}
		learned = append(learned, id)
		var ts []topics.Topic
		for _, raw := range e.Tokens {
			if t, ok := byToken[Token(raw)]; ok {
				ts = append(ts, t)
			}
		}
		if len(ts) > 0 {
			if err := s.book.AddTopics(id, ts...); err != nil {
				s.log.Debug("address book", "err", err)
			}
		}
	}
	return learned
}

// ownRecord returns our signed peer record, re-sealed when our addresses change.
func (s *Service) ownRecord() ([]byte, error) {
	addrs := s.h.Addrs()
	key := fmt.Sprint(addrs)
	s.ownMu.Lock()
	defer s.ownMu.Unlock()
	if s.ownRec != nil && key == s.ownAddr {
		return s.ownRec, nil
	}
	priv := s.h.Peerstore().PrivKey(s.h.ID())
	if priv == nil {
		return nil, fmt.Errorf("discovery: no private key for %s in the peerstore", s.h.ID())
	}
	env, err := record.Seal(peer.PeerRecordFromAddrInfo(peer.AddrInfo{ID: s.h.ID(), Addrs: addrs}), priv)
	if err != nil {
		return nil, fmt.Errorf("discovery: seal own record: %w", err)
	}
	raw, err := env.Marshal()
	if err != nil {
		return nil, fmt.Errorf("discovery: marshal own record: %w", err)
	}
	s.ownRec, s.ownAddr = raw, key
	return raw, nil
}

// frameTap, when set, sees every frame this package sends. Tests use it to check what
// crosses the wire; nothing else sets it.
var frameTap atomic.Pointer[func([]byte)]

func send(w *codec.Writer, kind uint64, msg any) error {
	b, err := codec.MarshalTagged(kind, msg)
	if err != nil {
		return err
	}
	if tap := frameTap.Load(); tap != nil {
		(*tap)(b)
	}
	if err := w.WriteFrame(b); err != nil {
		return fmt.Errorf("discovery: send: %w", err)
	}
	return nil
}

func receive(r *codec.Reader, kind uint64) (any, error) {
	frame, err := r.ReadFrame()
	if err != nil {
		return nil, fmt.Errorf("discovery: receive: %w", err)
	}
	return decodeMessage(frame, kind)
}
