package topics

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/lfnet/lfnet/codec"
)

func TestFromStringIsBlake3OfName(t *testing.T) {
	// blake3("") is a published constant; pins that FromString hashes the raw name.
	want := "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
	if got := FromString("").String(); got != want {
		t.Fatalf("FromString(\"\") = %s, want %s", got, want)
	}
}

func TestParseRoundTrip(t *testing.T) {
	tp := Random()
	got, err := Parse(tp.String())
	if err != nil || got != tp {
		t.Fatalf("Parse(String()) = %v, %v", got, err)
	}
	for _, bad := range []string{"", "00", tp.String()[:63] + "z", tp.String() + "00"} {
		if _, err := Parse(bad); !errors.Is(err, ErrInvalidTopic) {
			t.Fatalf("Parse(%q) error %v, want ErrInvalidTopic", bad, err)
		}
	}
}

func TestRandomTopicsDiffer(t *testing.T) {
	if Random() == Random() {
		t.Fatal("two random topics are equal")
	}
}

func TestDeriveSeparatesPurposesAndTopics(t *testing.T) {
	a, b := FromString("a"), FromString("b")
	seen := map[[32]byte]string{}
	for _, tp := range []Topic{a, b} {
		for _, p := range []string{"membership", "gossip", "gossip-key", "sync-auth", ""} {
			d := Derive(tp, p)
			if d == [32]byte(tp) {
				t.Fatalf("Derive returned the raw topic for %q", p)
			}
			if prev, dup := seen[d]; dup {
				t.Fatalf("Derive collision between %s and %s/%s", prev, tp.Short(), p)
			}
			seen[d] = tp.Short() + "/" + p
		}
	}
	if Derive(a, "gossip") != Derive(a, "gossip") {
		t.Fatal("Derive is not deterministic")
	}
}

// Pins the derivation so a refactor cannot silently split the network.
func TestDeriveVector(t *testing.T) {
	d := Derive(FromString("lfnet"), "membership")
	const want = "37acf016d39f816c53aa9b46c91ed073b354f8f73d9dd61aa06532e043a72098"
	if got := Topic(d).String(); got != want {
		t.Fatalf("Derive vector changed: %s", got)
	}
}

func TestTextAndCBOR(t *testing.T) {
	tp := FromString("room")
	j, err := json.Marshal(map[string]Topic{"t": tp})
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]Topic
	if err := json.Unmarshal(j, &back); err != nil || back["t"] != tp {
		t.Fatalf("json round trip: %v", err)
	}
	c, err := codec.Marshal(tp)
	if err != nil {
		t.Fatal(err)
	}
	if len(c) != 34 || c[0] != 0x58 || c[1] != 32 {
		t.Fatalf("CBOR form %x, want a 32-byte byte string", c)
	}
	var got Topic
	if err := codec.Unmarshal(c, &got); err != nil || got != tp {
		t.Fatalf("cbor round trip: %v", err)
	}
	short, _ := codec.Marshal([]byte{1, 2})
	if err := codec.Unmarshal(short, &got); !errors.Is(err, codec.ErrMalformed) {
		t.Fatalf("short topic: %v", err)
	}
}
