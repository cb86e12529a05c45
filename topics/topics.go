// Package topics defines Topic, the 32-byte identifier of a shared interest, and the key
// derivation every subsystem uses so that no subsystem ever puts a raw topic on the wire.
package topics

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
	"github.com/zeebo/blake3"
)

// Size is the length of a Topic in bytes.
const Size = 32

// Topic identifies a set of data and the nodes interested in it. Applications should use
// Random topics and share them out of band: whoever knows a topic can join it.
type Topic [Size]byte

// ErrInvalidTopic is returned when text or CBOR does not hold exactly 32 bytes.
var ErrInvalidTopic = errors.New("topics: invalid topic")

// Random returns a fresh topic from the operating system's secure random source.
func Random() Topic {
	var t Topic
	// crypto/rand.Read never returns an error on supported platforms (Go 1.24+ panics
	// instead), so there is nothing to handle.
	_, _ = rand.Read(t[:])
	return t
}

// FromString derives a topic from a human-readable name (blake3 of the name). Anyone who
// guesses the name can join, so it suits demos and public rooms, not private data.
func FromString(name string) Topic {
	return Topic(blake3.Sum256([]byte(name)))
}

// Parse reads a topic from its 64-character hex form.
func Parse(s string) (Topic, error) {
	var t Topic
	if len(s) != 2*Size {
		return t, fmt.Errorf("%w: %d hex characters, want %d", ErrInvalidTopic, len(s), 2*Size)
	}
	if _, err := hex.Decode(t[:], []byte(s)); err != nil {
		return t, fmt.Errorf("%w: %v", ErrInvalidTopic, err)
	}
	return t, nil
}

// String returns the topic in hex.
func (t Topic) String() string { return hex.EncodeToString(t[:]) }

// Short returns the first 8 hex characters, for logs.
func (t Topic) Short() string { return hex.EncodeToString(t[:4]) }

// derivationContext is the blake3 key-derivation context; its fixed, unique string keeps
// lfnet's keys apart from every other use of blake3 derive_key.
const derivationContext = "lfnet 2026 topic derivation v1"

// Derive returns a 32-byte value bound to both the topic and the purpose ("membership",
// "gossip", "gossip-key", "sync-auth", ...). Values for different purposes are unrelated,
// and none reveals the topic.
func Derive(t Topic, purpose string) [32]byte {
	h := blake3.NewDeriveKey(derivationContext)
	var lenPrefix [1]byte
	if len(purpose) > 255 {
		panic("topics: purpose longer than 255 bytes")
	}
	// The length prefix keeps (topic, purpose) pairs unambiguous.
	lenPrefix[0] = byte(len(purpose))
	_, _ = h.Write(lenPrefix[:])
	_, _ = h.Write([]byte(purpose))
	_, _ = h.Write(t[:])
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// MarshalText implements encoding.TextMarshaler (hex).
func (t Topic) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (hex).
func (t *Topic) UnmarshalText(b []byte) error {
	p, err := Parse(string(b))
	if err != nil {
		return err
	}
	*t = p
	return nil
}

// MarshalCBOR encodes the topic as a 32-byte CBOR byte string.
func (t Topic) MarshalCBOR() ([]byte, error) { return cbor.Marshal(t[:]) }

// UnmarshalCBOR decodes a 32-byte CBOR byte string.
func (t *Topic) UnmarshalCBOR(b []byte) error {
	var raw []byte
	if err := cbor.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidTopic, err)
	}
	if len(raw) != Size {
		return fmt.Errorf("%w: %d bytes, want %d", ErrInvalidTopic, len(raw), Size)
	}
	copy(t[:], raw)
	return nil
}
