package logsync

import (
	"crypto/sha512"
	"sync"

	"filippo.io/edwards25519"
)

// keyCacheSize bounds how many authors' decompressed keys verifySignature keeps: about 200
// bytes each, so at most about 1 MiB, whatever keys the network sends.
const keyCacheSize = 4096

// authorKeys caches each author's decompressed and negated public key. Decompressing a key
// (a field square root) is about 5% of an ed25519.Verify, and a log's operations are all
// signed by one author.
var authorKeys = newKeyCache(keyCacheSize)

// keyCache maps an encoded public key to its negated curve point. It holds at most max
// entries; when full, an arbitrary entry makes room (Go randomises map iteration), so no
// sequence of keys grows it and no pattern of keys pins the hot ones out for long.
type keyCache struct {
	mu   sync.Mutex
	max  int
	keys map[PublicKey]*edwards25519.Point
}

func newKeyCache(max int) *keyCache {
	return &keyCache{max: max, keys: make(map[PublicKey]*edwards25519.Point)}
}

// minusA returns -A for the encoded key pub, or false if pub is not a point on the curve.
// The returned point is shared and must not be modified.
func (c *keyCache) minusA(pub *PublicKey) (*edwards25519.Point, bool) {
	c.mu.Lock()
	p, ok := c.keys[*pub]
	c.mu.Unlock()
	if ok {
		return p, true
	}
	// The same decoding crypto/ed25519 applies: SetBytes checks the point is on the curve
	// and accepts the encodings crypto/ed25519 accepts.
	a, err := new(edwards25519.Point).SetBytes(pub[:])
	if err != nil {
		return nil, false // not cached: an invalid key costs every time, as it does in Verify
	}
	p = new(edwards25519.Point).Negate(a)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.keys) >= c.max {
		for k := range c.keys {
			delete(c.keys, k)
			break
		}
	}
	c.keys[*pub] = p
	return p, true
}

// verifyEd25519 is crypto/ed25519.Verify (pure Ed25519, RFC 8032 with Go's cofactorless
// check) with the author's decompressed key taken from the cache. It accepts and rejects
// exactly what ed25519.Verify does (FuzzVerifyMatchesStdlib compares them): the same
// signature length and high-bit check, the same key decoding, a canonical S, and R
// compared byte for byte with the encoding of [S]B - [k]A.
func verifyEd25519(pub *PublicKey, msg []byte, sig *Signature) bool {
	if sig[63]&224 != 0 {
		return false
	}
	minusA, ok := authorKeys.minusA(pub)
	if !ok {
		return false
	}
	kh := sha512.New()
	kh.Write(sig[:32])
	kh.Write(pub[:])
	kh.Write(msg)
	var digest [sha512.Size]byte
	k, err := edwards25519.NewScalar().SetUniformBytes(kh.Sum(digest[:0]))
	if err != nil {
		return false // cannot happen: the digest has the 64 bytes SetUniformBytes takes
	}
	s, err := edwards25519.NewScalar().SetCanonicalBytes(sig[32:])
	if err != nil {
		return false
	}
	// [S]B = R + [k]A  <=>  [k](-A) + [S]B = R
	r := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(k, minusA, s)
	return [32]byte(r.Bytes()) == [32]byte(sig[:32])
}
