package logsync

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/lfnet/lfnet/codec"
)

func mustOp(t testing.TB, prev *Operation, body string, ext codec.RawMessage, ts uint64) *Operation {
	t.Helper()
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	op, err := NewOperation(keyA, prev, b, ext, ts)
	if err != nil {
		t.Fatal(err)
	}
	return op
}

func TestChainRoundTrip(t *testing.T) {
	var prev *Operation
	for i := range 40 {
		body := bytes.Repeat([]byte{byte(i)}, i*7)
		op, err := NewOperation(keyA, prev, body, nil, uint64(1000+i))
		if err != nil {
			t.Fatal(err)
		}
		if op.Header.SeqNum != uint64(i) || (i > 0) != (op.Header.Backlink != nil) {
			t.Fatalf("op %d: seq %d backlink %v", i, op.Header.SeqNum, op.Header.Backlink)
		}
		if i > 0 && *op.Header.Backlink != prev.Hash() {
			t.Fatalf("op %d: backlink is not the previous hash", i)
		}
		dec, err := DecodeOperation(op.HeaderBytes(), op.Body)
		if err != nil {
			t.Fatalf("op %d: %v", i, err)
		}
		if dec.Hash() != op.Hash() || !reflect.DeepEqual(dec.Header, op.Header) {
			t.Fatalf("op %d: decoded operation differs", i)
		}
		prev = op
	}
}

// Every integer width takes the shortest form, and the parser reads each back.
func TestIntegerWidths(t *testing.T) {
	for _, v := range []uint64{0, 23, 24, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxUint64} {
		backlink := HashOf([]byte("prev"))
		body := []byte("x")
		payloadHash := HashOf(body)
		h := Header{Version: 1, PayloadSize: 1, PayloadHash: &payloadHash, Timestamp: v, SeqNum: v}
		if v > 0 {
			h.Backlink = &backlink
		}
		if err := h.Sign(keyA); err != nil {
			t.Fatal(err)
		}
		enc := h.Encode()
		if err := codec.CheckCanonical(enc); err != nil {
			t.Fatalf("%d: encoding not canonical: %v", v, err)
		}
		if len(enc) != h.encodedLen(true) {
			t.Fatalf("%d: encodedLen %d, encoded %d bytes", v, h.encodedLen(true), len(enc))
		}
		op, err := DecodeOperation(enc, body)
		if err != nil {
			t.Fatalf("%d: %v", v, err)
		}
		if op.Header.Timestamp != v || op.Header.SeqNum != v {
			t.Fatalf("%d: decoded timestamp %d seq %d", v, op.Header.Timestamp, op.Header.SeqNum)
		}
	}
}

func TestExtensionsPreservedByteForByte(t *testing.T) {
	items := map[string]string{
		"uint":        "07",
		"negative":    "3863",
		"text":        "6568656c6c6f",
		"bytes":       "43010203",
		"array":       "8301820203a0",
		"nested map":  "a2616101616ba1616201",
		"tag":         "c11a5f5e1000",
		"float16":     "f93e00",
		"true":        "f5",
		"empty array": "80",
		"large map":   "a3016178026179036178",
	}
	for name, item := range items {
		ext := mustHex(item)
		if err := codec.CheckCanonical(ext); err != nil {
			t.Fatalf("%s: test item not canonical: %v", name, err)
		}
		op := mustOp(t, nil, "body", ext, 1)
		dec, err := DecodeOperation(op.HeaderBytes(), op.Body)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(dec.Header.Extensions, ext) {
			t.Fatalf("%s: extensions %x, want %x", name, dec.Header.Extensions, ext)
		}
		if !bytes.Equal(dec.Header.Encode(), op.HeaderBytes()) {
			t.Fatalf("%s: re-encoding differs", name)
		}
	}
}

func TestNullExtensionsMeanNone(t *testing.T) {
	op := mustOp(t, nil, "", codec.RawMessage{cborNull}, 1)
	if op.Header.Extensions != nil {
		t.Fatalf("null extensions kept as %x", op.Header.Extensions)
	}
	if last := op.HeaderBytes()[len(op.HeaderBytes())-1]; last != cborNull {
		t.Fatalf("header ends with %#x, want null", last)
	}
}

func TestNewOperationRejectsBadInput(t *testing.T) {
	for name, ext := range map[string]string{
		"unsorted map":   "a2616201616102",
		"trailing bytes": "0101",
		"truncated":      "43 0102",
	} {
		_, err := NewOperation(keyA, nil, nil, mustHex(removeSpaces(ext)), 1)
		if err == nil {
			t.Errorf("%s extensions accepted", name)
		}
	}
	if _, err := NewOperation(keyA, nil, nil, mustHex("a2616201616102"), 1); !errors.Is(err, codec.ErrNonCanonical) {
		t.Errorf("unsorted map: %v, want codec.ErrNonCanonical", err)
	}
	first := mustOp(t, nil, "", nil, 1)
	if _, err := NewOperation(keyB, first, nil, nil, 2); err == nil {
		t.Error("operation extending another author's log accepted")
	}
	if _, err := NewOperation(keyA[:10], nil, nil, nil, 2); err == nil {
		t.Error("short private key accepted")
	}
}

func removeSpaces(s string) string { return string(bytes.ReplaceAll([]byte(s), []byte(" "), nil)) }

// DecodeOperation must not keep the caller's buffers: frame readers reuse them.
func TestDecodeCopiesInput(t *testing.T) {
	op := mustOp(t, nil, "some body", mustHex("a1616101"), 1)
	header, body := bytes.Clone(op.HeaderBytes()), bytes.Clone(op.Body)
	dec, err := DecodeOperation(header, body)
	if err != nil {
		t.Fatal(err)
	}
	clear(header)
	clear(body)
	if !bytes.Equal(dec.HeaderBytes(), op.HeaderBytes()) || !bytes.Equal(dec.Body, op.Body) ||
		!bytes.Equal(dec.Header.Extensions, op.Header.Extensions) || !bytes.Equal(dec.Header.Encode(), op.HeaderBytes()) {
		t.Fatal("decoded operation changed when the input buffers were reused")
	}
}

func TestHeaderOnlyStillChecksPayloadFields(t *testing.T) {
	op := mustOp(t, nil, "hello", nil, 1)
	h := op.Header
	h.PayloadHash = nil
	if err := h.Sign(keyA); err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeOperation(h.Encode(), nil); !errors.Is(err, ErrPayloadMismatch) {
		t.Fatalf("header-only decode of size without hash: %v", err)
	}
}

func TestSigningBytesExcludeSignature(t *testing.T) {
	op := mustOp(t, nil, "hello", nil, 1)
	signing := op.Header.SigningBytes()
	full := op.HeaderBytes()
	if len(full)-len(signing) != signatureElemSz || signing[0] != full[0]-1 {
		t.Fatalf("signing bytes %x do not drop the signature element of %x", signing, full)
	}
}

func TestStrings(t *testing.T) {
	var h Hash
	h[0] = 0xab
	if s := h.String(); len(s) != 64 || s[:2] != "ab" {
		t.Fatalf("Hash.String() = %q", s)
	}
	ref := LogRef{Author: PublicKeyOf(keyA), LogID: 7}
	if s := ref.String(); s != ref.Author.String()[:8]+"/7" {
		t.Fatalf("LogRef.String() = %q", s)
	}
}
