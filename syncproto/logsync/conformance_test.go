package logsync

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/lfnet/lfnet/topics"
)

// runStoreConformance is the one behavioural suite every Store implementation must pass.
func runStoreConformance(t *testing.T, newStore func(t *testing.T) Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"Empty", confEmpty},
		{"InsertChain", confInsertChain},
		{"Idempotent", confIdempotent},
		{"FirstMustBeSeqZero", confFirstMustBeSeqZero},
		{"Gap", confGap},
		{"Fork", confFork},
		{"SameOperationOtherLog", confSameOperationOtherLog},
		{"LogsIndependent", confLogsIndependent},
		{"MissingBody", confMissingBody},
		{"RangeBounds", confRangeBounds},
		{"RangeManyChunks", confRangeManyChunks},
		{"RangeCallbackUsesStore", confRangeCallbackUsesStore},
		{"LargeBody", confLargeBody},
		{"DeletePrefix", confDeletePrefix},
		{"Batch", confBatch},
		{"BatchAllOrNothing", confBatchAllOrNothing},
		{"Topics", confTopics},
		{"ContextCancelled", confContextCancelled},
		{"Concurrent", confConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			tc.fn(t, s)
		})
	}
}

// chain builds n operations by priv extending prev (nil: from seq 0). salt makes chains of
// the same author differ, for forks.
func chain(t testing.TB, priv ed25519.PrivateKey, prev *Operation, n int, salt string) []*Operation {
	t.Helper()
	ops := make([]*Operation, 0, n)
	for range n {
		seq := uint64(0)
		if prev != nil {
			seq = prev.Header.SeqNum + 1
		}
		var body []byte
		if seq%3 != 2 { // every third operation has no body
			body = fmt.Appendf(nil, "%s body %d", salt, seq)
		}
		op, err := NewOperation(priv, prev, body, nil, 1_000_000+seq)
		if err != nil {
			t.Fatal(err)
		}
		ops = append(ops, op)
		prev = op
	}
	return ops
}

func insertAll(t testing.TB, s LogStore, logID uint64, ops []*Operation) {
	t.Helper()
	for _, op := range ops {
		inserted, err := s.Insert(context.Background(), op, logID)
		if err != nil {
			t.Fatalf("insert seq %d: %v", op.Header.SeqNum, err)
		}
		if !inserted {
			t.Fatalf("insert seq %d: reported as already stored", op.Header.SeqNum)
		}
	}
}

func collect(t testing.TB, s LogStore, log LogRef, after, until uint64) []*Operation {
	t.Helper()
	var out []*Operation
	err := s.Range(context.Background(), log, after, until, func(op *Operation) error {
		out = append(out, op)
		return nil
	})
	if err != nil {
		t.Fatalf("range (%d, %d]: %v", after, until, err)
	}
	return out
}

func sameOp(t testing.TB, got, want *Operation) {
	t.Helper()
	if got == nil {
		t.Fatalf("operation %s missing", want.Hash())
	}
	if got.Hash() != want.Hash() || !bytes.Equal(got.HeaderBytes(), want.HeaderBytes()) ||
		!bytes.Equal(got.Body, want.Body) || !reflect.DeepEqual(got.Header, want.Header) {
		t.Fatalf("stored operation differs from inserted one (seq %d)", want.Header.SeqNum)
	}
	// What a store hands out must still be a valid operation.
	if _, err := DecodeOperation(got.HeaderBytes(), nonNil(got.Body)); err != nil {
		t.Fatalf("stored operation does not decode: %v", err)
	}
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func wantSeqs(t testing.TB, ops []*Operation, seqs ...uint64) {
	t.Helper()
	got := make([]uint64, len(ops))
	for i, op := range ops {
		got[i] = op.Header.SeqNum
	}
	if len(seqs) == 0 {
		seqs = []uint64{}
	}
	if !reflect.DeepEqual(got, seqs) {
		t.Fatalf("seq nums %v, want %v", got, seqs)
	}
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s < to; s++ {
		out = append(out, s)
	}
	return out
}

func heightOf(t testing.TB, s LogStore, log LogRef) (uint64, bool) {
	t.Helper()
	h, err := s.Heights(context.Background(), []LogRef{log})
	if err != nil {
		t.Fatal(err)
	}
	height, ok := h[log]
	return height, ok
}

func wantChainErr(t testing.TB, err, kind error) {
	t.Helper()
	var ce *ChainError
	if !errors.Is(err, kind) || !errors.As(err, &ce) {
		t.Fatalf("error %v, want a *ChainError matching %v", err, kind)
	}
	other := ErrBrokenChain
	if kind == ErrBrokenChain {
		other = ErrMissingPredecessor
	}
	if errors.Is(err, other) {
		t.Fatalf("error %v matches both chain sentinels", err)
	}
	if !strings.Contains(ce.Error(), ce.Log.String()) {
		t.Fatalf("chain error %q does not name the log", ce.Error())
	}
}

var (
	authorA = PublicKeyOf(keyA)
	authorB = PublicKeyOf(keyB)
	logA1   = LogRef{Author: authorA, LogID: 1}
	logA2   = LogRef{Author: authorA, LogID: 2}
	logB1   = LogRef{Author: authorB, LogID: 1}
	logB2   = LogRef{Author: authorB, LogID: 2}
)

func confEmpty(t *testing.T, s Store) {
	ctx := context.Background()
	op := chain(t, keyA, nil, 1, "x")[0]
	if ok, err := s.Has(ctx, op.Hash()); ok || err != nil {
		t.Fatalf("Has on empty store: %t, %v", ok, err)
	}
	if got, ok, err := s.Get(ctx, op.Hash()); got != nil || ok || err != nil {
		t.Fatalf("Get on empty store: %v, %t, %v", got, ok, err)
	}
	if got, ok, err := s.Latest(ctx, logA1); got != nil || ok || err != nil {
		t.Fatalf("Latest on empty store: %v, %t, %v", got, ok, err)
	}
	if h, err := s.Heights(ctx, []LogRef{logA1, logB2}); len(h) != 0 || err != nil {
		t.Fatalf("Heights on empty store: %v, %v", h, err)
	}
	wantSeqs(t, collect(t, s, logA1, 0, 100))
	if n, b, err := s.RangeSize(ctx, logA1, 0, 100); n != 0 || b != 0 || err != nil {
		t.Fatalf("RangeSize on empty store: %d, %d, %v", n, b, err)
	}
	if n, err := s.DeletePrefix(ctx, logA1, 10); n != 0 || err != nil {
		t.Fatalf("DeletePrefix on empty store: %d, %v", n, err)
	}
	if r, err := s.Resolve(ctx, topics.FromString("none")); len(r) != 0 || err != nil {
		t.Fatalf("Resolve on empty store: %v, %v", r, err)
	}
}

func confInsertChain(t *testing.T, s Store) {
	ctx := context.Background()
	ops := chain(t, keyA, nil, 10, "a")
	insertAll(t, s, 1, ops)
	if h, ok := heightOf(t, s, logA1); !ok || h != 10 {
		t.Fatalf("height %d (%t), want 10", h, ok)
	}
	for _, op := range ops {
		if ok, err := s.Has(ctx, op.Hash()); !ok || err != nil {
			t.Fatalf("Has(seq %d) = %t, %v", op.Header.SeqNum, ok, err)
		}
		got, ok, err := s.Get(ctx, op.Hash())
		if !ok || err != nil {
			t.Fatalf("Get(seq %d): %t, %v", op.Header.SeqNum, ok, err)
		}
		sameOp(t, got, op)
	}
	latest, ok, err := s.Latest(ctx, logA1)
	if !ok || err != nil {
		t.Fatalf("Latest: %t, %v", ok, err)
	}
	sameOp(t, latest, ops[9])
	got := collect(t, s, logA1, 0, 10)
	wantSeqs(t, got, seqRange(0, 10)...)
	for i := range got {
		sameOp(t, got[i], ops[i])
	}
	// Another log id of the same author is a different, still empty, log.
	if _, ok := heightOf(t, s, logA2); ok {
		t.Fatal("log A/2 has a height")
	}
}

func confIdempotent(t *testing.T, s Store) {
	ctx := context.Background()
	ops := chain(t, keyA, nil, 5, "a")
	insertAll(t, s, 1, ops)
	for _, op := range ops {
		inserted, err := s.Insert(ctx, op, 1)
		if err != nil || inserted {
			t.Fatalf("re-insert seq %d: %t, %v", op.Header.SeqNum, inserted, err)
		}
	}
	inserted, err := s.InsertBatch(ctx, []Entry{{ops[3], 1}, {ops[4], 1}, {ops[4], 1}})
	if err != nil || !reflect.DeepEqual(inserted, []bool{false, false, false}) {
		t.Fatalf("re-insert batch: %v, %v", inserted, err)
	}
	if n, _, _ := s.RangeSize(ctx, logA1, 0, 100); n != 5 {
		t.Fatalf("%d operations stored after re-inserts, want 5", n)
	}
	if h, _ := heightOf(t, s, logA1); h != 5 {
		t.Fatalf("height %d after re-inserts, want 5", h)
	}
}

func confFirstMustBeSeqZero(t *testing.T, s Store) {
	ctx := context.Background()
	ops := chain(t, keyA, nil, 2, "a")
	_, err := s.Insert(ctx, ops[1], 1)
	wantChainErr(t, err, ErrMissingPredecessor)
	if ok, _ := s.Has(ctx, ops[1].Hash()); ok {
		t.Fatal("rejected operation stored")
	}
	if _, ok := heightOf(t, s, logA1); ok {
		t.Fatal("rejected operation created a log")
	}
}

func confGap(t *testing.T, s Store) {
	ctx := context.Background()
	ops := chain(t, keyA, nil, 6, "a")
	insertAll(t, s, 1, ops[:3])
	_, err := s.Insert(ctx, ops[5], 1)
	wantChainErr(t, err, ErrMissingPredecessor)
	if ok, _ := s.Has(ctx, ops[5].Hash()); ok {
		t.Fatal("operation after a gap stored")
	}
	if h, _ := heightOf(t, s, logA1); h != 3 {
		t.Fatalf("height %d, want 3", h)
	}
	// Once the gap fills, the same operations go in.
	insertAll(t, s, 1, ops[3:])
}

func confFork(t *testing.T, s Store) {
	ctx := context.Background()
	main := chain(t, keyA, nil, 3, "main")
	fork := chain(t, keyA, nil, 4, "fork")
	insertAll(t, s, 1, main)
	for _, op := range fork {
		// fork[3] has the right seq num but names fork[2] as its backlink; the others
		// compete for seq nums already taken.
		_, err := s.Insert(ctx, op, 1)
		wantChainErr(t, err, ErrBrokenChain)
		if ok, _ := s.Has(ctx, op.Hash()); ok {
			t.Fatalf("forking operation seq %d stored", op.Header.SeqNum)
		}
	}
	// A fork of the main chain at the next seq num: right seq, backlink to an older op.
	branch, err := NewOperation(keyA, main[1], []byte("branch"), nil, 9)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Insert(ctx, branch, 1)
	wantChainErr(t, err, ErrBrokenChain)
	if h, _ := heightOf(t, s, logA1); h != 3 {
		t.Fatalf("height %d after rejected forks, want 3", h)
	}
	latest, _, _ := s.Latest(ctx, logA1)
	sameOp(t, latest, main[2])
}

func confSameOperationOtherLog(t *testing.T, s Store) {
	ctx := context.Background()
	op := chain(t, keyA, nil, 1, "a")[0]
	insertAll(t, s, 1, []*Operation{op})
	_, err := s.Insert(ctx, op, 2)
	wantChainErr(t, err, ErrBrokenChain)
	if _, ok := heightOf(t, s, logA2); ok {
		t.Fatal("log A/2 created by a rejected insert")
	}
	// Within one batch, and for an author with more logs than a store may look into one by
	// one (BoltStore asks its hash index then).
	for _, logs := range []uint64{3, 12} {
		salt := fmt.Sprintf("many%d", logs)
		var batch []Entry
		base := 100 * logs // keyB's logs of this round only
		for id := base; id < base+logs; id++ {
			batch = append(batch, Entry{chain(t, keyB, nil, 1, fmt.Sprint(salt, id))[0], id})
		}
		dup := batch[1].Op
		if _, err := s.InsertBatch(ctx, append(batch, Entry{dup, base + 99})); !errors.Is(err, ErrBrokenChain) {
			t.Fatalf("%d logs: same operation in a new log of the batch: %v", logs, err)
		}
		if _, err := s.InsertBatch(ctx, batch); err != nil {
			t.Fatal(err)
		}
		_, err := s.Insert(ctx, dup, base+99)
		wantChainErr(t, err, ErrBrokenChain)
		_, err = s.Insert(ctx, batch[len(batch)-1].Op, base)
		wantChainErr(t, err, ErrBrokenChain)
		if ok, err := s.Insert(ctx, dup, base+1); ok || err != nil {
			t.Fatalf("%d logs: re-insert into its own log: %t, %v", logs, ok, err)
		}
	}
}

func confLogsIndependent(t *testing.T, s Store) {
	ctx := context.Background()
	a1 := chain(t, keyA, nil, 4, "a1")
	a2 := chain(t, keyA, nil, 2, "a2")
	b1 := chain(t, keyB, nil, 3, "b1")
	for i := range 4 {
		insertAll(t, s, 1, a1[i:i+1])
		if i < len(a2) {
			insertAll(t, s, 2, a2[i:i+1])
		}
		if i < len(b1) {
			insertAll(t, s, 1, b1[i:i+1])
		}
	}
	h, err := s.Heights(ctx, []LogRef{logA1, logA2, logB1, logB2})
	if err != nil {
		t.Fatal(err)
	}
	want := map[LogRef]uint64{logA1: 4, logA2: 2, logB1: 3}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("heights %v, want %v", h, want)
	}
	wantSeqs(t, collect(t, s, logB1, 0, 10), 0, 1, 2)
	wantSeqs(t, collect(t, s, logA2, 0, 10), 0, 1)
}

func confMissingBody(t *testing.T, s Store) {
	ctx := context.Background()
	ops := chain(t, keyA, nil, 3, "a") // seq 2 has no body
	headerOnly, err := DecodeOperation(ops[0].HeaderBytes(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Insert(ctx, headerOnly, 1); !errors.Is(err, ErrMissingBody) {
		t.Fatalf("header-only operation with payload: %v, want ErrMissingBody", err)
	}
	if _, ok := heightOf(t, s, logA1); ok {
		t.Fatal("operation without body stored")
	}
	if _, err := s.Insert(ctx, &Operation{}, 1); !errors.Is(err, ErrMalformed) {
		t.Fatalf("zero Operation: %v, want ErrMalformed", err)
	}
	insertAll(t, s, 1, ops[:2])
	// Without a payload there is no body to miss.
	empty, err := DecodeOperation(ops[2].HeaderBytes(), nil)
	if err != nil {
		t.Fatal(err)
	}
	insertAll(t, s, 1, []*Operation{empty})
}

func confRangeBounds(t *testing.T, s Store) {
	ctx := context.Background()
	ops := chain(t, keyA, nil, 20, "a")
	insertAll(t, s, 1, ops)
	for _, tc := range []struct{ after, until, from, to uint64 }{
		{0, 20, 0, 20},
		{5, 10, 5, 10},
		{0, 1, 0, 1},
		{19, 20, 19, 20},
		{18, 100, 18, 20},
		{0, 0, 0, 0},
		{10, 5, 0, 0},
		{20, 30, 0, 0},
	} {
		got := collect(t, s, logA1, tc.after, tc.until)
		wantSeqs(t, got, seqRange(tc.from, tc.to)...)
		var size uint64
		for _, op := range got {
			size += uint64(len(op.HeaderBytes()) + len(op.Body))
		}
		n, b, err := s.RangeSize(ctx, logA1, tc.after, tc.until)
		if err != nil || n != uint64(len(got)) || b != size {
			t.Fatalf("RangeSize(%d, %d) = %d, %d, %v; want %d, %d", tc.after, tc.until, n, b, err, len(got), size)
		}
	}
	// An error from the callback stops the walk and comes back.
	stop := errors.New("stop")
	calls := 0
	err := s.Range(ctx, logA1, 0, 20, func(*Operation) error {
		calls++
		if calls == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 3 {
		t.Fatalf("Range after callback error: %v after %d calls", err, calls)
	}
}

func confRangeManyChunks(t *testing.T, s Store) {
	ctx := context.Background()
	const n = 2*rangeChunkOps + 37
	ops := chain(t, keyA, nil, n, "a")
	entries := make([]Entry, len(ops))
	for i, op := range ops {
		entries[i] = Entry{Op: op, LogID: 1}
	}
	if _, err := s.InsertBatch(ctx, entries); err != nil {
		t.Fatal(err)
	}
	got := collect(t, s, logA1, 0, n)
	wantSeqs(t, got, seqRange(0, n)...)
	for i := 1; i < len(got); i++ {
		if *got[i].Header.Backlink != got[i-1].Hash() {
			t.Fatalf("range output breaks the chain at seq %d", i)
		}
	}
	wantSeqs(t, collect(t, s, logA1, rangeChunkOps-1, rangeChunkOps+1), rangeChunkOps-1, rangeChunkOps)
}

func confRangeCallbackUsesStore(t *testing.T, s Store) {
	ctx := context.Background()
	a := chain(t, keyA, nil, rangeChunkOps+10, "a")
	insertAll(t, s, 1, a[:rangeChunkOps+5])
	b := chain(t, keyB, nil, rangeChunkOps+5, "b")
	i := 0
	// Writing from inside the callback, also to the log being walked, must not deadlock.
	err := s.Range(ctx, logA1, 0, rangeChunkOps+5, func(op *Operation) error {
		if _, err := s.Insert(ctx, b[i], 1); err != nil {
			return err
		}
		if i < 5 {
			if _, err := s.Insert(ctx, a[rangeChunkOps+5+i], 1); err != nil {
				return err
			}
		}
		if _, ok, err := s.Get(ctx, op.Hash()); !ok || err != nil {
			return fmt.Errorf("get inside range: %t, %w", ok, err)
		}
		i++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if i != rangeChunkOps+5 {
		t.Fatalf("callback ran %d times, want %d", i, rangeChunkOps+5)
	}
	if h, _ := heightOf(t, s, logB1); h != rangeChunkOps+5 {
		t.Fatalf("log B/1 height %d", h)
	}
}

func confLargeBody(t *testing.T, s Store) {
	ctx := context.Background()
	var prev *Operation
	var ops []*Operation
	for i := range 3 {
		op, err := NewOperation(keyA, prev, bodyPattern(70_000+i), nil, uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		ops = append(ops, op)
		prev = op
	}
	insertAll(t, s, 1, ops)
	got, ok, err := s.Get(ctx, ops[1].Hash())
	if !ok || err != nil {
		t.Fatalf("Get: %t, %v", ok, err)
	}
	sameOp(t, got, ops[1])
	ranged := collect(t, s, logA1, 0, 3)
	for i := range ranged {
		sameOp(t, ranged[i], ops[i])
	}
	if _, b, _ := s.RangeSize(ctx, logA1, 0, 3); b < 3*70_000 {
		t.Fatalf("RangeSize bytes %d, want at least the bodies", b)
	}
	// Bodies around and above 256 KiB (BoltStore's chunk size), read back every way and
	// pruned.
	sizes := []int{256 << 10, 256<<10 + 1, 1 << 20, 3<<20 + 5, 100}
	for _, size := range sizes {
		op, err := NewOperation(keyA, prev, bodyPattern(size), nil, uint64(len(ops)))
		if err != nil {
			t.Fatal(err)
		}
		ops = append(ops, op)
		prev = op
	}
	insertAll(t, s, 1, ops[3:])
	n := uint64(len(ops))
	for i, op := range collect(t, s, logA1, 0, n) {
		sameOp(t, op, ops[i])
	}
	for _, op := range ops[3:] {
		got, ok, err := s.Get(ctx, op.Hash())
		if !ok || err != nil {
			t.Fatalf("Get %d-byte body: %t, %v", len(op.Body), ok, err)
		}
		sameOp(t, got, op)
	}
	latest, ok, err := s.Latest(ctx, logA1)
	if !ok || err != nil {
		t.Fatalf("Latest: %t, %v", ok, err)
	}
	sameOp(t, latest, ops[n-1])
	var want uint64
	for _, op := range ops[3:] {
		want += op.encodedSize()
	}
	if c, b, err := s.RangeSize(ctx, logA1, 3, n); c != n-3 || b != want || err != nil {
		t.Fatalf("RangeSize: %d operations, %d bytes, %v; want %d, %d", c, b, err, n-3, want)
	}
	if _, err := s.DeletePrefix(ctx, logA1, 6); err != nil {
		t.Fatal(err)
	}
	for i, op := range collect(t, s, logA1, 0, n) {
		sameOp(t, op, ops[6+i])
	}
}

func confDeletePrefix(t *testing.T, s Store) {
	ctx := context.Background()
	ops := chain(t, keyA, nil, 12, "a")
	insertAll(t, s, 1, ops[:10])
	n, err := s.DeletePrefix(ctx, logA1, 4)
	if err != nil || n != 4 {
		t.Fatalf("DeletePrefix(4) = %d, %v; want 4", n, err)
	}
	for i, op := range ops[:10] {
		has, _ := s.Has(ctx, op.Hash())
		_, found, _ := s.Get(ctx, op.Hash())
		if has != (i >= 4) || found != (i >= 4) {
			t.Fatalf("after pruning, seq %d: Has %t, Get found %t", i, has, found)
		}
	}
	if h, _ := heightOf(t, s, logA1); h != 10 {
		t.Fatalf("height %d after pruning, want 10", h)
	}
	wantSeqs(t, collect(t, s, logA1, 0, 10), seqRange(4, 10)...)
	wantSeqs(t, collect(t, s, logA1, 2, 6), 4, 5)
	if c, _, _ := s.RangeSize(ctx, logA1, 0, 10); c != 6 {
		t.Fatalf("RangeSize after pruning: %d, want 6", c)
	}
	// Pruning less than is already gone does nothing.
	if n, err := s.DeletePrefix(ctx, logA1, 3); n != 0 || err != nil {
		t.Fatalf("DeletePrefix(3) after DeletePrefix(4) = %d, %v", n, err)
	}
	// A pruned operation offered again is ignored, as is a fork inside the pruned prefix.
	if inserted, err := s.Insert(ctx, ops[2], 1); inserted || err != nil {
		t.Fatalf("re-insert of pruned op: %t, %v", inserted, err)
	}
	fork := chain(t, keyA, nil, 3, "fork")
	if inserted, err := s.Insert(ctx, fork[2], 1); inserted || err != nil {
		t.Fatalf("insert inside pruned prefix: %t, %v", inserted, err)
	}
	if ok, _ := s.Has(ctx, ops[2].Hash()); ok {
		t.Fatal("pruned operation came back")
	}
	// The chain continues after the pruned prefix.
	insertAll(t, s, 1, ops[10:11])
	// Pruning everything keeps the latest operation, so the log can still be extended.
	n, err = s.DeletePrefix(ctx, logA1, 1000)
	if err != nil || n != 6 {
		t.Fatalf("DeletePrefix(1000) = %d, %v; want 6", n, err)
	}
	latest, ok, err := s.Latest(ctx, logA1)
	if !ok || err != nil {
		t.Fatalf("Latest after pruning everything: %t, %v", ok, err)
	}
	sameOp(t, latest, ops[10])
	wantSeqs(t, collect(t, s, logA1, 0, 100), 10)
	insertAll(t, s, 1, ops[11:])
	if h, _ := heightOf(t, s, logA1); h != 12 {
		t.Fatalf("height %d, want 12", h)
	}
	_, err = s.Insert(ctx, fork[1], 1)
	if err != nil {
		t.Fatalf("fork inside pruned prefix: %v", err)
	}
	// Forks above the pruned prefix are still caught.
	forkHigh := chain(t, keyA, nil, 12, "fork")
	_, err = s.Insert(ctx, forkHigh[11], 1)
	wantChainErr(t, err, ErrBrokenChain)
}

func confBatch(t *testing.T, s Store) {
	ctx := context.Background()
	a := chain(t, keyA, nil, 5, "a")
	b := chain(t, keyB, nil, 3, "b")
	a2 := chain(t, keyA, nil, 2, "a2")
	insertAll(t, s, 1, a[:1])
	entries := []Entry{
		{a[0], 1}, // already stored
		{a[1], 1}, {b[0], 1}, {a[2], 1}, {a2[0], 2}, {b[1], 1},
		{a[2], 1}, // duplicate within the batch
		{a[3], 1}, {a[4], 1}, {b[2], 1}, {a2[1], 2},
	}
	inserted, err := s.InsertBatch(ctx, entries)
	if err != nil {
		t.Fatal(err)
	}
	want := []bool{false, true, true, true, true, true, false, true, true, true, true}
	if !reflect.DeepEqual(inserted, want) {
		t.Fatalf("inserted %v, want %v", inserted, want)
	}
	h, _ := s.Heights(ctx, []LogRef{logA1, logA2, logB1})
	if !reflect.DeepEqual(h, map[LogRef]uint64{logA1: 5, logA2: 2, logB1: 3}) {
		t.Fatalf("heights %v", h)
	}
	for i, op := range collect(t, s, logA1, 0, 5) {
		sameOp(t, op, a[i])
	}
	if got, err := s.InsertBatch(ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("empty batch: %v, %v", got, err)
	}
}

func confBatchAllOrNothing(t *testing.T, s Store) {
	ctx := context.Background()
	a := chain(t, keyA, nil, 6, "a")
	b := chain(t, keyB, nil, 2, "b")
	insertAll(t, s, 1, a[:1])
	_, err := s.InsertBatch(ctx, []Entry{{a[1], 1}, {b[0], 1}, {a[2], 1}, {a[4], 1}, {b[1], 1}})
	var be *BatchError
	if !errors.As(err, &be) || be.Index != 3 || !errors.Is(err, ErrMissingPredecessor) {
		t.Fatalf("batch with a gap: %v, want BatchError at index 3 matching ErrMissingPredecessor", err)
	}
	for _, op := range []*Operation{a[1], b[0], a[2], a[4], b[1]} {
		if ok, _ := s.Has(ctx, op.Hash()); ok {
			t.Fatalf("operation seq %d of a rejected batch stored", op.Header.SeqNum)
		}
	}
	h, _ := s.Heights(ctx, []LogRef{logA1, logB1})
	if !reflect.DeepEqual(h, map[LogRef]uint64{logA1: 1}) {
		t.Fatalf("heights after rejected batch %v", h)
	}
	fork := chain(t, keyA, nil, 3, "fork")
	_, err = s.InsertBatch(ctx, []Entry{{a[1], 1}, {fork[2], 1}})
	if !errors.As(err, &be) || be.Index != 1 || !errors.Is(err, ErrBrokenChain) {
		t.Fatalf("batch with a fork: %v", err)
	}
	// The same entries without the bad one go in.
	insertAll(t, s, 1, a[1:])
}

func confTopics(t *testing.T, s Store) {
	ctx := context.Background()
	t1, t2 := topics.FromString("one"), topics.FromString("two")
	for _, a := range []struct {
		topic  topics.Topic
		author PublicKey
		log    uint64
	}{{t1, authorA, 2}, {t1, authorA, 1}, {t1, authorB, 5}, {t1, authorA, 1}, {t2, authorB, 9}, {t1, authorA, 1 << 40}} {
		if err := s.Associate(ctx, a.topic, a.author, a.log); err != nil {
			t.Fatal(err)
		}
	}
	r1, err := s.Resolve(ctx, t1)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[PublicKey][]uint64{authorA: {1, 2, 1 << 40}, authorB: {5}}; !reflect.DeepEqual(r1, want) {
		t.Fatalf("Resolve(t1) = %v, want %v", r1, want)
	}
	r2, _ := s.Resolve(ctx, t2)
	if want := map[PublicKey][]uint64{authorB: {9}}; !reflect.DeepEqual(r2, want) {
		t.Fatalf("Resolve(t2) = %v, want %v", r2, want)
	}
	if r3, _ := s.Resolve(ctx, topics.FromString("three")); len(r3) != 0 {
		t.Fatalf("Resolve(unknown) = %v", r3)
	}
}

func confContextCancelled(t *testing.T, s Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	op := chain(t, keyA, nil, 1, "a")[0]
	if _, err := s.Insert(ctx, op, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Insert with cancelled context: %v", err)
	}
	if ok, _ := s.Has(context.Background(), op.Hash()); ok {
		t.Fatal("operation stored despite cancelled context")
	}
	insertAll(t, s, 1, []*Operation{op})
	err := s.Range(ctx, logA1, 0, 1, func(*Operation) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Range with cancelled context: %v", err)
	}
}

func confConcurrent(t *testing.T, s Store) {
	ctx := context.Background()
	const writers, perWriter = 4, 60
	chains := make([][]*Operation, writers)
	for w := range writers {
		priv := keyA
		if w%2 == 1 {
			priv = keyB
		}
		chains[w] = chain(t, priv, nil, perWriter, fmt.Sprint("w", w))
	}
	logOf := func(w int) LogRef { return chains[w][0].Log(uint64(10 + w)) }
	var all []LogRef
	for w := range writers {
		all = append(all, logOf(w))
	}
	done := make(chan struct{})
	errs := make(chan error, writers+2)
	var writersWG, readersWG sync.WaitGroup
	for w := range writers {
		writersWG.Add(1)
		go func() {
			defer writersWG.Done()
			ops := chains[w]
			for i := 0; i < len(ops); {
				if i%20 == 0 { // alternate batches and single inserts
					var batch []Entry
					for _, op := range ops[i:min(i+10, len(ops))] {
						batch = append(batch, Entry{op, uint64(10 + w)})
					}
					if _, err := s.InsertBatch(ctx, batch); err != nil {
						errs <- err
						return
					}
					i += len(batch)
					continue
				}
				if _, err := s.Insert(ctx, ops[i], uint64(10+w)); err != nil {
					errs <- err
					return
				}
				i++
			}
		}()
	}
	for range 2 {
		readersWG.Add(1)
		go func() {
			defer readersWG.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				heights, err := s.Heights(ctx, all)
				if err != nil {
					errs <- err
					return
				}
				for log, h := range heights {
					var next uint64
					err := s.Range(ctx, log, 0, h, func(op *Operation) error {
						if op.Header.SeqNum != next {
							return fmt.Errorf("range saw seq %d, want %d", op.Header.SeqNum, next)
						}
						next++
						return nil
					})
					if err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	writersWG.Wait()
	close(done)
	readersWG.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	heights, _ := s.Heights(ctx, all)
	for w := range writers {
		if heights[logOf(w)] != perWriter {
			t.Fatalf("log %d height %d, want %d", w, heights[logOf(w)], perWriter)
		}
	}
}
