package logsync

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecodeOperation: DecodeOperation never panics, every rejection carries exactly one
// of the decode sentinels, and whatever it accepts re-encodes to the identical bytes.
func FuzzDecodeOperation(f *testing.F) {
	vectors := loadVectors(f)
	for _, v := range vectors.Valid {
		f.Add(mustHex(v.HeaderHex), v.body(), true)
		f.Add(mustHex(v.HeaderHex), []byte(nil), false)
	}
	for _, v := range vectors.Invalid {
		var body []byte
		if v.BodyHex != nil {
			body = mustHex(*v.BodyHex)
		}
		f.Add(mustHex(v.HeaderHex), body, v.BodyHex != nil)
	}
	f.Fuzz(func(t *testing.T, header, body []byte, withBody bool) {
		if !withBody {
			body = nil
		} else if body == nil {
			body = []byte{}
		}
		op, err := DecodeOperation(header, body)
		if err != nil {
			matched := 0
			for _, sentinel := range decodeErrors {
				if errors.Is(err, sentinel) {
					matched++
				}
			}
			if matched != 1 {
				t.Fatalf("error matches %d decode sentinels: %v", matched, err)
			}
			return
		}
		if !bytes.Equal(op.HeaderBytes(), header) || !bytes.Equal(op.Header.Encode(), header) {
			t.Fatalf("accepted header re-encodes differently:\n in  %x\n out %x", header, op.Header.Encode())
		}
		if op.Hash() != HashOf(header) {
			t.Fatal("hash is not blake3 of the header bytes")
		}
		if withBody != (op.Body != nil) || (withBody && !bytes.Equal(op.Body, body)) {
			t.Fatal("body not kept as given")
		}
		again, err := DecodeOperation(op.HeaderBytes(), op.Body)
		if err != nil || again.Hash() != op.Hash() {
			t.Fatalf("accepted operation does not decode again: %v", err)
		}
	})
}
