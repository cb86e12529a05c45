package membership

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/lfnet/lfnet/codec"
)

// testIdentity returns a peer id and its signed peer record, from a seeded key.
func testIdentity(t testing.TB, seed uint64) (peer.ID, []byte) {
	t.Helper()
	priv, _, err := crypto.GenerateEd25519Key(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}))
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	addr := ma.StringCast("/ip4/127.0.0.1/tcp/4001")
	env, err := record.Seal(peer.PeerRecordFromAddrInfo(peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{addr}}), priv)
	if err != nil {
		t.Fatal(err)
	}
	data, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return id, data
}

func sampleMessages(t testing.TB) []Message {
	a, recA := testIdentity(t, 1)
	b, recB := testIdentity(t, 2)
	proof := Proof{Nonce: [NonceSize]byte{1, 2, 3}, MAC: [MACSize]byte{4, 5, 6}}
	return []Message{
		Join{Data: recA, Proof: proof},
		Join{Proof: proof},
		ForwardJoin[peer.ID]{Peer: PeerInfo[peer.ID]{ID: a, Data: recA}, TTL: 6},
		Neighbor{HighPriority: true, Data: recB, Proof: proof},
		Neighbor{Proof: proof},
		NeighborReply{Accepted: true, Data: recA},
		NeighborReply{},
		Disconnect{Alive: true},
		Disconnect{},
		Shuffle[peer.ID]{ID: 77, Origin: PeerInfo[peer.ID]{ID: a, Data: recA}, Peers: []PeerInfo[peer.ID]{{ID: b, Data: recB}, {ID: a}}, TTL: 6},
		Shuffle[peer.ID]{ID: 1, Origin: PeerInfo[peer.ID]{ID: b}, Peers: []PeerInfo[peer.ID]{}, TTL: 1},
		ShuffleReply[peer.ID]{ID: 77, Peers: []PeerInfo[peer.ID]{{ID: b, Data: recB}}},
		ShuffleReply[peer.ID]{ID: 78, Peers: []PeerInfo[peer.ID]{}},
	}
}

func TestWireRoundTrip(t *testing.T) {
	a, _ := testIdentity(t, 1)
	for _, m := range sampleMessages(t) {
		b, err := encodeMessage(m)
		if err != nil {
			t.Fatalf("%T: %v", m, err)
		}
		if err := codec.CheckCanonical(b); err != nil {
			t.Fatalf("%T encodes non-canonically: %v", m, err)
		}
		got, err := decodeMessage(b)
		if err != nil {
			t.Fatalf("%T: decode: %v", m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip: got %#v, want %#v", got, m)
		}
		if err := checkRecords(a, got); err != nil && got.Kind() != KindNeighbor {
			t.Fatalf("%T: records: %v", m, err)
		}
	}
}

func TestWireRejects(t *testing.T) {
	a, recA := testIdentity(t, 1)
	b, recB := testIdentity(t, 2)
	mustTagged := func(kind Kind, body any) []byte {
		data, err := codec.MarshalTagged(uint64(kind), body)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	manyPeers := make([]wirePeer, MaxWirePeers+1)
	for i := range manyPeers {
		manyPeers[i] = wirePeer{ID: []byte(a)}
	}
	rawMany, err := codec.Marshal(manyPeers)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, codec.ErrMalformed},
		{"unknown kind", mustTagged(99, wireDisconnect{}), codec.ErrUnknownKind},
		{"short nonce", mustTagged(KindJoin, wireJoin{Nonce: make([]byte, 15), MAC: make([]byte, 32)}), ErrBadMessage},
		{"long mac", mustTagged(KindNeighbor, wireNeighbor{Nonce: make([]byte, 16), MAC: make([]byte, 33)}), ErrBadMessage},
		{"huge data", mustTagged(KindNeighborReply, wireNeighborReply{Data: make([]byte, MaxPeerData+1)}), ErrBadMessage},
		{"bad peer id", mustTagged(KindForwardJoin, wireForwardJoin{Peer: wirePeer{ID: []byte("nope")}}), ErrBadMessage},
		{"empty peer id", mustTagged(KindForwardJoin, wireForwardJoin{Peer: wirePeer{}}), ErrBadMessage},
		{"too many peers", mustTagged(KindShuffleReply, wireShuffleReply{ID: 1, Peers: rawMany}), ErrBadMessage},
		{"peers not an array", mustTagged(KindShuffleReply, wireShuffleReply{ID: 1, Peers: codec.RawMessage{0x01}}), ErrBadMessage},
		{"wrong field count", mustTagged(KindDisconnect, []bool{true, false}), codec.ErrMalformed},
		{"trailing bytes", append(mustTagged(KindDisconnect, wireDisconnect{}), 0), codec.ErrTrailingBytes},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := decodeMessage(c.data)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}

	// Records must describe, and be signed by, the peer they are carried for.
	if err := checkRecords(a, Join{Data: recB}); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("someone else's record as own data: %v", err)
	}
	if err := checkRecords(a, ForwardJoin[peer.ID]{Peer: PeerInfo[peer.ID]{ID: b, Data: recA}}); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("record relayed under the wrong id: %v", err)
	}
	tampered := bytes.Clone(recB)
	tampered[len(tampered)-1] ^= 1
	if err := checkRecords(a, ShuffleReply[peer.ID]{Peers: []PeerInfo[peer.ID]{{ID: b, Data: tampered}}}); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("tampered record: %v", err)
	}
	if err := checkRecords(a, ShuffleReply[peer.ID]{Peers: []PeerInfo[peer.ID]{{ID: b, Data: []byte("junk")}}}); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("junk record: %v", err)
	}
}

func TestEncodeRejectsOutOfRange(t *testing.T) {
	a, _ := testIdentity(t, 1)
	if _, err := encodeMessage(ForwardJoin[peer.ID]{Peer: PeerInfo[peer.ID]{ID: a}, TTL: 300}); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("ttl 300: %v", err)
	}
	many := make([]PeerInfo[peer.ID], MaxWirePeers+1)
	for i := range many {
		many[i].ID = a
	}
	if _, err := encodeMessage(ShuffleReply[peer.ID]{Peers: many}); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("too many peers: %v", err)
	}
	if _, err := encodeMessage(ForwardJoin[nidForWire]{}); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("foreign id type: %v", err)
	}
}

type nidForWire uint8

func (n nidForWire) MarshalBinary() ([]byte, error) { return []byte{byte(n)}, nil }

// FuzzDecodeMessage checks that no input makes the decoder panic, that accepted messages
// respect the limits, and that they survive a re-encode unchanged.
func FuzzDecodeMessage(f *testing.F) {
	for _, m := range sampleMessages(f) {
		b, err := encodeMessage(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x82, 0x06, 0x84, 0x01})
	f.Add([]byte{0x82, 0x07, 0x82, 0x01, 0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeMessage(data)
		if err != nil {
			return
		}
		var peers []PeerInfo[peer.ID]
		switch m := m.(type) {
		case Shuffle[peer.ID]:
			peers = append(m.Peers, m.Origin)
		case ShuffleReply[peer.ID]:
			peers = m.Peers
		case ForwardJoin[peer.ID]:
			peers = []PeerInfo[peer.ID]{m.Peer}
		}
		if len(peers) > MaxWirePeers+1 {
			t.Fatalf("%d peers accepted", len(peers))
		}
		for _, p := range peers {
			if len(p.Data) > MaxPeerData || p.ID == "" {
				t.Fatalf("entry %+v accepted", p)
			}
		}
		b, err := encodeMessage(m)
		if err != nil {
			t.Fatalf("re-encode %T: %v", m, err)
		}
		m2, err := decodeMessage(b)
		if err != nil {
			t.Fatalf("decode re-encoded %T: %v", m, err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-encode changed %#v into %#v", m, m2)
		}
		_ = checkRecords(peer.ID("x"), m)
	})
}

// FuzzDecodeHello covers the first frame of every stream.
func FuzzDecodeHello(f *testing.F) {
	good, err := codec.Marshal(wireHello{Overlay: make([]byte, overlayIDSize)})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte{0x81, 0x40})
	f.Fuzz(func(t *testing.T, data []byte) {
		var h wireHello
		if err := codec.Unmarshal(data, &h); err != nil {
			return
		}
		if _, err := codec.Marshal(h); err != nil {
			t.Fatal(err)
		}
	})
}
