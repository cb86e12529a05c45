package logsync

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/lfnet/lfnet/topics"
	"go.etcd.io/bbolt"
)

// Bucket names carry a "logsync/" prefix so that the store can share a database file with
// other subsystems (the node keeps its address book in the same file).
var (
	// entries: author | log id | seq num (big endian, so a log is one ordered key range)
	// -> id | uvarint header length | header | body, where a body of more than bodyChunk
	// bytes is not in the entry but in bodies.
	bucketEntries = []byte("logsync/entries")
	// bodies: entry key | chunk number (4 bytes, big endian) -> bodyChunk bytes of a body
	// (the last chunk: the rest).
	bucketBodies = []byte("logsync/bodies")
	// hashruns: run number -> bucket of id -> author | log id | seq num, the key of the
	// entry (the by-hash index, see hashindex.go).
	bucketHashRuns = []byte("logsync/hashruns")
	// hashrunsizes: run number -> number of ids in the run.
	bucketHashRunSizes = []byte("logsync/hashrunsizes")
	// heads: author | log id -> height | latest id | seq num of the oldest stored entry.
	bucketHeads = []byte("logsync/heads")
	// topics: topic | author | log id -> nothing.
	bucketTopics = []byte("logsync/topics")
	// meta: "format" -> the format version; "next-run" -> the next hash index run number.
	bucketMeta = []byte("logsync/meta")

	metaFormat = []byte("format")
)

// boltFormat is the version of the layout above. Format 1 (no meta bucket) kept the
// by-hash index in one bucket, "logsync/byhash".
const boltFormat = 2

const (
	entriesFillPercent = 1.0

	// bodyChunk is the largest body stored inside its entry, and the size of the chunks a
	// larger one is cut into. bbolt puts at least two values on a leaf, and an appending
	// transaction rewrites the log's last leaf: with 1 MiB bodies that rewrote 2-4 MiB per
	// commit (1.25x the synced bytes); with 256 KiB chunks it is at most 512 KiB.
	bodyChunk = 256 << 10

	logKeyLen   = len(PublicKey{}) + 8
	entryKeyLen = logKeyLen + 8
	headLen     = 8 + len(Hash{}) + 8
)

// BoltStore is a persistent Store in a bbolt database. Every change is one bbolt
// transaction, so a process killed at any point leaves either all or none of a call's
// writes on disk. It is safe for concurrent use.
type BoltStore struct {
	db    *bbolt.DB
	ownDB bool
}

var _ Store = (*BoltStore)(nil)

// NewBoltStore uses an already open database, creating the store's buckets if needed.
// Close leaves the database open for its owner.
func NewBoltStore(db *bbolt.DB) (*BoltStore, error) {
	err := db.Update(func(tx *bbolt.Tx) error {
		if err := checkFormat(tx); err != nil {
			return err
		}
		for _, name := range [][]byte{bucketEntries, bucketBodies, bucketHashRuns, bucketHashRunSizes, bucketHeads, bucketTopics} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("logsync: bolt store: %w", err)
	}
	return &BoltStore{db: db}, nil
}

// checkFormat refuses a database whose logsync buckets have another layout, and marks a
// new one with boltFormat.
func checkFormat(tx *bbolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		if tx.Bucket(bucketEntries) != nil {
			return &FormatError{Found: 1, Want: boltFormat}
		}
		var err error
		if meta, err = tx.CreateBucket(bucketMeta); err != nil {
			return fmt.Errorf("create bucket %s: %w", bucketMeta, err)
		}
		return meta.Put(metaFormat, binary.BigEndian.AppendUint64(nil, boltFormat))
	}
	v := meta.Get(metaFormat)
	if len(v) != 8 {
		return fmt.Errorf("%w: format version of %d bytes", ErrCorrupt, len(v))
	}
	if got := binary.BigEndian.Uint64(v); got != boltFormat {
		return &FormatError{Found: got, Want: boltFormat}
	}
	return nil
}

// BoltOptions are the bbolt options OpenBoltStore uses; callers that open a shared database
// themselves may start from them. The freelist is not written on every commit (bbolt
// rebuilds it when opening), which keeps commits small as the file grows; durability does
// not depend on it.
func BoltOptions() *bbolt.Options {
	return &bbolt.Options{
		// Bounds the wait for another process's lock on the file.
		Timeout:        10 * time.Second,
		NoFreelistSync: true,
		FreelistType:   bbolt.FreelistMapType,
	}
}

// OpenBoltStore opens (creating if needed) a database file that only this store uses.
// Close closes it.
func OpenBoltStore(path string) (*BoltStore, error) {
	db, err := bbolt.Open(path, 0o600, BoltOptions())
	if err != nil {
		return nil, fmt.Errorf("logsync: open %s: %w", path, err)
	}
	s, err := NewBoltStore(db)
	if err != nil {
		return nil, errors.Join(err, db.Close())
	}
	s.ownDB = true
	return s, nil
}

// Close closes the database if OpenBoltStore opened it.
func (s *BoltStore) Close() error {
	if !s.ownDB {
		return nil
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("logsync: close store: %w", err)
	}
	return nil
}

func logKey(log LogRef) []byte {
	k := make([]byte, logKeyLen, entryKeyLen)
	copy(k, log.Author[:])
	binary.BigEndian.PutUint64(k[len(log.Author):], log.LogID)
	return k
}

func entryKey(log LogRef, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(logKey(log), seq)
}

func encodeHead(h logHead) []byte {
	v := make([]byte, 0, headLen)
	v = binary.BigEndian.AppendUint64(v, h.height)
	v = append(v, h.latest[:]...)
	return binary.BigEndian.AppendUint64(v, h.firstStart)
}

func decodeHead(v []byte) (logHead, error) {
	if len(v) != headLen {
		return logHead{}, fmt.Errorf("%w: log head of %d bytes", ErrCorrupt, len(v))
	}
	var h logHead
	h.height = binary.BigEndian.Uint64(v)
	copy(h.latest[:], v[8:])
	h.firstStart = binary.BigEndian.Uint64(v[8+len(h.latest):])
	return h, nil
}

// encodeEntry returns op's entry value, with its body unless the body goes to chunks.
func encodeEntry(op *Operation) []byte {
	chunked := isChunked(op.Header.PayloadSize)
	if op.entry != nil {
		if chunked {
			return op.entry[:len(op.entry)-len(op.Body)]
		}
		return op.entry
	}
	v := make([]byte, 0, len(op.hash)+binary.MaxVarintLen64+len(op.headerBytes)+len(op.Body))
	v = append(v, op.hash[:]...)
	v = binary.AppendUvarint(v, uint64(len(op.headerBytes)))
	v = append(v, op.headerBytes...)
	if chunked {
		return v
	}
	return append(v, op.Body...)
}

// isChunked reports whether a body of size bytes is stored in bodies rather than in its
// entry; the header's payload size decides, so no flag is stored.
func isChunked(size uint64) bool { return size > bodyChunk }

func chunkKey(entryKey []byte, i uint32) []byte {
	return binary.BigEndian.AppendUint32(slices.Clip(entryKey), i)
}

// putBody stores a chunked body. bbolt keeps the values until the commit, which copies
// them into its pages: the body is not copied before.
func (b boltBuckets) putBody(key, body []byte) error {
	for i := 0; i*bodyChunk < len(body); i++ {
		chunk := body[i*bodyChunk : min((i+1)*bodyChunk, len(body))]
		if err := b.bodies.Put(chunkKey(key, uint32(i)), chunk); err != nil {
			return err
		}
	}
	return nil
}

// deleteBody removes a chunked body.
func (b boltBuckets) deleteBody(key []byte, size uint64) error {
	for i := uint64(0); i*bodyChunk < size; i++ {
		if err := b.bodies.Delete(chunkKey(key, uint32(i))); err != nil {
			return err
		}
	}
	return nil
}

// readBody copies a chunked body of size bytes out of the memory map.
func (b boltBuckets) readBody(key []byte, size uint64) ([]byte, error) {
	body := make([]byte, 0, size)
	for i := uint64(0); i*bodyChunk < size; i++ {
		chunk := b.bodies.Get(chunkKey(key, uint32(i)))
		if uint64(len(chunk)) != min(bodyChunk, size-i*bodyChunk) {
			return nil, fmt.Errorf("%w: body chunk %d of %x has %d bytes", ErrCorrupt, i, key, len(chunk))
		}
		body = append(body, chunk...)
	}
	return body, nil
}

// entryPrefixLen is the size of an entry value's id and header length.
func entryPrefixLen(headerLen int) int {
	return len(Hash{}) + uvarintLen(uint64(headerLen))
}

func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// newEntryBuffer returns a buffer laid out as an entry value for a header of headerLen
// bytes and a body of bodyLen bytes, with the header length written; the caller fills in
// header and body, then setEntryID once the id is known.
func newEntryBuffer(headerLen int, bodyLen uint64) (buf []byte, prefix int) {
	prefix = entryPrefixLen(headerLen)
	buf = make([]byte, prefix+headerLen, uint64(prefix+headerLen)+bodyLen)
	binary.PutUvarint(buf[len(Hash{}):], uint64(headerLen))
	return buf, prefix
}

// entry rebuilds the operation stored under key with entry value v, copying it out of
// bbolt's memory map (which is only valid inside the transaction).
func (b boltBuckets) entry(key, v []byte) (*Operation, error) {
	op, err := decodeEntry(v)
	if err != nil || !isChunked(op.Header.PayloadSize) {
		return op, err
	}
	if len(op.Body) != 0 {
		return nil, fmt.Errorf("%w: entry %x holds part of a chunked body", ErrCorrupt, key)
	}
	if op.Body, err = b.readBody(key, op.Header.PayloadSize); err != nil {
		return nil, err
	}
	return op, nil
}

// decodeEntry rebuilds an operation from an entry value alone, copying it out of bbolt's
// memory map; a chunked body is left empty.
func decodeEntry(v []byte) (*Operation, error) {
	if len(v) < len(Hash{}) {
		return nil, fmt.Errorf("%w: entry of %d bytes", ErrCorrupt, len(v))
	}
	v = slices.Clone(v)
	id := Hash(v[:len(Hash{})])
	rest := v[len(id):]
	hlen, n := binary.Uvarint(rest)
	if n <= 0 || hlen > uint64(len(rest)-n) {
		return nil, fmt.Errorf("%w: entry header length", ErrCorrupt)
	}
	header := rest[n : n+int(hlen) : n+int(hlen)]
	return decodeStored(id, header, rest[n+int(hlen):])
}

// entrySize is the header plus body size of an entry value, without copying it.
func entrySize(v []byte) (uint64, error) {
	if len(v) < len(Hash{}) {
		return 0, fmt.Errorf("%w: entry of %d bytes", ErrCorrupt, len(v))
	}
	hlen, n := binary.Uvarint(v[len(Hash{}):])
	if n <= 0 || hlen > uint64(len(v)-len(Hash{})-n) {
		return 0, fmt.Errorf("%w: entry header length", ErrCorrupt)
	}
	size := uint64(len(v) - len(Hash{}) - n)
	if size != hlen {
		return size, nil // the body is inside
	}
	// Header only: an empty body, or a chunked one, whose size the header gives.
	start := len(Hash{}) + n
	op, err := decodeStored(Hash{}, v[start:start+int(hlen)], nil)
	if err != nil {
		return 0, err
	}
	if isChunked(op.Header.PayloadSize) {
		size += op.Header.PayloadSize
	}
	return size, nil
}

func decodeLoc(v []byte) (LogRef, uint64, error) {
	if len(v) != entryKeyLen {
		return LogRef{}, 0, fmt.Errorf("%w: hash index entry of %d bytes", ErrCorrupt, len(v))
	}
	var log LogRef
	copy(log.Author[:], v)
	log.LogID = binary.BigEndian.Uint64(v[len(log.Author):])
	return log, binary.BigEndian.Uint64(v[logKeyLen:]), nil
}

type boltBuckets struct {
	entries, bodies, heads, topics *bbolt.Bucket
	byHash                         hashIndex
}

func buckets(tx *bbolt.Tx) (boltBuckets, error) {
	b := boltBuckets{
		entries: tx.Bucket(bucketEntries),
		bodies:  tx.Bucket(bucketBodies),
		heads:   tx.Bucket(bucketHeads),
		topics:  tx.Bucket(bucketTopics),
		byHash: hashIndex{
			runs:  tx.Bucket(bucketHashRuns),
			sizes: tx.Bucket(bucketHashRunSizes),
			meta:  tx.Bucket(bucketMeta),
			cap:   mergeCap,
		},
	}
	if b.entries == nil || b.bodies == nil || b.heads == nil || b.topics == nil || b.byHash.runs == nil ||
		b.byHash.sizes == nil || b.byHash.meta == nil {
		return b, fmt.Errorf("%w: buckets missing", ErrCorrupt)
	}
	// A log's entries are only ever appended at the end of its key range, so a page that
	// splits off is never written again: fill it completely (bbolt's default of half full
	// suits random inserts and would double the entries' pages).
	b.entries.FillPercent = entriesFillPercent
	return b, nil
}

func (b boltBuckets) head(log LogRef) (*logHead, error) {
	v := b.heads.Get(logKey(log))
	if v == nil {
		return nil, nil
	}
	h, err := decodeHead(v)
	if err != nil {
		return nil, err
	}
	return &h, nil
}

// Insert implements LogStore.
func (s *BoltStore) Insert(ctx context.Context, op *Operation, logID uint64) (bool, error) {
	inserted, err := s.InsertBatch(ctx, []Entry{{Op: op, LogID: logID}})
	if err != nil {
		return false, unwrapBatch(err)
	}
	return inserted[0], nil
}

// InsertBatch implements LogStore. The whole batch is one transaction (one fsync).
func (s *BoltStore) InsertBatch(ctx context.Context, entries []Entry) ([]bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	inserted := make([]bool, len(entries))
	if len(entries) == 0 {
		return inserted, nil
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b, err := buckets(tx)
		if err != nil {
			return err
		}
		// A batch usually extends one log many times: its head is read once and written
		// once, at the end, instead of for every entry.
		w := batchWrite{
			heads:   make(map[LogRef]*logHead),
			authors: make(map[PublicKey]*authorLogs),
			indexed: make(map[Hash][]byte, len(entries)),
		}
		for i, e := range entries {
			ok, err := b.insert(e, &w)
			if err != nil {
				return &BatchError{Index: i, Err: err}
			}
			inserted[i] = ok
		}
		heads := w.heads
		if err := b.byHash.add(w.index); err != nil {
			return err
		}
		for log, head := range heads {
			if err := b.heads.Put(logKey(log), encodeHead(*head)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		var be *BatchError
		if errors.As(err, &be) {
			return nil, be
		}
		return nil, fmt.Errorf("logsync: insert: %w", err)
	}
	return inserted, nil
}

// maxLogsChecked bounds how many other logs of an author insert looks into for a copy of
// the operation; beyond it, the hash index answers (one random lookup instead).
const maxLogsChecked = 8

// batchWrite is what one InsertBatch transaction keeps between its inserts.
type batchWrite struct {
	// heads holds the heads of the logs this transaction changed, written at the end.
	heads map[LogRef]*logHead
	// authors caches each author's logs for storedIn.
	authors map[PublicKey]*authorLogs
	// index is the new ids, added to the hash index as one run at the end; indexed maps
	// them to their entry keys for lookups before that.
	index   []indexEntry
	indexed map[Hash][]byte
}

// authorLogs is what a write transaction learned about one author's logs.
type authorLogs struct {
	ids []uint64 // log ids, including logs started in this transaction
	// many: more than maxLogsChecked logs, so ids is incomplete and the index is asked.
	many bool
}

// logsOf returns the author's logs, read once per transaction.
func (b boltBuckets) logsOf(author PublicKey, authors map[PublicKey]*authorLogs) *authorLogs {
	if a, ok := authors[author]; ok {
		return a
	}
	a := &authorLogs{}
	c := b.heads.Cursor()
	for k, _ := c.Seek(author[:]); k != nil && bytes.HasPrefix(k, author[:]); k, _ = c.Next() {
		if len(k) != logKeyLen {
			continue // not a log key; decodeHead reports corrupt heads where they are read
		}
		if len(a.ids) == maxLogsChecked {
			a.many = true
			break
		}
		a.ids = append(a.ids, binary.BigEndian.Uint64(k[len(author):]))
	}
	authors[author] = a
	return a
}

// storedIn returns the log that already holds op (the operation id covers author and seq
// num, so only the author's logs at that seq num can), or false. Looking in the logs
// themselves costs nothing for an author with one log, where the random-key hash index
// costs a B-tree search into pages no other operation of the batch touches.
func (b boltBuckets) storedIn(log LogRef, op *Operation, w *batchWrite) (LogRef, bool, error) {
	a := b.logsOf(log.Author, w.authors)
	if a.many {
		v := w.indexed[op.hash]
		if v == nil {
			var err error
			if v, err = b.byHash.get(op.hash[:]); err != nil || v == nil {
				return LogRef{}, false, err
			}
		}
		stored, _, err := decodeLoc(v)
		return stored, err == nil, err
	}
	for _, id := range a.ids {
		other := LogRef{Author: log.Author, LogID: id}
		v := b.entries.Get(entryKey(other, op.Header.SeqNum))
		if v == nil {
			continue
		}
		if len(v) < len(Hash{}) {
			return LogRef{}, false, fmt.Errorf("%w: entry of %d bytes", ErrCorrupt, len(v))
		}
		if Hash(v[:len(Hash{})]) == op.hash {
			return other, true, nil
		}
	}
	return LogRef{}, false, nil
}

// insert adds one entry inside a write transaction; bbolt shows a transaction its own
// writes, so later entries of a batch see earlier ones.
func (b boltBuckets) insert(e Entry, w *batchWrite) (bool, error) {
	op := e.Op
	if err := checkInsertable(op); err != nil {
		return false, err
	}
	log := op.Log(e.LogID)
	stored, found, err := b.storedIn(log, op, w)
	if err != nil {
		return false, err
	}
	if found {
		return false, alreadyIn(log, stored, op)
	}
	head, changed := w.heads[log]
	if !changed {
		var err error
		if head, err = b.head(log); err != nil {
			return false, err
		}
	}
	ignore, err := checkAppend(log, head, op)
	if err != nil || ignore {
		return false, err
	}
	if head == nil {
		head = &logHead{}
		if a := w.authors[log.Author]; !a.many {
			if len(a.ids) == maxLogsChecked {
				a.many = true
			} else {
				a.ids = append(a.ids, log.LogID)
			}
		}
	}
	w.heads[log] = head
	head.height = op.Header.SeqNum + 1
	head.latest = op.hash
	// bbolt keeps references to keys and values until commit, so each Put gets its own.
	key := entryKey(log, op.Header.SeqNum)
	if err := b.entries.Put(key, encodeEntry(op)); err != nil {
		return false, err
	}
	if isChunked(op.Header.PayloadSize) {
		if err := b.putBody(key, op.Body); err != nil {
			return false, err
		}
	}
	w.index = append(w.index, indexEntry{id: op.hash, key: key})
	w.indexed[op.hash] = key
	return true, nil
}

func (s *BoltStore) view(ctx context.Context, fn func(b boltBuckets) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.View(func(tx *bbolt.Tx) error {
		b, err := buckets(tx)
		if err != nil {
			return err
		}
		return fn(b)
	})
	if err != nil {
		return fmt.Errorf("logsync: bolt store: %w", err)
	}
	return nil
}

// Has implements LogStore.
func (s *BoltStore) Has(ctx context.Context, id Hash) (bool, error) {
	var found bool
	err := s.view(ctx, func(b boltBuckets) error {
		key, err := b.byHash.get(id[:])
		found = key != nil
		return err
	})
	return found, err
}

// Get implements LogStore.
func (s *BoltStore) Get(ctx context.Context, id Hash) (*Operation, bool, error) {
	var op *Operation
	err := s.view(ctx, func(b boltBuckets) error {
		key, err := b.byHash.get(id[:])
		if err != nil || key == nil {
			return err
		}
		v := b.entries.Get(key)
		if v == nil {
			return fmt.Errorf("%w: operation %s indexed but missing", ErrCorrupt, id)
		}
		op, err = b.entry(key, v)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return op, op != nil, nil
}

// Heights implements LogStore.
func (s *BoltStore) Heights(ctx context.Context, logs []LogRef) (map[LogRef]uint64, error) {
	out := make(map[LogRef]uint64, len(logs))
	err := s.view(ctx, func(b boltBuckets) error {
		for _, log := range logs {
			head, err := b.head(log)
			if err != nil {
				return err
			}
			if head != nil {
				out[log] = head.height
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Latest implements LogStore.
func (s *BoltStore) Latest(ctx context.Context, log LogRef) (*Operation, bool, error) {
	var op *Operation
	err := s.view(ctx, func(b boltBuckets) error {
		head, err := b.head(log)
		if err != nil || head == nil {
			return err
		}
		key := entryKey(log, head.height-1)
		v := b.entries.Get(key)
		if v == nil {
			return fmt.Errorf("%w: latest operation of log %s missing", ErrCorrupt, log)
		}
		op, err = b.entry(key, v)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return op, op != nil, nil
}

// forEntries walks the stored entries of log with seq num in [from, until) inside a read
// transaction; fn returns false to stop.
func (b boltBuckets) forEntries(log LogRef, from, until uint64, fn func(seq uint64, v []byte) (bool, error)) error {
	prefix := logKey(log)
	c := b.entries.Cursor()
	for k, v := c.Seek(entryKey(log, from)); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if len(k) != entryKeyLen {
			return fmt.Errorf("%w: entry key of %d bytes", ErrCorrupt, len(k))
		}
		seq := binary.BigEndian.Uint64(k[logKeyLen:])
		if seq >= until {
			return nil
		}
		more, err := fn(seq, v)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// Range implements LogStore. Each chunk is read in its own short transaction: a read
// transaction held while fn waits on a slow peer would block bbolt from growing the file,
// stalling every writer.
func (s *BoltStore) Range(ctx context.Context, log LogRef, after, until uint64, fn func(*Operation) error) error {
	next := after
	chunk := make([]*Operation, 0, rangeChunkOps)
	for next < until {
		chunk = chunk[:0]
		var size uint64
		err := s.view(ctx, func(b boltBuckets) error {
			return b.forEntries(log, next, until, func(seq uint64, v []byte) (bool, error) {
				op, err := b.entry(entryKey(log, seq), v)
				if err != nil {
					return false, err
				}
				chunk = append(chunk, op)
				size += op.encodedSize()
				return len(chunk) < rangeChunkOps && size < rangeChunkBytes, nil
			})
		})
		if err != nil {
			return err
		}
		if len(chunk) == 0 {
			return nil
		}
		for _, op := range chunk {
			if err := fn(op); err != nil {
				return err
			}
		}
		next = chunk[len(chunk)-1].Header.SeqNum + 1
	}
	return nil
}

// RangeSize implements LogStore.
func (s *BoltStore) RangeSize(ctx context.Context, log LogRef, after, until uint64) (uint64, uint64, error) {
	var count, total uint64
	err := s.view(ctx, func(b boltBuckets) error {
		return b.forEntries(log, after, until, func(_ uint64, v []byte) (bool, error) {
			size, err := entrySize(v)
			if err != nil {
				return false, err
			}
			count++
			total += size
			return true, nil
		})
	})
	if err != nil {
		return 0, 0, err
	}
	return count, total, nil
}

// DeletePrefix implements LogStore.
func (s *BoltStore) DeletePrefix(ctx context.Context, log LogRef, until uint64) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var deleted uint64
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b, err := buckets(tx)
		if err != nil {
			return err
		}
		head, err := b.head(log)
		if err != nil || head == nil {
			return err
		}
		until = min(until, head.height-1)
		if until <= head.firstStart {
			return nil
		}
		// Collect first: deleting under a live cursor would skip keys.
		var ids [][]byte
		chunked := make(map[uint64]uint64) // seq num -> body size, of chunked bodies
		err = b.forEntries(log, head.firstStart, until, func(seq uint64, v []byte) (bool, error) {
			op, err := decodeEntry(v)
			if err != nil {
				return false, err
			}
			ids = append(ids, slices.Clone(v[:len(Hash{})]))
			if isChunked(op.Header.PayloadSize) {
				chunked[seq] = op.Header.PayloadSize
			}
			return true, nil
		})
		if err != nil {
			return err
		}
		for seq := head.firstStart; seq < until; seq++ {
			if err := b.entries.Delete(entryKey(log, seq)); err != nil {
				return err
			}
		}
		for seq, size := range chunked {
			if err := b.deleteBody(entryKey(log, seq), size); err != nil {
				return err
			}
		}
		for _, id := range ids {
			if err := b.byHash.delete(id); err != nil {
				return err
			}
		}
		deleted = until - head.firstStart
		head.firstStart = until
		return b.heads.Put(logKey(log), encodeHead(*head))
	})
	if err != nil {
		return 0, fmt.Errorf("logsync: delete prefix of %s: %w", log, err)
	}
	return deleted, nil
}

// Associate implements TopicStore.
func (s *BoltStore) Associate(ctx context.Context, topic topics.Topic, author PublicKey, logID uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key := append(topic[:], logKey(LogRef{Author: author, LogID: logID})...)
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b, err := buckets(tx)
		if err != nil {
			return err
		}
		if b.topics.Get(key) != nil {
			return nil
		}
		return b.topics.Put(key, []byte{})
	})
	if err != nil {
		return fmt.Errorf("logsync: associate: %w", err)
	}
	return nil
}

// Resolve implements TopicStore.
func (s *BoltStore) Resolve(ctx context.Context, topic topics.Topic) (map[PublicKey][]uint64, error) {
	out := make(map[PublicKey][]uint64)
	err := s.view(ctx, func(b boltBuckets) error {
		c := b.topics.Cursor()
		for k, _ := c.Seek(topic[:]); k != nil && bytes.HasPrefix(k, topic[:]); k, _ = c.Next() {
			if len(k) != len(topic)+logKeyLen {
				return fmt.Errorf("%w: topic key of %d bytes", ErrCorrupt, len(k))
			}
			author := PublicKey(k[len(topic):])
			logID := binary.BigEndian.Uint64(k[len(topic)+len(author):])
			// Keys are sorted, so log ids arrive in ascending order per author.
			out[author] = append(out[author], logID)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
