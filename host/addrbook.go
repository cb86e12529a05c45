package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	pb "github.com/libp2p/go-libp2p/core/crypto/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/record"
	ma "github.com/multiformats/go-multiaddr"
	"go.etcd.io/bbolt"

	"github.com/lfnet/lfnet/topics"
)

// Address book errors.
var (
	// ErrNotSigned: there is no signature, or it does not verify.
	ErrNotSigned = errors.New("host: peer record not signed")
	// ErrWrongSigner: the record describes a node other than the one whose key signed it.
	ErrWrongSigner = errors.New("host: peer record signed by another node")
	// ErrStaleRecord: the book already holds a newer record (higher seq) for the node, or a
	// different record with the same seq.
	ErrStaleRecord = errors.New("host: stale peer record")
	// ErrInvalidRecord: not a peer record envelope, too large, too many addresses, or signed
	// with a key that is not ed25519.
	ErrInvalidRecord = errors.New("host: invalid peer record")
	// ErrAddressBookFull: the book is at capacity and every entry is a bootstrap node or a
	// connected node, so none can make room.
	ErrAddressBookFull = errors.New("host: address book full")
	// ErrClosed: the address book or host was closed.
	ErrClosed = errors.New("host: closed")
)

// Limits that keep the address book bounded whatever peers send us.
const (
	// MaxRecordSize is the largest marshalled signed peer record the book accepts.
	MaxRecordSize = 8 << 10
	// MaxRecordAddrs is the largest number of addresses in an accepted peer record.
	MaxRecordAddrs = 32
	// MaxTopicsPerNode bounds the topics remembered per node; the oldest are forgotten first.
	MaxTopicsPerNode = 256
	// DefaultMaxEntries bounds the number of nodes in the book; when full, the entry seen least
	// recently (never a bootstrap or connected node) makes room.
	DefaultMaxEntries = 10000
	// watchBuffer is how many changes a watcher may fall behind before it misses changes.
	watchBuffer = 64
)

// Entry is what the address book knows about one node.
type Entry struct {
	// ID is the node id.
	ID peer.ID
	// Addrs are the addresses from the node's latest signed peer record (empty without one).
	Addrs []ma.Multiaddr
	// Seq is the sequence number of that record.
	Seq uint64
	// Record is the signed envelope itself, to pass on to other nodes; nil without one. It
	// is shared with the book: marshal it, do not modify it.
	Record *record.Envelope
	// Bootstrap marks nodes configured as bootstrap nodes (a local setting, never learned).
	Bootstrap bool
	// Topics are the topics the node was learned to be interested in, oldest first.
	Topics []topics.Topic
	// LastSeen is when a new record or topic was last learned for the node.
	LastSeen time.Time
	// LastSuccess and LastFailure are the last successful and failed contacts.
	LastSuccess, LastFailure time.Time
	// Failures counts failed contacts since the last success.
	Failures uint32
}

// ChangeKind says what happened to an entry.
type ChangeKind uint8

// Kinds of change reported by Watch.
const (
	ChangeAdded ChangeKind = iota + 1
	ChangeUpdated
	ChangeRemoved
)

// String names the change kind.
func (k ChangeKind) String() string {
	switch k {
	case ChangeAdded:
		return "added"
	case ChangeUpdated:
		return "updated"
	case ChangeRemoved:
		return "removed"
	}
	return fmt.Sprintf("ChangeKind(%d)", uint8(k))
}

// Change is one address book change, as delivered by Watch. For ChangeRemoved, Entry holds
// the entry as it was before removal.
type Change struct {
	Kind  ChangeKind
	Entry Entry
}

// entry is the book's internal state for one node; Entry is its exported copy.
type entry struct {
	env         *record.Envelope
	raw         []byte
	rec         *peer.PeerRecord
	bootstrap   bool
	topics      []topics.Topic
	lastSeen    time.Time
	lastSuccess time.Time
	lastFailure time.Time
	failures    uint32
}

func (e *entry) clone() *entry {
	c := *e
	c.topics = slices.Clone(e.topics)
	return &c
}

func (e *entry) lastActivity() time.Time {
	if e.lastSuccess.After(e.lastSeen) {
		return e.lastSuccess
	}
	return e.lastSeen
}

func (e *entry) export(id peer.ID) Entry {
	out := Entry{
		ID:          id,
		Record:      e.env,
		Bootstrap:   e.bootstrap,
		Topics:      slices.Clone(e.topics),
		LastSeen:    e.lastSeen,
		LastSuccess: e.lastSuccess,
		LastFailure: e.lastFailure,
		Failures:    e.failures,
	}
	if e.rec != nil {
		out.Addrs = slices.Clone(e.rec.Addrs)
		out.Seq = e.rec.Seq
	}
	return out
}

// empty reports whether the entry carries nothing worth keeping.
func (e *entry) empty() bool {
	return e.env == nil && !e.bootstrap && len(e.topics) == 0
}

// AddressBook remembers the nodes this node has learned about: their latest signed peer
// records, bootstrap flags, topics, and contact history. It persists in bbolt when the host
// has a database, and mirrors addresses into the libp2p peerstore so that dialling a node by
// id just works. All methods are safe for concurrent use.
//
// Only signed peer records (libp2p record envelopes) are accepted as a source of addresses,
// so no node can plant addresses for another node.
type AddressBook struct {
	self       peer.ID
	db         *bbolt.DB
	ps         peerstore.Peerstore
	log        *slog.Logger
	now        func() time.Time
	connected  func(peer.ID) bool
	mirrorTTL  time.Duration
	maxEntries int

	mu       sync.Mutex
	closed   bool
	entries  map[peer.ID]*entry
	byTopic  map[topics.Topic]map[peer.ID]struct{}
	watchers map[*watcher]struct{}
}

type watcher struct {
	ch   chan Change
	stop func() bool
}

// addressBookConfig collects the host-provided collaborators of an address book.
type addressBookConfig struct {
	self       peer.ID
	db         *bbolt.DB           // nil: in memory only
	ps         peerstore.Peerstore // nil: no mirror
	log        *slog.Logger
	now        func() time.Time
	connected  func(peer.ID) bool
	mirrorTTL  time.Duration
	maxEntries int
}

func newAddressBook(cfg addressBookConfig) (*AddressBook, error) {
	if cfg.log == nil {
		cfg.log = slog.New(slog.DiscardHandler)
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	if cfg.connected == nil {
		cfg.connected = func(peer.ID) bool { return false }
	}
	if cfg.maxEntries <= 0 {
		cfg.maxEntries = DefaultMaxEntries
	}
	if cfg.mirrorTTL <= 0 {
		cfg.mirrorTTL = DefaultStaleAfter
	}
	b := &AddressBook{
		self:       cfg.self,
		db:         cfg.db,
		ps:         cfg.ps,
		log:        cfg.log,
		now:        cfg.now,
		connected:  cfg.connected,
		mirrorTTL:  cfg.mirrorTTL,
		maxEntries: cfg.maxEntries,
		entries:    make(map[peer.ID]*entry),
		byTopic:    make(map[topics.Topic]map[peer.ID]struct{}),
		watchers:   make(map[*watcher]struct{}),
	}
	if b.db != nil {
		if err := b.load(); err != nil {
			return nil, err
		}
	}
	for id, e := range b.entries {
		b.mirror(id, e)
	}
	return b, nil
}

// verifyRecord checks that data is a peer record envelope signed by the node it describes,
// with an ed25519 key, within the size limits.
func verifyRecord(data []byte) (*record.Envelope, *peer.PeerRecord, error) {
	if len(data) == 0 {
		return nil, nil, fmt.Errorf("%w: empty", ErrNotSigned)
	}
	if len(data) > MaxRecordSize {
		return nil, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrInvalidRecord, len(data), MaxRecordSize)
	}
	// Look at the key type before verifying, so that nobody can make us verify signatures
	// with expensive key types; NodeIDs are ed25519 keys anyway.
	unverified, err := record.UnmarshalEnvelope(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalidRecord, err)
	}
	if unverified.PublicKey.Type() != pb.KeyType_Ed25519 {
		return nil, nil, fmt.Errorf("%w: signing key type %v", ErrInvalidRecord, unverified.PublicKey.Type())
	}
	if !bytes.Equal(unverified.PayloadType, peer.PeerRecordEnvelopePayloadType) {
		return nil, nil, fmt.Errorf("%w: payload is not a peer record", ErrInvalidRecord)
	}
	env, untyped, err := record.ConsumeEnvelope(data, peer.PeerRecordEnvelopeDomain)
	if err != nil {
		if errors.Is(err, record.ErrInvalidSignature) {
			return nil, nil, fmt.Errorf("%w: %v", ErrNotSigned, err)
		}
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalidRecord, err)
	}
	rec, ok := untyped.(*peer.PeerRecord)
	if !ok {
		return nil, nil, fmt.Errorf("%w: payload is %T", ErrInvalidRecord, untyped)
	}
	if !rec.PeerID.MatchesPublicKey(env.PublicKey) {
		return nil, nil, fmt.Errorf("%w: record for %s", ErrWrongSigner, rec.PeerID)
	}
	if len(rec.Addrs) > MaxRecordAddrs {
		return nil, nil, fmt.Errorf("%w: %d addresses, limit %d", ErrInvalidRecord, len(rec.Addrs), MaxRecordAddrs)
	}
	return env, rec, nil
}

// AddRecord stores a node's signed peer record, replacing an older one (lower seq). The
// signature is verified again whatever the envelope's origin. A record of this node itself
// is ignored. Errors: ErrNotSigned, ErrWrongSigner, ErrInvalidRecord, ErrStaleRecord (a record
// identical to the one held is not an error).
func (b *AddressBook) AddRecord(env *record.Envelope) error {
	if env == nil {
		return fmt.Errorf("%w: nil envelope", ErrNotSigned)
	}
	data, err := env.Marshal()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidRecord, err)
	}
	_, err = b.AddRecordBytes(data)
	return err
}

// AddRecordBytes is AddRecord for a marshalled envelope as received from the network. It
// returns the node id the record belongs to when the record is valid, even if stale.
func (b *AddressBook) AddRecordBytes(data []byte) (peer.ID, error) {
	if id, ok := b.storedRecord(data); ok {
		return id, nil
	}
	env, rec, err := verifyRecord(data)
	if err != nil {
		return "", err
	}
	id := rec.PeerID
	if id == b.self {
		return id, nil
	}
	raw := bytes.Clone(data)
	return id, b.update(id, true, func(e *entry) (bool, error) {
		if e.rec != nil {
			if bytes.Equal(e.raw, raw) {
				return false, nil
			}
			if rec.Seq <= e.rec.Seq {
				return false, fmt.Errorf("%w: %s seq %d, have %d", ErrStaleRecord, id, rec.Seq, e.rec.Seq)
			}
		}
		e.env, e.raw, e.rec = env, raw, rec
		e.lastSeen = b.now()
		return true, nil
	})
}

// storedRecord reports whether data is, byte for byte, the record the book already holds
// for its node. Those bytes were verified when stored, and every discovery session hands
// them over again; verifying their signature each time was the largest CPU cost of a
// 30-node test. Anything else, including a record that does not parse, takes the full path.
func (b *AddressBook) storedRecord(data []byte) (peer.ID, bool) {
	if len(data) == 0 || len(data) > MaxRecordSize {
		return "", false
	}
	env, err := record.UnmarshalEnvelope(data)
	if err != nil {
		return "", false
	}
	id, err := peer.IDFromPublicKey(env.PublicKey)
	if err != nil {
		return "", false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entries[id]
	return id, e != nil && e.rec != nil && bytes.Equal(e.raw, data)
}

// SetBootstrap marks or unmarks a node as a bootstrap node. Bootstrap entries never expire
// and are never evicted.
func (b *AddressBook) SetBootstrap(id peer.ID, bootstrap bool) error {
	if id == b.self {
		return nil
	}
	return b.update(id, bootstrap, func(e *entry) (bool, error) {
		if e.bootstrap == bootstrap {
			return false, nil
		}
		e.bootstrap = bootstrap
		return true, nil
	})
}

// AddTopics records that the node is interested in the topics (as learned through
// discovery). Only MaxTopicsPerNode topics are kept per node, newest last.
func (b *AddressBook) AddTopics(id peer.ID, ts ...topics.Topic) error {
	if id == b.self || len(ts) == 0 {
		return nil
	}
	return b.update(id, true, func(e *entry) (bool, error) {
		changed := false
		for _, t := range ts {
			if i := slices.Index(e.topics, t); i >= 0 {
				continue
			}
			e.topics = append(e.topics, t)
			changed = true
		}
		if over := len(e.topics) - MaxTopicsPerNode; over > 0 {
			e.topics = slices.Delete(e.topics, 0, over)
		}
		if changed {
			e.lastSeen = b.now()
		}
		return changed, nil
	})
}

// RemoveTopics forgets that the node is interested in the topics.
func (b *AddressBook) RemoveTopics(id peer.ID, ts ...topics.Topic) error {
	return b.update(id, false, func(e *entry) (bool, error) {
		n := len(e.topics)
		e.topics = slices.DeleteFunc(e.topics, func(t topics.Topic) bool { return slices.Contains(ts, t) })
		return len(e.topics) != n, nil
	})
}

// MarkSuccess records a successful contact with a known node (unknown nodes are ignored)
// and resets its failure count.
func (b *AddressBook) MarkSuccess(id peer.ID) error {
	return b.update(id, false, func(e *entry) (bool, error) {
		e.lastSuccess = b.now()
		e.failures = 0
		return true, nil
	})
}

// MarkFailure records a failed contact with a known node (unknown nodes are ignored).
func (b *AddressBook) MarkFailure(id peer.ID) error {
	return b.update(id, false, func(e *entry) (bool, error) {
		e.lastFailure = b.now()
		if e.failures < ^uint32(0) {
			e.failures++
		}
		return true, nil
	})
}

// Remove forgets a node entirely.
func (b *AddressBook) Remove(id peer.ID) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	return b.removeLocked(id)
}

func (b *AddressBook) removeLocked(id peer.ID) error {
	e, ok := b.entries[id]
	if !ok {
		return nil
	}
	if err := b.persistDelete(id); err != nil {
		return err
	}
	b.unindex(id, e)
	delete(b.entries, id)
	if b.ps != nil && !b.connected(id) {
		b.ps.ClearAddrs(id)
	}
	b.notify(ChangeRemoved, id, e)
	return nil
}

// Expire removes the entries not seen or successfully contacted since olderThan, except
// bootstrap nodes and nodes currently connected, and returns their ids. The host calls it
// periodically with DefaultStaleAfter.
func (b *AddressBook) Expire(olderThan time.Time) ([]peer.ID, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	var removed []peer.ID
	for id, e := range b.entries {
		if e.bootstrap || b.connected(id) || !e.lastActivity().Before(olderThan) {
			continue
		}
		if err := b.removeLocked(id); err != nil {
			return removed, err
		}
		removed = append(removed, id)
	}
	slices.Sort(removed)
	return removed, nil
}

// Get returns the entry of a node.
func (b *AddressBook) Get(id peer.ID) (Entry, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.entries[id]
	if !ok {
		return Entry{}, false
	}
	return e.export(id), true
}

// All returns every entry, ordered by node id.
func (b *AddressBook) All() []Entry {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Entry, 0, len(b.entries))
	for id, e := range b.entries {
		out = append(out, e.export(id))
	}
	slices.SortFunc(out, func(x, y Entry) int { return compareIDs(x.ID, y.ID) })
	return out
}

// Len returns the number of entries.
func (b *AddressBook) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.entries)
}

// NodesForTopic returns the nodes known to be interested in the topic, ordered by id.
func (b *AddressBook) NodesForTopic(t topics.Topic) []peer.ID {
	b.mu.Lock()
	defer b.mu.Unlock()
	set := b.byTopic[t]
	out := make([]peer.ID, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	slices.SortFunc(out, compareIDs)
	return out
}

// Watch returns a channel of changes, closed when ctx ends or the book closes. The channel
// holds a bounded backlog: a watcher that falls further behind misses changes rather than
// stalling writers, so watchers that must not miss anything should re-read with Get or All
// after catching up.
func (b *AddressBook) Watch(ctx context.Context) <-chan Change {
	w := &watcher{ch: make(chan Change, watchBuffer)}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		close(w.ch)
		return w.ch
	}
	b.watchers[w] = struct{}{}
	w.stop = context.AfterFunc(ctx, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if _, ok := b.watchers[w]; ok {
			delete(b.watchers, w)
			close(w.ch)
		}
	})
	return w.ch
}

// close ends all watches; later writes fail with ErrClosed. The database belongs to the host.
func (b *AddressBook) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.closed = true
	for w := range b.watchers {
		w.stop()
		close(w.ch)
	}
	clear(b.watchers)
}

// update applies fn to a copy of the node's entry (a fresh one if create allows it and the
// node is unknown), persists the result and only then makes it visible, so memory never
// shows a state the database does not hold. fn reports whether it changed anything.
func (b *AddressBook) update(id peer.ID, create bool, fn func(*entry) (bool, error)) error {
	if err := id.Validate(); err != nil {
		return fmt.Errorf("host: address book: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	old, exists := b.entries[id]
	var e *entry
	switch {
	case exists:
		e = old.clone()
	case create:
		e = &entry{}
	default:
		return nil
	}
	changed, err := fn(e)
	if err != nil || !changed {
		return err
	}
	if e.empty() {
		return b.removeLocked(id)
	}
	if !exists {
		if err := b.makeRoomLocked(); err != nil {
			return err
		}
	}
	if err := b.persist(id, e); err != nil {
		return err
	}
	if exists {
		b.unindex(id, old)
	}
	b.entries[id] = e
	b.index(id, e)
	if !exists || old.env != e.env {
		b.mirror(id, e)
	}
	kind := ChangeUpdated
	if !exists {
		kind = ChangeAdded
	}
	b.notify(kind, id, e)
	return nil
}

// makeRoomLocked evicts the least recently active evictable entry when the book is full.
func (b *AddressBook) makeRoomLocked() error {
	if len(b.entries) < b.maxEntries {
		return nil
	}
	var victim peer.ID
	var victimActivity time.Time
	for id, e := range b.entries {
		if e.bootstrap || b.connected(id) {
			continue
		}
		if victim == "" || e.lastActivity().Before(victimActivity) {
			victim, victimActivity = id, e.lastActivity()
		}
	}
	if victim == "" {
		return ErrAddressBookFull
	}
	return b.removeLocked(victim)
}

func (b *AddressBook) index(id peer.ID, e *entry) {
	for _, t := range e.topics {
		set := b.byTopic[t]
		if set == nil {
			set = make(map[peer.ID]struct{})
			b.byTopic[t] = set
		}
		set[id] = struct{}{}
	}
}

func (b *AddressBook) unindex(id peer.ID, e *entry) {
	for _, t := range e.topics {
		if set := b.byTopic[t]; set != nil {
			delete(set, id)
			if len(set) == 0 {
				delete(b.byTopic, t)
			}
		}
	}
}

// mirror copies the entry's signed addresses into the peerstore, where libp2p's dialer
// looks for them.
func (b *AddressBook) mirror(id peer.ID, e *entry) {
	if b.ps == nil || e.env == nil {
		return
	}
	if cab, ok := peerstore.GetCertifiedAddrBook(b.ps); ok {
		if _, err := cab.ConsumePeerRecord(e.env, b.mirrorTTL); err != nil {
			b.log.Debug("peerstore refused peer record", "node", id, "err", err)
		}
		return
	}
	b.ps.AddAddrs(id, e.rec.Addrs, b.mirrorTTL)
}

func (b *AddressBook) notify(kind ChangeKind, id peer.ID, e *entry) {
	if len(b.watchers) == 0 {
		return
	}
	c := Change{Kind: kind, Entry: e.export(id)}
	for w := range b.watchers {
		select {
		case w.ch <- c:
		default:
			b.log.Debug("address book watcher fell behind; change dropped", "node", id, "kind", kind)
		}
	}
}

func compareIDs(x, y peer.ID) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}
