package logsync

import (
	"crypto/ed25519"
	"crypto/sha512"
	"encoding/hex"
	"math/big"
	"testing"
)

// RFC 8032 section 7.1, tests 1, 2, 3 and SHA(abc): secret key, public key, message,
// signature.
var rfc8032Vectors = [][4]string{
	{"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
		"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
		"e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"},
	{"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
		"3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
		"92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
	{"c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
		"fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
		"6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"},
	{"833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
		"ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
		"ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
		"dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704"},
}

func TestVerifyRFC8032Vectors(t *testing.T) {
	for i, v := range rfc8032Vectors {
		seed, pub, msg, sig := mustHex(v[0]), mustHex(v[1]), mustHex(v[2]), mustHex(v[3])
		priv := ed25519.NewKeyFromSeed(seed)
		if got := priv.Public().(ed25519.PublicKey); hex.EncodeToString(got) != v[1] {
			t.Fatalf("vector %d: public key %x, want %s", i, got, v[1])
		}
		if got := ed25519.Sign(priv, msg); hex.EncodeToString(got) != v[3] {
			t.Fatalf("vector %d: signature %x, want %s", i, got, v[3])
		}
		for round := range 2 { // the second round takes the key from the cache
			if !verifyEd25519((*PublicKey)(pub), msg, (*Signature)(sig)) {
				t.Fatalf("vector %d, round %d: valid signature rejected", i, round)
			}
		}
		bad := append([]byte(nil), sig...)
		bad[0] ^= 1
		if verifyEd25519((*PublicKey)(pub), msg, (*Signature)(bad)) {
			t.Fatalf("vector %d: altered signature accepted", i)
		}
	}
}

// edgeEncodings are point encodings where implementations disagree: the small-order points
// and non-canonical encodings (y >= p, x = 0 with the sign bit set). They serve as public
// keys and as R.
func edgeEncodings() [][]byte {
	var out [][]byte
	for _, s := range []string{
		"0100000000000000000000000000000000000000000000000000000000000000", // identity
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // order 2
		"0000000000000000000000000000000000000000000000000000000000000000", // order 4
		"0000000000000000000000000000000000000000000000000000000000000080",
		"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", // order 8
		"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
		"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
		"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
		"0100000000000000000000000000000000000000000000000000000000000080", // identity, x = -0
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
	} {
		out = append(out, mustHex(s))
	}
	// y + p for every y < 19 (the only y with a second encoding), with either sign bit.
	p := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	for y := int64(0); y < 19; y++ {
		le := littleEndian32(new(big.Int).Add(p, big.NewInt(y)))
		out = append(out, le)
		neg := append([]byte(nil), le...)
		neg[31] |= 0x80
		out = append(out, neg)
	}
	return out
}

func littleEndian32(n *big.Int) []byte {
	be := n.FillBytes(make([]byte, 32))
	le := make([]byte, 32)
	for i := range be {
		le[i] = be[31-i]
	}
	return le
}

// FuzzVerifyMatchesStdlib: verifyEd25519 (with its key cache) accepts exactly the
// signatures crypto/ed25519.Verify accepts, on valid signatures and on mutations of them:
// random keys and signatures, flipped bits, S + L (non-canonical S), R and A replaced by
// small-order and non-canonical encodings.
func FuzzVerifyMatchesStdlib(f *testing.F) {
	for i := range 12 {
		f.Add([]byte{byte(i)}, []byte("message"), byte(i), []byte{byte(i), 7, 200})
	}
	edges := edgeEncodings()
	order := new(big.Int)
	order.SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10) // L
	f.Fuzz(func(t *testing.T, seed, msg []byte, mode byte, tweak []byte) {
		s := sha512.Sum512(seed)
		priv := ed25519.NewKeyFromSeed(s[:32])
		pub := PublicKey(priv.Public().(ed25519.PublicKey))
		sig := Signature(ed25519.Sign(priv, msg))
		tw := func(i int) byte {
			if len(tweak) == 0 {
				return 0
			}
			return tweak[i%len(tweak)]
		}
		switch mode % 9 {
		case 0: // valid
		case 1: // a random key
			for i := range pub {
				pub[i] = tw(i) ^ byte(i*31)
			}
		case 2: // a random signature
			for i := range sig {
				sig[i] = tw(i) ^ byte(i*17)
			}
		case 3: // flipped bits anywhere in key or signature
			for i := range min(len(tweak), 4) {
				bit := int(tweak[i]) * 3 % (8 * (len(pub) + len(sig)))
				if bit < 8*len(pub) {
					pub[bit/8] ^= 1 << (bit % 8)
				} else {
					bit -= 8 * len(pub)
					sig[bit/8] ^= 1 << (bit % 8)
				}
			}
		case 4: // S + k*L: the same scalar, not canonical
			le := sig[32:]
			sc := new(big.Int).SetBytes(reverse(le))
			sc.Add(sc, new(big.Int).Mul(order, big.NewInt(int64(tw(0)%16+1))))
			if sc.BitLen() <= 256 {
				copy(sig[32:], littleEndian32(sc))
			}
		case 5: // an edge encoding as the key
			copy(pub[:], edges[int(tw(0))%len(edges)])
		case 6: // an edge encoding as R
			copy(sig[:32], edges[int(tw(0))%len(edges)])
		case 7: // both, with S taken from the tweak
			copy(pub[:], edges[int(tw(0))%len(edges)])
			copy(sig[:32], edges[int(tw(1))%len(edges)])
			for i := 32; i < 64; i++ {
				sig[i] = tw(i + 2)
			}
			sig[63] &= 0x1f
		case 8: // the key of another seed: a valid signature by someone else
			o := sha512.Sum512(append([]byte("other"), tweak...))
			pub = PublicKey(ed25519.NewKeyFromSeed(o[:32]).Public().(ed25519.PublicKey))
		}
		want := ed25519.Verify(pub[:], msg, sig[:])
		for round := range 2 { // cold and cached key
			if got := verifyEd25519(&pub, msg, &sig); got != want {
				t.Fatalf("round %d: key %x sig %x msg %x: verifyEd25519 %t, ed25519.Verify %t", round, pub, sig, msg, got, want)
			}
		}
	})
}

func reverse(b []byte) []byte {
	out := make([]byte, len(b))
	for i := range b {
		out[i] = b[len(b)-1-i]
	}
	return out
}

func TestKeyCacheIsBounded(t *testing.T) {
	c := newKeyCache(8)
	for i := range 100 {
		s := sha512.Sum512([]byte{byte(i)})
		pub := PublicKey(ed25519.NewKeyFromSeed(s[:32]).Public().(ed25519.PublicKey))
		if _, ok := c.minusA(&pub); !ok {
			t.Fatalf("valid key %d refused", i)
		}
		if len(c.keys) > 8 {
			t.Fatalf("cache holds %d keys, bound 8", len(c.keys))
		}
	}
}

// TestVerifyEdgeEncodingsMatchStdlib runs every pair of edge encodings as key and R, with
// S = 0, 1 and L (non-canonical), through both verifiers.
func TestVerifyEdgeEncodingsMatchStdlib(t *testing.T) {
	edges := edgeEncodings()
	order := mustHex("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010") // L, little endian
	var accepted int
	for _, a := range edges {
		for _, r := range edges {
			for _, s := range [][]byte{make([]byte, 32), append([]byte{1}, make([]byte, 31)...), order} {
				pub := PublicKey(a)
				sig := Signature(append(append([]byte(nil), r...), s...))
				want := ed25519.Verify(pub[:], []byte("m"), sig[:])
				if got := verifyEd25519(&pub, []byte("m"), &sig); got != want {
					t.Fatalf("key %x sig %x: verifyEd25519 %t, ed25519.Verify %t", pub, sig, got, want)
				}
				if want {
					accepted++
				}
			}
		}
	}
	t.Logf("%d of %d edge cases accepted by both", accepted, len(edges)*len(edges)*3)
}

// BenchmarkVerify compares one ed25519.Verify with verifyEd25519 on a cached key, on a
// signed header of an ordinary operation.
func BenchmarkVerify(b *testing.B) {
	op, err := NewOperation(keyA, nil, make([]byte, 100), nil, 1)
	if err != nil {
		b.Fatal(err)
	}
	msg := op.Header.SigningBytes()
	pub, sig := op.Header.PublicKey, op.Header.Signature
	b.Run("stdlib", func(b *testing.B) {
		for b.Loop() {
			if !ed25519.Verify(pub[:], msg, sig[:]) {
				b.Fatal("rejected")
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			if !verifyEd25519(&pub, msg, &sig) {
				b.Fatal("rejected")
			}
		}
	})
}
