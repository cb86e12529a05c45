package host

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	ma "github.com/multiformats/go-multiaddr"
	"go.etcd.io/bbolt"

	"github.com/lfnet/lfnet/topics"
)

func newKey(t testing.TB) (crypto.PrivKey, peer.ID) {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, id
}

func randomID(t testing.TB) peer.ID {
	_, id := newKey(t)
	return id
}

// signedRecord returns a peer record for id, sealed with signer.
func signedRecord(t testing.TB, signer crypto.PrivKey, id peer.ID, seq uint64, addrs ...string) *record.Envelope {
	t.Helper()
	rec := &peer.PeerRecord{PeerID: id, Seq: seq}
	for _, a := range addrs {
		rec.Addrs = append(rec.Addrs, ma.StringCast(a))
	}
	env, err := record.Seal(rec, signer)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// fakeClock is an injected clock for expiry tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestAddressBookAcceptsOnlySelfSignedRecords(t *testing.T) {
	h := newTestHost(t)
	book := h.AddressBook()
	key, id := newKey(t)
	otherKey, _ := newKey(t)

	if err := book.AddRecord(signedRecord(t, key, id, 5, "/ip4/127.0.0.1/tcp/4001")); err != nil {
		t.Fatalf("valid record: %v", err)
	}
	e, ok := book.Get(id)
	if !ok || e.Seq != 5 || len(e.Addrs) != 1 || e.Addrs[0].String() != "/ip4/127.0.0.1/tcp/4001" || e.Record == nil {
		t.Fatalf("entry after AddRecord: %+v", e)
	}
	if got := h.Libp2p().Peerstore().Addrs(id); len(got) != 1 || !got[0].Equal(e.Addrs[0]) {
		t.Fatalf("peerstore mirror holds %v, want %v", got, e.Addrs)
	}

	// Identical record again: accepted silently. Older or same seq with other content: stale.
	if err := book.AddRecord(e.Record); err != nil {
		t.Fatalf("same record again: %v", err)
	}
	if err := book.AddRecord(signedRecord(t, key, id, 4, "/ip4/127.0.0.1/tcp/1")); !errors.Is(err, ErrStaleRecord) {
		t.Fatalf("older record: %v, want ErrStaleRecord", err)
	}
	if err := book.AddRecord(signedRecord(t, key, id, 5, "/ip4/127.0.0.1/tcp/1")); !errors.Is(err, ErrStaleRecord) {
		t.Fatalf("conflicting record with the same seq: %v, want ErrStaleRecord", err)
	}
	// Newer replaces.
	if err := book.AddRecord(signedRecord(t, key, id, 9, "/ip4/127.0.0.1/tcp/4002")); err != nil {
		t.Fatalf("newer record: %v", err)
	}
	if e, _ := book.Get(id); e.Seq != 9 || e.Addrs[0].String() != "/ip4/127.0.0.1/tcp/4002" {
		t.Fatalf("newer record did not replace: %+v", e)
	}

	// A record about id signed by someone else.
	if err := book.AddRecord(signedRecord(t, otherKey, id, 100, "/ip4/127.0.0.1/tcp/6666")); !errors.Is(err, ErrWrongSigner) {
		t.Fatalf("forged record: %v, want ErrWrongSigner", err)
	}
	if e, _ := book.Get(id); e.Seq != 9 {
		t.Fatalf("forged record changed the entry: %+v", e)
	}

	if err := book.AddRecord(nil); !errors.Is(err, ErrNotSigned) {
		t.Fatalf("nil envelope: %v, want ErrNotSigned", err)
	}
	// Flip a byte of the signature (the last field of the envelope).
	data, err := signedRecord(t, key, id, 10, "/ip4/127.0.0.1/tcp/4003").Marshal()
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-1] ^= 1
	if _, err := book.AddRecordBytes(data); !errors.Is(err, ErrNotSigned) {
		t.Fatalf("bad signature: %v, want ErrNotSigned", err)
	}
	// The stored record's bytes again skip verification; the same record with its
	// signature broken does not.
	stored, _ := book.Get(id)
	good, err := stored.Record.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := book.AddRecordBytes(good); err != nil || got != id {
		t.Fatalf("stored record's bytes again: %v, %v", got, err)
	}
	good[len(good)-1] ^= 1
	if _, err := book.AddRecordBytes(good); !errors.Is(err, ErrNotSigned) {
		t.Fatalf("stored record with a bad signature: %v, want ErrNotSigned", err)
	}
	if _, err := book.AddRecordBytes([]byte("garbage")); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("garbage: %v, want ErrInvalidRecord", err)
	}
	var many []string
	for i := range MaxRecordAddrs + 1 {
		many = append(many, fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 1000+i))
	}
	if err := book.AddRecord(signedRecord(t, key, id, 11, many...)); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("too many addresses: %v, want ErrInvalidRecord", err)
	}
	secpKey, _, err := crypto.GenerateSecp256k1Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	secpID, _ := peer.IDFromPrivateKey(secpKey)
	if err := book.AddRecord(signedRecord(t, secpKey, secpID, 1, "/ip4/127.0.0.1/tcp/1")); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("non-ed25519 signer: %v, want ErrInvalidRecord", err)
	}
	if book.Len() != 1 {
		t.Fatalf("book has %d entries, want 1", book.Len())
	}
}

func TestAddressBookTopicsAndWatch(t *testing.T) {
	h := newTestHost(t)
	book := h.AddressBook()
	ctx, cancel := context.WithCancel(context.Background())
	changes := book.Watch(ctx)

	key, id := newKey(t)
	t1, t2 := topics.FromString("one"), topics.FromString("two")
	if err := book.AddTopics(id, t1, t2); err != nil {
		t.Fatal(err)
	}
	if err := book.AddRecord(signedRecord(t, key, id, 1, "/ip4/127.0.0.1/tcp/1")); err != nil {
		t.Fatal(err)
	}
	other := randomID(t)
	if err := book.AddTopics(other, t2); err != nil {
		t.Fatal(err)
	}
	if got := book.NodesForTopic(t1); !slices.Equal(got, []peer.ID{id}) {
		t.Fatalf("NodesForTopic(t1) = %v", got)
	}
	want := []peer.ID{id, other}
	slices.SortFunc(want, compareIDs)
	if got := book.NodesForTopic(t2); !slices.Equal(got, want) {
		t.Fatalf("NodesForTopic(t2) = %v, want %v", got, want)
	}
	if err := book.RemoveTopics(id, t2); err != nil {
		t.Fatal(err)
	}
	if got := book.NodesForTopic(t2); !slices.Equal(got, []peer.ID{other}) {
		t.Fatalf("after RemoveTopics, NodesForTopic(t2) = %v", got)
	}
	// An entry left with nothing (no record, bootstrap flag or topics) disappears.
	if err := book.RemoveTopics(other, t2); err != nil {
		t.Fatal(err)
	}
	if _, ok := book.Get(other); ok {
		t.Fatal("empty entry kept")
	}
	if err := book.MarkFailure(id); err != nil {
		t.Fatal(err)
	}
	if e, _ := book.Get(id); e.Failures != 1 || e.LastFailure.IsZero() {
		t.Fatalf("after MarkFailure: %+v", e)
	}
	if err := book.MarkSuccess(id); err != nil {
		t.Fatal(err)
	}
	if e, _ := book.Get(id); e.Failures != 0 || e.LastSuccess.IsZero() {
		t.Fatalf("after MarkSuccess: %+v", e)
	}
	// Contacts with unknown nodes do not create entries.
	if err := book.MarkSuccess(randomID(t)); err != nil || book.Len() != 1 {
		t.Fatalf("MarkSuccess of an unknown node: %v, %d entries", err, book.Len())
	}

	wantKinds := []struct {
		kind ChangeKind
		id   peer.ID
	}{
		{ChangeAdded, id}, {ChangeUpdated, id}, {ChangeAdded, other}, {ChangeUpdated, id},
		{ChangeRemoved, other}, {ChangeUpdated, id}, {ChangeUpdated, id},
	}
	for i, w := range wantKinds {
		c := <-changes
		if c.Kind != w.kind || c.Entry.ID != w.id {
			t.Fatalf("change %d: %v %s, want %v %s", i, c.Kind, c.Entry.ID, w.kind, w.id)
		}
	}
	cancel()
	for range changes {
		// Drain until the watch closes with its context.
	}
}

// TestAddressBookSlowWatcherNeverBlocks: a watcher that does not read loses changes but
// never stalls writers.
func TestAddressBookSlowWatcherNeverBlocks(t *testing.T) {
	h := newTestHost(t)
	book := h.AddressBook()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	slow := book.Watch(ctx)
	id := randomID(t)
	for i := range 3 * watchBuffer {
		if err := book.AddTopics(id, topics.Derive(topics.FromString("x"), fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if len(slow) != watchBuffer {
		t.Fatalf("slow watcher holds %d changes, want the buffer of %d", len(slow), watchBuffer)
	}
}

func TestAddressBookSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	key, id := newKey(t)
	topic := topics.FromString("persisted")

	a := newTestHost(t, WithDataDir(dir))
	book := a.AddressBook()
	if err := book.AddRecord(signedRecord(t, key, id, 3, "/ip4/127.0.0.1/tcp/4001")); err != nil {
		t.Fatal(err)
	}
	if err := book.AddTopics(id, topic); err != nil {
		t.Fatal(err)
	}
	if err := book.MarkFailure(id); err != nil {
		t.Fatal(err)
	}
	before, _ := book.Get(id)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	b := newTestHost(t, WithDataDir(dir))
	after, ok := b.AddressBook().Get(id)
	if !ok {
		t.Fatal("entry lost across restart")
	}
	if after.Seq != 3 || len(after.Addrs) != 1 || !after.Addrs[0].Equal(before.Addrs[0]) ||
		!slices.Equal(after.Topics, []topics.Topic{topic}) || after.Failures != 1 ||
		!after.LastFailure.Equal(before.LastFailure) || !after.LastSeen.Equal(before.LastSeen) {
		t.Fatalf("entry changed across restart:\nbefore %+v\nafter  %+v", before, after)
	}
	if got := b.AddressBook().NodesForTopic(topic); !slices.Equal(got, []peer.ID{id}) {
		t.Fatalf("topic index after restart: %v", got)
	}
	// The reloaded record is mirrored into the new host's peerstore.
	if got := b.Libp2p().Peerstore().Addrs(id); len(got) != 1 {
		t.Fatalf("peerstore after restart: %v", got)
	}
}

// TestAddressBookSharedDB: the book lives in the node's database under "addrbook/" buckets,
// verifies what it loads, and drops entries that fail verification.
func TestAddressBookSharedDB(t *testing.T) {
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "node.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucket([]byte("someone-else"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	key, id := newKey(t)
	otherKey, otherID := newKey(t)

	a := newTestHost(t, WithDB(db))
	if err := a.AddressBook().AddRecord(signedRecord(t, key, id, 1, "/ip4/127.0.0.1/tcp/1")); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	// Plant entries that must not survive loading: a record stored under the wrong node,
	// and bytes that are not an entry at all.
	planted, err := encodeEntry(&entry{raw: mustMarshal(t, signedRecord(t, otherKey, otherID, 1, "/ip4/127.0.0.1/tcp/2"))})
	if err != nil {
		t.Fatal(err)
	}
	garbageID := randomID(t)
	err = db.Update(func(tx *bbolt.Tx) error {
		var names []string
		if err := tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
			names = append(names, string(name))
			return nil
		}); err != nil {
			return err
		}
		for _, n := range names {
			if n != "someone-else" && !strings.HasPrefix(n, "addrbook/") {
				return fmt.Errorf("bucket %q outside addrbook/", n)
			}
		}
		nodes := tx.Bucket(bucketNodes)
		if err := nodes.Put([]byte(randomID(t)), planted); err != nil {
			return err
		}
		return nodes.Put([]byte(garbageID), []byte{0xff, 0x00})
	})
	if err != nil {
		t.Fatal(err)
	}

	b := newTestHost(t, WithDB(db))
	all := b.AddressBook().All()
	if len(all) != 1 || all[0].ID != id {
		t.Fatalf("after reload: %d entries (%v), want only %s", len(all), all, id)
	}
	if err := db.View(func(tx *bbolt.Tx) error {
		if n := tx.Bucket(bucketNodes).Stats().KeyN; n != 1 {
			return fmt.Errorf("%d stored entries, want 1", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// The host did not close a database it was given.
	if err := db.View(func(*bbolt.Tx) error { return nil }); err != nil {
		t.Fatalf("shared database closed by the host: %v", err)
	}
}

func mustMarshal(t testing.TB, env *record.Envelope) []byte {
	t.Helper()
	b, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAddressBookExpiry(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	connectedID := randomID(t)
	book, err := newAddressBook(addressBookConfig{
		self:      randomID(t),
		now:       clock.now,
		connected: func(id peer.ID) bool { return id == connectedID },
	})
	if err != nil {
		t.Fatal(err)
	}
	topic := topics.FromString("t")
	oldID, freshID, bootID, contactedID := randomID(t), randomID(t), randomID(t), randomID(t)
	for _, id := range []peer.ID{oldID, bootID, connectedID, contactedID} {
		if err := book.AddTopics(id, topic); err != nil {
			t.Fatal(err)
		}
	}
	if err := book.SetBootstrap(bootID, true); err != nil {
		t.Fatal(err)
	}
	clock.advance(10 * time.Hour)
	if err := book.AddTopics(freshID, topic); err != nil {
		t.Fatal(err)
	}
	if err := book.MarkSuccess(contactedID); err != nil {
		t.Fatal(err)
	}
	clock.advance(time.Hour)

	removed, err := book.Expire(clock.now().Add(-5 * time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []peer.ID{oldID}) {
		t.Fatalf("expired %v, want only %s", removed, oldID)
	}
	for _, id := range []peer.ID{freshID, bootID, connectedID, contactedID} {
		if _, ok := book.Get(id); !ok {
			t.Fatalf("%s expired", id)
		}
	}
}

func TestAddressBookEvictsLeastRecentlyActive(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	book, err := newAddressBook(addressBookConfig{self: randomID(t), now: clock.now, maxEntries: 2})
	if err != nil {
		t.Fatal(err)
	}
	topic := topics.FromString("t")
	boot, older, newer := randomID(t), randomID(t), randomID(t)
	if err := book.SetBootstrap(boot, true); err != nil {
		t.Fatal(err)
	}
	if err := book.AddTopics(older, topic); err != nil {
		t.Fatal(err)
	}
	clock.advance(time.Minute)
	if err := book.AddTopics(newer, topic); err != nil {
		t.Fatal(err)
	}
	if _, ok := book.Get(older); ok || book.Len() != 2 {
		t.Fatalf("older entry not evicted (len %d)", book.Len())
	}
	if _, ok := book.Get(boot); !ok {
		t.Fatal("bootstrap entry evicted")
	}
	// A book full of bootstrap nodes has nothing to evict.
	full, err := newAddressBook(addressBookConfig{self: randomID(t), maxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := full.SetBootstrap(randomID(t), true); err != nil {
		t.Fatal(err)
	}
	if err := full.AddTopics(randomID(t), topic); !errors.Is(err, ErrAddressBookFull) {
		t.Fatalf("full book of bootstrap nodes: %v, want ErrAddressBookFull", err)
	}
}

func TestAddressBookTopicsBounded(t *testing.T) {
	book, err := newAddressBook(addressBookConfig{self: randomID(t)})
	if err != nil {
		t.Fatal(err)
	}
	id := randomID(t)
	var first topics.Topic
	for i := range MaxTopicsPerNode + 10 {
		tp := topics.Derive(topics.FromString("bounded"), fmt.Sprint(i))
		if i == 0 {
			first = tp
		}
		if err := book.AddTopics(id, tp); err != nil {
			t.Fatal(err)
		}
	}
	e, _ := book.Get(id)
	if len(e.Topics) != MaxTopicsPerNode {
		t.Fatalf("%d topics kept, want %d", len(e.Topics), MaxTopicsPerNode)
	}
	if len(book.NodesForTopic(first)) != 0 {
		t.Fatal("oldest topic still indexed after being dropped")
	}
}

// TestIdentifyFeedsAddressBook: connecting two hosts puts each one's signed record into the
// other's book and the peerstore keeps the certified addresses.
func TestIdentifyFeedsAddressBook(t *testing.T) {
	a := newTestHost(t)
	b := newTestHost(t)
	if err := connect(t, a, b); err != nil {
		t.Fatal(err)
	}
	for _, pair := range [][2]*Host{{a, b}, {b, a}} {
		x, y := pair[0], pair[1]
		eventually(t, "identify to fill the address book", func() bool {
			e, ok := x.AddressBook().Get(y.ID())
			return ok && e.Record != nil && !e.LastSuccess.IsZero()
		})
		e, _ := x.AddressBook().Get(y.ID())
		for _, addr := range e.Addrs {
			if !slices.ContainsFunc(y.Libp2p().Addrs(), addr.Equal) {
				t.Fatalf("record address %s is not one of %v", addr, y.Libp2p().Addrs())
			}
		}
	}
}

// TestAddressBookStoredRecordAgain: the bytes of the stored record are accepted again
// without change, while the same bytes with a corrupted signature are still rejected (only
// byte-identical input skips verification).
func TestAddressBookStoredRecordAgain(t *testing.T) {
	book := newTestHost(t).AddressBook()
	key, id := newKey(t)
	data, err := signedRecord(t, key, id, 3, "/ip4/127.0.0.1/tcp/4001").Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := book.AddRecordBytes(data); err != nil || got != id {
		t.Fatalf("first add: %s, %v", got, err)
	}
	changes := book.Watch(t.Context())
	if got, err := book.AddRecordBytes(data); err != nil || got != id {
		t.Fatalf("same bytes again: %s, %v", got, err)
	}
	forged := bytes.Clone(data)
	forged[len(forged)-1] ^= 1
	if _, err := book.AddRecordBytes(forged); !errors.Is(err, ErrNotSigned) {
		t.Fatalf("stored record with a corrupted signature: %v, want ErrNotSigned", err)
	}
	select {
	case c := <-changes:
		t.Fatalf("re-adding the stored record changed the book: %+v", c)
	default:
	}
}
