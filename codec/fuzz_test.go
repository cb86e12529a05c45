package codec

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzCheckCanonical: arbitrary bytes never panic the checker, and whatever it accepts the
// decoder also accepts and re-encodes to the identical bytes.
func FuzzCheckCanonical(f *testing.F) {
	for _, s := range []string{"17", "a2616101616202", "83074201020f", "9f01ff", "fb3ff199999999999a", "c11a514b67b0", "f6"} {
		f.Add(mustHex(f, s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := CheckCanonical(data); err != nil {
			return
		}
		var v any
		if err := Unmarshal(data, &v); err != nil {
			// Some canonical items (e.g. tags whose content fxamacker validates) are
			// refused by the decoder; that is a rejection, not a bug.
			return
		}
		var raw RawMessage
		if err := Unmarshal(data, &raw); err != nil {
			t.Fatalf("canonical item refused as raw: %v", err)
		}
		if !bytes.Equal(raw, data) {
			t.Fatalf("raw message changed the bytes")
		}
	})
}

// FuzzReader: a hostile stream never panics the reader, and every frame it returns fits the
// limit.
func FuzzReader(f *testing.F) {
	f.Add([]byte{0x03, 0x01, 0x02, 0x03, 0x00})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{0x81, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data), 256)
		for {
			b, err := r.ReadFrame()
			if err != nil {
				if err != io.EOF && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrFrameTooLarge) && !errors.Is(err, ErrMalformed) {
					t.Fatalf("untyped error %v", err)
				}
				return
			}
			if len(b) > 256 {
				t.Fatalf("frame of %d bytes over the limit", len(b))
			}
		}
	})
}

// FuzzUnmarshalTagged: envelopes from the network never panic the decoder.
func FuzzUnmarshalTagged(f *testing.F) {
	b, _ := MarshalTagged(1, pair{A: 1, B: []byte{2}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		tg, err := UnmarshalTagged(data)
		if err != nil {
			return
		}
		again, err := MarshalTagged(tg.Kind, tg.Body)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted envelope does not round-trip: %v", err)
		}
	})
}
