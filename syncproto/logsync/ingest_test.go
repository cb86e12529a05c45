package logsync

import (
	"context"
	"errors"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/lfnet/lfnet/syncproto"
	"github.com/lfnet/lfnet/topics"
)

func rawOf(op *Operation) rawOp {
	return rawOp{header: append([]byte(nil), op.HeaderBytes()...), body: append([]byte(nil), op.Body...)}
}

// The pipeline stores batches in order, stores nothing of the batch holding an invalid
// operation or after it, fails with ErrInvalidOperation, and reports every operation as
// received only once it is stored.
func TestIngestPipelineOrderAndValidation(t *testing.T) {
	// As in a session, the store stage's failure cancels the context the reader waits on.
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	store := NewMemStore()
	m := NewManager(store, topics.Random())
	s := newSession(m, syncproto.SessionInfo{ID: 1, Remote: peer.ID("remote")})
	s.cancel = cancel
	ops := chain(t, keyA, nil, 3*verifyBatchOps, "pipeline")
	var emitted []Hash
	emit := func(ev syncproto.Event) {
		if ev.Kind != syncproto.ItemReceived {
			return
		}
		e := ev.Item.(Entry)
		if ok, err := store.Has(context.Background(), e.Op.Hash()); err != nil || !ok {
			t.Errorf("ItemReceived for %s before it was stored", e.Op.Hash())
		}
		emitted = append(emitted, e.Op.Hash())
	}
	in := newIngester(ctx, s, emit)
	var batches [][]rawOp
	for i := 0; i < len(ops); i += verifyBatchOps {
		var b []rawOp
		for _, op := range ops[i : i+verifyBatchOps] {
			b = append(b, rawOf(op))
		}
		batches = append(batches, b)
	}
	// The middle batch carries a forged body half-way through.
	bad := verifyBatchOps / 2
	batches[1][bad].body[0] ^= 1
	var err error
	for _, b := range batches {
		if err = in.submit(ctx, b, false); err != nil {
			break
		}
	}
	if err == nil {
		err = in.flush(ctx)
	}
	in.close()
	if !errors.Is(err, ErrInvalidOperation) {
		t.Fatalf("pipeline error %v, want ErrInvalidOperation", err)
	}
	heights, herr := store.Heights(context.Background(), []LogRef{ops[0].Log(0)})
	if herr != nil {
		t.Fatal(herr)
	}
	if h := heights[ops[0].Log(0)]; h != verifyBatchOps {
		t.Fatalf("stored height %d, want the %d operations of the first batch only", h, verifyBatchOps)
	}
	if len(emitted) != verifyBatchOps {
		t.Fatalf("%d ItemReceived events, want %d", len(emitted), verifyBatchOps)
	}
	for i, h := range emitted {
		if h != ops[i].Hash() {
			t.Fatalf("event %d out of order", i)
		}
	}
}
