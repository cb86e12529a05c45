package logsync

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"

	"go.etcd.io/bbolt"
)

// The by-hash index maps each stored operation id to its entry key. Operation ids are
// random, so one B-tree keyed by id makes every transaction rewrite about
// min(operations, index leaves) random pages: for 100,000 operations bbolt wrote 6.9× the
// synced bytes, and it held each of those pages in memory until the commit.
//
// So the index is a set of runs, each a bucket of its own keyed by id, and a transaction
// writes its new ids as a new run, sorted and packed (sequential pages, no rewrites). To
// keep lookups to a few runs, a run is merged into the run before it while that one is
// less than twice its size: sizes then halve from the oldest run to the newest, there
// are at most about log2(operations) runs, and an id moves O(log n) times. A merge dirties
// its target's pages, so runs that reached mergeCap ids are no longer merged into: that
// bounds the pages (and memory) of one transaction; stores beyond mergeCap ids keep one
// run per mergeCap ids.
const mergeCap = 1 << 17

// indexEntry is an id and the entry key it maps to, owned by the transaction.
type indexEntry struct {
	id  Hash
	key []byte
}

// hashIndex is the index inside one transaction.
type hashIndex struct {
	runs  *bbolt.Bucket // run number (8 bytes, big endian) -> bucket of id -> entry key
	sizes *bbolt.Bucket // run number -> number of ids in the run (8 bytes, big endian)
	meta  *bbolt.Bucket
	cap   uint64 // mergeCap; tests set a smaller one
}

type runInfo struct {
	num  []byte
	size uint64
}

// list returns the runs, oldest first.
func (x hashIndex) list() ([]runInfo, error) {
	var out []runInfo
	c := x.sizes.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(k) != 8 || len(v) != 8 {
			return nil, fmt.Errorf("%w: hash index run record", ErrCorrupt)
		}
		out = append(out, runInfo{num: k, size: binary.BigEndian.Uint64(v)})
	}
	return out, nil
}

func (x hashIndex) run(num []byte) (*bbolt.Bucket, error) {
	b := x.runs.Bucket(num)
	if b == nil {
		return nil, fmt.Errorf("%w: hash index run %x missing", ErrCorrupt, num)
	}
	return b, nil
}

// get returns the entry key stored for id, or nil. The newest runs are searched first.
func (x hashIndex) get(id []byte) ([]byte, error) {
	c := x.sizes.Cursor()
	for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
		b, err := x.run(k)
		if err != nil {
			return nil, err
		}
		if v := b.Get(id); v != nil {
			return v, nil
		}
	}
	return nil, nil
}

// delete removes id from the run holding it, if any.
func (x hashIndex) delete(id []byte) error {
	runs, err := x.list()
	if err != nil {
		return err
	}
	for _, r := range slices.Backward(runs) {
		b, err := x.run(r.num)
		if err != nil {
			return err
		}
		if b.Get(id) == nil {
			continue
		}
		if r.size <= 1 {
			if err := x.runs.DeleteBucket(r.num); err != nil {
				return err
			}
			return x.sizes.Delete(r.num)
		}
		if err := b.Delete(id); err != nil {
			return err
		}
		return x.sizes.Put(r.num, binary.BigEndian.AppendUint64(nil, r.size-1))
	}
	return nil
}

var metaNextRun = []byte("next-run")

// add writes entries (ids not in the index yet) as a new run, then merges runs as the
// policy above says.
func (x hashIndex) add(entries []indexEntry) error {
	if len(entries) == 0 {
		return nil
	}
	slices.SortFunc(entries, func(a, b indexEntry) int { return bytes.Compare(a.id[:], b.id[:]) })
	var next uint64
	if v := x.meta.Get(metaNextRun); v != nil {
		if len(v) != 8 {
			return fmt.Errorf("%w: next hash index run", ErrCorrupt)
		}
		next = binary.BigEndian.Uint64(v)
	}
	num := binary.BigEndian.AppendUint64(nil, next)
	if err := x.meta.Put(metaNextRun, binary.BigEndian.AppendUint64(nil, next+1)); err != nil {
		return err
	}
	b, err := x.runs.CreateBucket(num)
	if err != nil {
		return err
	}
	b.FillPercent = 1.0 // written in key order, never into again unless merged into
	for i := range entries {
		if err := b.Put(entries[i].id[:], entries[i].key); err != nil {
			return err
		}
	}
	if err := x.sizes.Put(num, binary.BigEndian.AppendUint64(nil, uint64(len(entries)))); err != nil {
		return err
	}
	return x.merge()
}

// merge folds the newest run into the one before it while that one is below x.cap and
// less than twice the newest's size.
func (x hashIndex) merge() error {
	runs, err := x.list()
	if err != nil {
		return err
	}
	for len(runs) >= 2 {
		prev, last := runs[len(runs)-2], runs[len(runs)-1]
		if prev.size >= x.cap || prev.size >= 2*last.size {
			return nil
		}
		dst, err := x.run(prev.num)
		if err != nil {
			return err
		}
		src, err := x.run(last.num)
		if err != nil {
			return err
		}
		// Keys and values of src stay valid until the commit (bbolt frees its pages only
		// then, and copies them out if the commit remaps the file).
		c := src.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if err := dst.Put(k, v); err != nil {
				return err
			}
		}
		if err := x.runs.DeleteBucket(last.num); err != nil {
			return err
		}
		if err := x.sizes.Delete(last.num); err != nil {
			return err
		}
		size := prev.size + last.size
		if err := x.sizes.Put(prev.num, binary.BigEndian.AppendUint64(nil, size)); err != nil {
			return err
		}
		runs = runs[:len(runs)-1]
		runs[len(runs)-1].size = size
	}
	return nil
}
