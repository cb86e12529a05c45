package logsync

import (
	"crypto/ed25519"
	"encoding/hex"
	"testing"

	"go.uber.org/goleak"

	"github.com/lfnet/lfnet/codec"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Fixed keys so that every signature in the tests, and so every vector, is reproducible
// (ed25519 signing is deterministic).
var (
	seedA = mustHex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
	seedB = mustHex("a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf")
	keyA  = ed25519.NewKeyFromSeed(seedA)
	keyB  = ed25519.NewKeyFromSeed(seedB)
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// Raw CBOR element builders for hand-made (and deliberately wrong) headers.

func cUint(v uint64) []byte { return codec.AppendUint(nil, v) }

func cBytes(b []byte) []byte {
	if len(b) < 24 {
		return append([]byte{0x40 | byte(len(b))}, b...)
	}
	return append([]byte{0x58, byte(len(b))}, b...)
}

func cArray(elems ...[]byte) []byte {
	out := []byte{0x80 | byte(len(elems))}
	for _, e := range elems {
		out = append(out, e...)
	}
	return out
}

// resign replaces the signature of a hand-made header with a valid one over the header
// without its signature element, so that a negative vector breaks only the rule it is
// about. It needs the v1 prefix layout: one-byte array head, one-byte version, 34-byte key
// element, 66-byte signature element.
func resign(raw []byte, priv ed25519.PrivateKey) []byte {
	const sigStart, sigEnd = fixedPrefixLen, fixedPrefixLen + signatureElemSz
	unsigned := append([]byte{raw[0] - 1}, raw[1:sigStart]...)
	unsigned = append(unsigned, raw[sigEnd:]...)
	out := append([]byte(nil), raw...)
	copy(out[sigStart+2:sigEnd], ed25519.Sign(priv, unsigned))
	return out
}

// headerElems returns the encoded elements of a header, for tests that rearrange them.
func headerElems(h *Header) [][]byte {
	elems := [][]byte{cUint(h.Version), cBytes(h.PublicKey[:]), cBytes(h.Signature[:]), cUint(h.PayloadSize)}
	if h.PayloadHash != nil {
		elems = append(elems, cBytes(h.PayloadHash[:]))
	}
	elems = append(elems, cUint(h.Timestamp), cUint(h.SeqNum))
	if h.Backlink != nil {
		elems = append(elems, cBytes(h.Backlink[:]))
	}
	ext := []byte(h.Extensions)
	if len(ext) == 0 {
		ext = []byte{cborNull}
	}
	return append(elems, ext)
}

// bodyPattern is the deterministic content of the large-body vector.
func bodyPattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}
