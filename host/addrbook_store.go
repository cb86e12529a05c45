package host

import (
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.etcd.io/bbolt"

	"github.com/lfnet/lfnet/codec"
	"github.com/lfnet/lfnet/topics"
)

// Bucket names; every bucket of this package starts with "addrbook/" so the node's other
// subsystems can share the database file.
var (
	bucketNodes = []byte("addrbook/nodes")
	bucketMeta  = []byte("addrbook/meta")
	keyVersion  = []byte("version")
)

// storeVersion is the schema version of the stored entries.
const storeVersion = 1

// ErrStore wraps failures of the address book's database.
var ErrStore = errors.New("host: address book store")

// storedEntry is an entry as persisted: the signed envelope bytes (verified again on load,
// the database is not trusted more than the network) and local metadata.
type storedEntry struct {
	_           struct{} `cbor:",toarray"`
	Record      []byte
	Bootstrap   bool
	Topics      []topics.Topic
	LastSeen    int64
	LastSuccess int64
	LastFailure int64
	Failures    uint32
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func encodeEntry(e *entry) ([]byte, error) {
	return codec.Marshal(storedEntry{
		Record:      e.raw,
		Bootstrap:   e.bootstrap,
		Topics:      e.topics,
		LastSeen:    unixNano(e.lastSeen),
		LastSuccess: unixNano(e.lastSuccess),
		LastFailure: unixNano(e.lastFailure),
		Failures:    e.failures,
	})
}

// decodeEntry parses and verifies one stored entry. A record that fails verification or
// belongs to another node is an error: the caller drops the whole entry.
func decodeEntry(key, value []byte) (peer.ID, *entry, error) {
	id, err := peer.IDFromBytes(key)
	if err != nil {
		return "", nil, fmt.Errorf("%w: bad key: %v", ErrStore, err)
	}
	var s storedEntry
	if err := codec.Unmarshal(value, &s); err != nil {
		return id, nil, fmt.Errorf("%w: entry %s: %w", ErrStore, id, err)
	}
	if len(s.Topics) > MaxTopicsPerNode {
		return id, nil, fmt.Errorf("%w: entry %s: %d topics", ErrStore, id, len(s.Topics))
	}
	e := &entry{
		bootstrap:   s.Bootstrap,
		topics:      s.Topics,
		lastSeen:    fromUnixNano(s.LastSeen),
		lastSuccess: fromUnixNano(s.LastSuccess),
		lastFailure: fromUnixNano(s.LastFailure),
		failures:    s.Failures,
	}
	if len(s.Record) > 0 {
		env, rec, err := verifyRecord(s.Record)
		if err != nil {
			return id, nil, fmt.Errorf("%w: entry %s: %w", ErrStore, id, err)
		}
		if rec.PeerID != id {
			return id, nil, fmt.Errorf("%w: entry %s holds the record of %s", ErrStore, id, rec.PeerID)
		}
		e.env, e.raw, e.rec = env, s.Record, rec
	}
	if e.empty() {
		return id, nil, fmt.Errorf("%w: entry %s is empty", ErrStore, id)
	}
	return id, e, nil
}

// load reads all entries, dropping (and deleting) those that no longer verify.
func (b *AddressBook) load() error {
	var bad [][]byte
	err := b.db.Update(func(tx *bbolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if v := meta.Get(keyVersion); v != nil {
			if len(v) != 1 || v[0] != storeVersion {
				return fmt.Errorf("unsupported address book version %v", v)
			}
		} else if err := meta.Put(keyVersion, []byte{storeVersion}); err != nil {
			return err
		}
		nodes, err := tx.CreateBucketIfNotExists(bucketNodes)
		if err != nil {
			return err
		}
		err = nodes.ForEach(func(k, v []byte) error {
			id, e, err := decodeEntry(k, v)
			if err != nil {
				b.log.Warn("dropping invalid address book entry", "err", err)
				bad = append(bad, append([]byte(nil), k...))
				return nil
			}
			if id == b.self || len(b.entries) >= b.maxEntries {
				bad = append(bad, append([]byte(nil), k...))
				return nil
			}
			b.entries[id] = e
			b.index(id, e)
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range bad {
			if err := nodes.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: load: %w", ErrStore, err)
	}
	return nil
}

func (b *AddressBook) persist(id peer.ID, e *entry) error {
	if b.db == nil {
		return nil
	}
	value, err := encodeEntry(e)
	if err != nil {
		return fmt.Errorf("%w: encode %s: %w", ErrStore, id, err)
	}
	err = b.db.Update(func(tx *bbolt.Tx) error {
		nodes, err := tx.CreateBucketIfNotExists(bucketNodes)
		if err != nil {
			return err
		}
		return nodes.Put([]byte(id), value)
	})
	if err != nil {
		return fmt.Errorf("%w: write %s: %w", ErrStore, id, err)
	}
	return nil
}

func (b *AddressBook) persistDelete(id peer.ID) error {
	if b.db == nil {
		return nil
	}
	err := b.db.Update(func(tx *bbolt.Tx) error {
		nodes := tx.Bucket(bucketNodes)
		if nodes == nil {
			return nil
		}
		return nodes.Delete([]byte(id))
	})
	if err != nil {
		return fmt.Errorf("%w: delete %s: %w", ErrStore, id, err)
	}
	return nil
}
