package membership

import (
	"encoding/binary"
	"fmt"

	"github.com/zeebo/blake3"
)

// macer computes join proofs under one topic's membership-auth key. It keeps one keyed
// hasher and resets it per use: creating a keyed blake3 hasher costs about 10 KiB and the
// key setup, which dominated the simulator's profile.
type macer struct {
	key [32]byte
	h   *blake3.Hasher
}

// mac binds a request to its sender, its receiver and a nonce under the topic's
// membership-auth key. Ids are length-prefixed so that no two (sender, receiver) pairs can
// produce the same input.
func (m *macer) mac(sender, receiver []byte, nonce *[NonceSize]byte) [MACSize]byte {
	if m.h == nil {
		h, err := blake3.NewKeyed(m.key[:])
		if err != nil {
			// NewKeyed fails only for keys that are not 32 bytes, which the array type rules out.
			panic(fmt.Sprintf("membership: blake3 keyed hash: %v", err))
		}
		m.h = h
	} else {
		m.h.Reset()
	}
	var lenBuf [binary.MaxVarintLen64]byte
	_, _ = m.h.Write(lenBuf[:binary.PutUvarint(lenBuf[:], uint64(len(sender)))])
	_, _ = m.h.Write(sender)
	_, _ = m.h.Write(lenBuf[:binary.PutUvarint(lenBuf[:], uint64(len(receiver)))])
	_, _ = m.h.Write(receiver)
	_, _ = m.h.Write(nonce[:])
	var out [MACSize]byte
	m.h.Sum(out[:0])
	return out
}

func idBytes[P ID](p P) []byte {
	b, err := p.MarshalBinary()
	if err != nil {
		// Both ID types we use (peer.ID, the simulator's integers) never fail to marshal; an
		// id that cannot be marshalled cannot be authenticated, so fail loudly.
		panic(fmt.Sprintf("membership: marshal peer id: %v", err))
	}
	return b
}
