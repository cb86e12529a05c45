package gossip

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/lfnet/lfnet/topics"
)

// Derivation purposes; DESIGN.md §6 fixes them, so nodes derive the same values.
const (
	namePurpose = "gossip"
	keyPurpose  = "gossip-key"
)

// aadDomain separates lfnet gossip ciphertexts from any other use of the same key.
const aadDomain = "lfnet gossip v1\x00"

// sealOverhead is what sealing adds to a payload: the random nonce and the tag.
const sealOverhead = chacha20poly1305.NonceSizeX + chacha20poly1305.Overhead

// errUnsealable is the open failure; callers count it and drop the message, so one kind of
// error is enough and it reveals nothing about why.
var errUnsealable = errors.New("gossip: message does not open under the topic key")

// pubsubTopicName returns the GossipSub topic name a topic's messages travel under:
// hex(Derive(t, "gossip")). It is what connected peers see; it does not reveal t.
func pubsubTopicName(t topics.Topic) string {
	d := topics.Derive(t, namePurpose)
	return hex.EncodeToString(d[:])
}

// isTopicName reports whether s has the shape of a derived topic name (64 lowercase hex
// characters), which is all a well-behaved lfnet peer ever subscribes to.
func isTopicName(s string) bool {
	if len(s) != 2*topics.Size {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// sealer seals and opens one topic's payloads.
type sealer struct {
	name string
	aead cipher.AEAD
}

func newSealer(t topics.Topic) (*sealer, error) {
	key := topics.Derive(t, keyPurpose)
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		return nil, fmt.Errorf("gossip: topic cipher: %w", err)
	}
	return &sealer{name: pubsubTopicName(t), aead: aead}, nil
}

// aad binds a ciphertext to the pubsub topic it was published under and to its author, so
// it cannot be replayed into another topic nor re-published as someone else's message.
func (s *sealer) aad(author peer.ID) []byte {
	out := make([]byte, 0, len(aadDomain)+len(s.name)+len(author))
	out = append(out, aadDomain...)
	out = append(out, s.name...)
	return append(out, author...)
}

// seal returns nonce || ciphertext for payload written by author.
func (s *sealer) seal(author peer.ID, payload []byte) []byte {
	out := make([]byte, chacha20poly1305.NonceSizeX, sealOverhead+len(payload))
	// crypto/rand.Read never fails on supported platforms (Go 1.24+ panics instead).
	_, _ = rand.Read(out)
	return s.aead.Seal(out, out, payload, s.aad(author))
}

// open reverses seal. It never panics on any input and allocates at most len(sealed).
func (s *sealer) open(author peer.ID, sealed []byte) ([]byte, error) {
	if len(sealed) < sealOverhead {
		return nil, errUnsealable
	}
	nonce, ct := sealed[:chacha20poly1305.NonceSizeX], sealed[chacha20poly1305.NonceSizeX:]
	plain, err := s.aead.Open(nil, nonce, ct, s.aad(author))
	if err != nil {
		return nil, errUnsealable
	}
	return plain, nil
}
