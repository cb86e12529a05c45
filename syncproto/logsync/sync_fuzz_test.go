package logsync

import (
	"bytes"
	"reflect"
	"testing"
)

// FuzzDecodeSyncMessage: any frame from a peer either decodes into a message within the
// protocol limits that re-encodes to the same bytes, or is rejected; it never panics. The
// hand-read kinds (Op, Live, Chunk) accept exactly what the reflection codec accepts, with
// the same values.
func FuzzDecodeSyncMessage(f *testing.F) {
	op, _ := NewOperation(keyA, nil, []byte("seed"), nil, 1)
	seeds := []struct {
		kind uint64
		msg  any
	}{
		{kindHave, haveMsg{Logs: []haveEntry{{Author: make([]byte, 32), LogID: 1, Height: 3}}}},
		{kindPreSync, preSyncMsg{Ops: 2, Bytes: 300}},
		{kindOp, opMsg{LogID: 0, Header: op.HeaderBytes(), BodySize: 4, Body: op.Body}},
		{kindOp, opMsg{LogID: 7, Header: op.HeaderBytes(), BodySize: 0, Body: nil}},
		{kindLive, opMsg{LogID: 0, Header: op.HeaderBytes(), BodySize: 10, Body: op.Body}},
		{kindChunk, chunkMsg{Data: []byte{1, 2, 3}}},
		{kindDone, doneMsg{}},
		{kindAnnounce, idsMsg{IDs: [][]byte{make([]byte, 32), bytes.Repeat([]byte{7}, 32)}}},
		{kindGraft, idsMsg{IDs: [][]byte{bytes.Repeat([]byte{8}, 32)}}},
		{kindPrune, idsMsg{IDs: [][]byte{bytes.Repeat([]byte{9}, 32)}}},
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
		refKind, refMsg, refErr := decodeGeneric(frame)
		if (err == nil) != (refErr == nil) {
			t.Fatalf("decodeMessage error %v, reflection codec error %v", err, refErr)
		}
		if err != nil {
			return
		}
		if kind != refKind || !reflect.DeepEqual(msg, refMsg) {
			t.Fatalf("decodeMessage read %d %#v, reflection codec %d %#v", kind, msg, refKind, refMsg)
		}
		again, err := encodeMessage(kind, msg)
		if err != nil || !bytes.Equal(again, frame) {
			t.Fatalf("accepted frame does not round-trip: %v", err)
		}
	})
}

// The hand encoders write exactly what the reflection codec writes for the same message.
func TestHandEncodedFramesMatchCodec(t *testing.T) {
	op, err := NewOperation(keyA, nil, bytes.Repeat([]byte{1}, 300), nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []uint64{kindOp, kindLive} {
		for _, m := range []opMsg{
			{LogID: 0, Header: op.HeaderBytes(), BodySize: 300, Body: op.Body},
			{LogID: 1 << 40, Header: op.HeaderBytes(), BodySize: 1 << 20, Body: op.Body[:10]},
			{LogID: 3, Header: op.HeaderBytes(), BodySize: 0, Body: nil},
			{LogID: 3, Header: op.HeaderBytes(), BodySize: 0, Body: []byte{}},
		} {
			want, err := encodeMessage(kind, m)
			if err != nil {
				t.Fatal(err)
			}
			if got := appendOpMsg(nil, kind, m.LogID, m.Header, m.BodySize, m.Body); !bytes.Equal(got, want) {
				t.Fatalf("kind %d %+v: hand encoding differs", kind, m)
			}
		}
	}
	for _, data := range [][]byte{{1}, bytes.Repeat([]byte{2}, chunkSize)} {
		want, err := encodeMessage(kindChunk, chunkMsg{Data: data})
		if err != nil {
			t.Fatal(err)
		}
		if got := appendChunkMsg(nil, data); !bytes.Equal(got, want) {
			t.Fatalf("chunk of %d bytes: hand encoding differs", len(data))
		}
	}
}
