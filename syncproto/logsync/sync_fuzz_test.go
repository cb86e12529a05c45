package logsync

import (
	"bytes"
	"testing"
)

// FuzzDecodeSyncMessage: any frame from a peer either decodes into a message within the
// protocol limits that re-encodes to the same bytes, or is rejected; it never panics.
func FuzzDecodeSyncMessage(f *testing.F) {
	op, _ := NewOperation(keyA, nil, []byte("seed"), nil, 1)
	seeds := []struct {
		kind uint64
		msg  any
	}{
		{kindHave, haveMsg{Logs: []haveEntry{{Author: make([]byte, 32), LogID: 1, Height: 3}}}},
		{kindPreSync, preSyncMsg{Ops: 2, Bytes: 300}},
		{kindOp, opMsg{LogID: 0, Header: op.HeaderBytes(), BodySize: 4, Body: op.Body}},
		{kindLive, opMsg{LogID: 0, Header: op.HeaderBytes(), BodySize: 10, Body: op.Body}},
		{kindChunk, chunkMsg{Data: []byte{1, 2, 3}}},
		{kindDone, doneMsg{}},
	}
	for _, s := range seeds {
		b, err := encodeMessage(s.kind, s.msg)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		kind, msg, err := decodeMessage(frame)
		if err != nil {
			return
		}
		again, err := encodeMessage(kind, msg)
		if err != nil || !bytes.Equal(again, frame) {
			t.Fatalf("accepted frame does not round-trip: %v", err)
		}
	})
}
