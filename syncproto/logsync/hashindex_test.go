package logsync

import (
	"context"
	"encoding/binary"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"go.etcd.io/bbolt"
)

// runSizes returns the sizes of the hash index's runs, oldest first.
func runSizes(t *testing.T, s *BoltStore) []uint64 {
	t.Helper()
	var sizes []uint64
	err := s.db.View(func(tx *bbolt.Tx) error {
		b, err := buckets(tx)
		if err != nil {
			return err
		}
		runs, err := b.byHash.list()
		for _, r := range runs {
			sizes = append(sizes, r.size)
		}
		if n := indexedIDs(t, tx); err == nil && n != uint64(tx.Bucket(bucketEntries).Stats().KeyN) {
			t.Errorf("%d ids indexed, %d entries", n, tx.Bucket(bucketEntries).Stats().KeyN)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return sizes
}

// TestBoltHashIndexRuns: batches of every size leave a few runs whose sizes more than
// halve from oldest to newest, every operation is found through them, and pruning takes
// the pruned ids out.
func TestBoltHashIndexRuns(t *testing.T) {
	ctx := context.Background()
	s := openBolt(t, filepath.Join(t.TempDir(), "s.db"))
	ops := chain(t, keyA, nil, 400, "runs")
	for i, size := 0, 1; i < len(ops); size = size%9 + 1 {
		n := min(size, len(ops)-i)
		batch := make([]Entry, n)
		for j := range batch {
			batch[j] = Entry{ops[i+j], 1}
		}
		if _, err := s.InsertBatch(ctx, batch); err != nil {
			t.Fatal(err)
		}
		i += n
		sizes := runSizes(t, s)
		for k := 1; k < len(sizes); k++ {
			if sizes[k-1] < 2*sizes[k] {
				t.Fatalf("after %d operations: run sizes %v do not halve", i, sizes)
			}
		}
	}
	if sizes := runSizes(t, s); len(sizes) > 9 {
		t.Fatalf("%d runs for %d operations: %v", len(sizes), len(ops), sizes)
	}
	for _, op := range ops {
		if got, ok, err := s.Get(ctx, op.Hash()); !ok || err != nil || got.Hash() != op.Hash() {
			t.Fatalf("Get seq %d: %t, %v", op.Header.SeqNum, ok, err)
		}
	}
	if _, err := s.DeletePrefix(ctx, logA1, 150); err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		has, err := s.Has(ctx, op.Hash())
		if err != nil || has != (op.Header.SeqNum >= 150) {
			t.Fatalf("Has seq %d after pruning below 150: %t, %v", op.Header.SeqNum, has, err)
		}
	}
	runSizes(t, s) // sizes still match the runs
}

// TestBoltHashIndexMergeCap: runs that reached the cap are not merged into.
func TestBoltHashIndexMergeCap(t *testing.T) {
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "s.db"), 0o600, BoltOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := NewBoltStore(db); err != nil {
		t.Fatal(err)
	}
	var n uint32
	err = db.Update(func(tx *bbolt.Tx) error {
		b, err := buckets(tx)
		if err != nil {
			return err
		}
		b.byHash.cap = 8
		for range 40 {
			var id Hash
			n++
			binary.BigEndian.PutUint32(id[:], n)
			if err := b.byHash.add([]indexEntry{{id: id, key: []byte{1}}}); err != nil {
				return err
			}
		}
		runs, err := b.byHash.list()
		if err != nil {
			return err
		}
		var sizes []uint64
		for _, r := range runs {
			sizes = append(sizes, r.size)
		}
		// Below the cap the runs count in binary (1, 2, 4, 8); a run of 8 is final.
		if want := []uint64{8, 8, 8, 8, 8}; !slices.Equal(sizes, want) {
			t.Errorf("run sizes %v with cap 8", sizes)
		}
		for i := uint32(1); i <= n; i++ {
			var id Hash
			binary.BigEndian.PutUint32(id[:], i)
			if v, err := b.byHash.get(id[:]); err != nil || v == nil {
				t.Errorf("id %d not found: %v", i, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBoltStoreRefusesOtherFormats: a database of format 1 (before the meta bucket) or of
// an unknown format is refused with a typed error, and left as it was.
func TestBoltStoreRefusesOtherFormats(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(tx *bbolt.Tx) error
		found uint64
	}{
		{"format 1", func(tx *bbolt.Tx) error {
			for _, name := range []string{"logsync/entries", "logsync/byhash", "logsync/heads", "logsync/topics"} {
				if _, err := tx.CreateBucket([]byte(name)); err != nil {
					return err
				}
			}
			return nil
		}, 1},
		{"format 3", func(tx *bbolt.Tx) error {
			b, err := tx.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			return b.Put(metaFormat, binary.BigEndian.AppendUint64(nil, 3))
		}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.db")
			db, err := bbolt.Open(path, 0o600, BoltOptions())
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(tc.setup); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			_, err = OpenBoltStore(path)
			var fe *FormatError
			if !errors.Is(err, ErrStoreFormat) || !errors.As(err, &fe) || fe.Found != tc.found || fe.Want != boltFormat {
				t.Fatalf("open: %v", err)
			}
		})
	}
}
