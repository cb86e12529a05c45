package discovery

import (
	"testing"

	"github.com/lfnet/lfnet/codec"
)

// FuzzDecodeMessage: frames from a peer never panic the decoder and every accepted message
// respects the protocol limits.
func FuzzDecodeMessage(f *testing.F) {
	tok := make([]byte, tokenSize)
	for kind, msg := range map[uint64]any{
		kindHello:   helloMsg{Salt: make([]byte, saltSize)},
		kindOffer:   offerMsg{Salt: make([]byte, saltSize), Tokens: [][]byte{tok}},
		kindMatch:   matchMsg{Tokens: [][]byte{tok}},
		kindRecords: recordsMsg{Records: []recordEntry{{Record: []byte{1, 2, 3}, Tokens: [][]byte{tok}}}},
	} {
		b, err := codec.MarshalTagged(kind, msg)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		for kind := uint64(kindHello); kind <= kindRecords; kind++ {
			m, err := decodeMessage(frame, kind)
			if err != nil {
				continue
			}
			if r, ok := m.(recordsMsg); ok && len(r.Records) > MaxRecords {
				t.Fatal("records over the limit accepted")
			}
		}
	})
}
