package gossip

import (
	"bytes"
	"context"
	"encoding/hex"
	"strings"
	"testing"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/lfnet/lfnet/topics"
)

const (
	alice = peer.ID("alice")
	bob   = peer.ID("bob")
	carol = peer.ID("carol")
)

func mustSealer(tb testing.TB, t topics.Topic) *sealer {
	tb.Helper()
	s, err := newSealer(t)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestTopicNameIsDerived(t *testing.T) {
	room := topics.FromString("names")
	d := topics.Derive(room, "gossip")
	if got := pubsubTopicName(room); got != hex.EncodeToString(d[:]) {
		t.Fatalf("name %s, want hex(Derive(topic, \"gossip\"))", got)
	}
	if strings.Contains(pubsubTopicName(room), room.String()) {
		t.Fatal("the name reveals the topic")
	}
	if !isTopicName(pubsubTopicName(room)) || isTopicName(room.String()[:63]) || isTopicName(strings.ToUpper(pubsubTopicName(room))) {
		t.Fatal("isTopicName misjudges")
	}
}

func TestSealOpens(t *testing.T) {
	room := topics.FromString("seal")
	s := mustSealer(t, room)
	msg := []byte("hello")
	sealed := s.seal(alice, msg)
	if len(sealed) != len(msg)+sealOverhead {
		t.Fatalf("sealed %d bytes, want %d", len(sealed), len(msg)+sealOverhead)
	}
	if bytes.Equal(sealed, s.seal(alice, msg)) {
		t.Fatal("two seals of one payload are equal: nonce reused")
	}
	got, err := s.open(alice, sealed)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("open = %q, %v", got, err)
	}

	cases := map[string]func() error{
		"another author": func() error { _, err := s.open(bob, sealed); return err },
		"another topic": func() error {
			_, err := mustSealer(t, topics.FromString("other")).open(alice, sealed)
			return err
		},
		// Same key, different pubsub name: the associated data alone must refuse it.
		"another topic name": func() error {
			_, err := (&sealer{name: pubsubTopicName(topics.FromString("other")), aead: s.aead}).open(alice, sealed)
			return err
		},
		"tampered": func() error {
			bad := bytes.Clone(sealed)
			bad[len(bad)-1] ^= 1
			_, err := s.open(alice, bad)
			return err
		},
		"truncated": func() error { _, err := s.open(alice, sealed[:sealOverhead-1]); return err },
	}
	for name, try := range cases {
		if err := try(); err == nil {
			t.Errorf("%s: opened", name)
		}
	}
}

// FuzzOpen: no input from the network makes opening panic, and only a real seal opens.
func FuzzOpen(f *testing.F) {
	s := mustSealer(f, topics.FromString("fuzz"))
	// A fixed nonce keeps the seed the same in every fuzzing worker process.
	nonce := make([]byte, chacha20poly1305.NonceSizeX)
	valid := s.aead.Seal(nonce, nonce, []byte("payload"), s.aad(alice))
	f.Add([]byte{}, []byte(alice))
	f.Add(make([]byte, sealOverhead), []byte(alice))
	f.Add(valid, []byte(alice))
	f.Add(valid, []byte(bob))
	f.Add(valid[:len(valid)-1], []byte(alice))
	f.Fuzz(func(t *testing.T, data, author []byte) {
		plain, err := s.open(peer.ID(author), data)
		if err != nil {
			return
		}
		if !bytes.Equal(data, valid) || peer.ID(author) != alice || string(plain) != "payload" {
			t.Fatalf("forged input opened: %x by %q", data, author)
		}
	})
}

// FuzzValidator: the validator's verdict on arbitrary messages never panics, never accepts
// what does not open, and always leaves the plaintext of what it accepts.
func FuzzValidator(f *testing.F) {
	room := topics.FromString("fuzz validator")
	s := mustSealer(f, room)
	r := &Router{self: peer.ID("self"), maxSeal: 64 + sealOverhead, log: quietLogger()}
	val := r.validator(s)
	f.Add(s.seal(alice, []byte("ok")), []byte(alice), []byte(bob))
	f.Add(s.seal(r.self, []byte("mine")), []byte(r.self), []byte(bob))
	f.Add(s.seal(alice, make([]byte, 65)), []byte(alice), []byte(bob))
	f.Add([]byte("junk"), []byte(alice), []byte(bob))
	f.Fuzz(func(t *testing.T, data, author, from []byte) {
		if peer.ID(from) == r.self {
			return // local publishes are trusted by construction
		}
		m := &pubsub.Message{Message: &pb.Message{Data: data, From: author}, ReceivedFrom: peer.ID(from)}
		verdict := val(context.Background(), peer.ID(from), m)
		plain, openErr := s.open(peer.ID(author), data)
		switch verdict {
		case pubsub.ValidationAccept:
			if openErr != nil || len(data) > r.maxSeal || !bytes.Equal(m.ValidatorData.([]byte), plain) {
				t.Fatalf("accepted %x from %q", data, author)
			}
		case pubsub.ValidationIgnore:
			if peer.ID(author) != r.self {
				t.Fatalf("ignored a message not authored by us")
			}
		case pubsub.ValidationReject:
			if openErr == nil && len(data) <= r.maxSeal {
				t.Fatalf("rejected a valid message")
			}
		}
	})
}

// FuzzAdmit: a peer's subscription announcements are kept to well-formed names and never
// exceed the per-peer cap, whatever it sends.
func FuzzAdmit(f *testing.F) {
	name := pubsubTopicName(topics.FromString("a"))
	f.Add(name+","+name, true, uint16(1))
	f.Add("not hex,"+strings.ToUpper(name), true, uint16(3000))
	f.Add(name, false, uint16(0))
	f.Fuzz(func(t *testing.T, list string, subscribe bool, extra uint16) {
		tr := newTracker()
		var subs []*pb.RPC_SubOpts
		for _, n := range strings.Split(list, ",") {
			subs = append(subs, &pb.RPC_SubOpts{Topicid: &n, Subscribe: &subscribe})
		}
		// Pad with many distinct well-formed names to push against the cap.
		yes := true
		for i := range int(extra % (2 * maxTopicsPerPeer)) {
			d := topics.Derive(topics.Topic{byte(i), byte(i >> 8)}, "x")
			n := hex.EncodeToString(d[:])
			subs = append(subs, &pb.RPC_SubOpts{Topicid: &n, Subscribe: &yes})
		}
		for _, s := range tr.admit(alice, subs) {
			if !isTopicName(s.GetTopicid()) {
				t.Fatalf("admitted malformed name %q", s.GetTopicid())
			}
		}
		if n := len(tr.announced[alice]); n > maxTopicsPerPeer {
			t.Fatalf("tracking %d names for one peer", n)
		}
		tr.OnClosedOutboundStream(alice)
		if len(tr.announced) != 0 {
			t.Fatal("announcements survive the peer")
		}
	})
}

// TestInspectDropsOutsiders: messages from a peer that was never a neighbour in a topic's
// overlay are removed from the RPC before pubsub sees them; a neighbour's and a former
// neighbour's, and topics we do not hold, pass untouched.
func TestInspectDropsOutsiders(t *testing.T) {
	held, unheld := topics.FromString("held"), topics.FromString("unheld")
	r := &Router{log: quietLogger(), views: map[string]*topicState{
		pubsubTopicName(held): {overlay: staticOverlay{&staticMembership{view: []peer.ID{alice}, former: []peer.ID{carol}}}},
	}}
	msg := func(t topics.Topic, data string) *pb.Message {
		name := pubsubTopicName(t)
		return &pb.Message{Topic: &name, Data: []byte(data)}
	}
	rpc := func() *pubsub.RPC {
		var out pubsub.RPC
		out.Publish = []*pb.Message{msg(unheld, "1"), msg(held, "2"), msg(unheld, "3"), msg(held, "4")}
		return &out
	}
	for _, p := range []peer.ID{alice, carol} {
		from := rpc()
		if err := r.inspectRPC(p, from); err != nil || len(from.Publish) != 4 {
			t.Fatalf("%s's RPC changed: %d messages, %v", p, len(from.Publish), err)
		}
	}
	fromBob := rpc()
	if err := r.inspectRPC(bob, fromBob); err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, m := range fromBob.Publish {
		kept = append(kept, string(m.Data))
	}
	if strings.Join(kept, "") != "13" || r.notNeighbour.Load() != 2 {
		t.Fatalf("kept %q, counted %d; want the unheld topic's 1 and 3, 2 dropped", kept, r.notNeighbour.Load())
	}
}
