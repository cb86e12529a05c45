package host

import (
	"crypto/rand"
	"errors"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/lfnet/lfnet/topics"
)

// FuzzAddRecordBytes feeds arbitrary bytes to the address book as a record from the network:
// it must never panic, and whatever it accepts must be a record signed by its own node.
func FuzzAddRecordBytes(f *testing.F) {
	k, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	id, _ := peer.IDFromPrivateKey(k)
	other, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	valid := mustMarshal(f, signedRecord(f, k, id, 1, "/ip4/127.0.0.1/tcp/1", "/ip4/127.0.0.1/udp/1/quic-v1"))
	forged := mustMarshal(f, signedRecord(f, other, id, 2, "/ip4/127.0.0.1/tcp/2"))
	f.Add(valid)
	f.Add(forged)
	f.Add([]byte{})
	f.Add(valid[:len(valid)/2])

	self, _ := peer.IDFromPrivateKey(other)
	f.Fuzz(func(t *testing.T, data []byte) {
		book, err := newAddressBook(addressBookConfig{self: self})
		if err != nil {
			t.Fatal(err)
		}
		id, err := book.AddRecordBytes(data)
		if err != nil {
			if book.Len() != 0 {
				t.Fatal("a refused record left an entry")
			}
			for _, sentinel := range []error{ErrNotSigned, ErrWrongSigner, ErrInvalidRecord} {
				if errors.Is(err, sentinel) {
					return
				}
			}
			t.Fatalf("untyped error: %v", err)
		}
		e, ok := book.Get(id)
		if id == self {
			return
		}
		if !ok || e.Record == nil || !id.MatchesPublicKey(e.Record.PublicKey) || len(e.Addrs) > MaxRecordAddrs {
			t.Fatalf("accepted a bad record: %+v", e)
		}
	})
}

// FuzzDecodeEntry: stored entries are verified on load like network input.
func FuzzDecodeEntry(f *testing.F) {
	k, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	id, _ := peer.IDFromPrivateKey(k)
	env := signedRecord(f, k, id, 1, "/ip4/127.0.0.1/tcp/1")
	raw := mustMarshal(f, env)
	good, err := encodeEntry(&entry{raw: raw, bootstrap: true, topics: []topics.Topic{topics.FromString("t")}, failures: 2})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(id), good)
	f.Add([]byte(id), []byte{0x80})
	f.Add([]byte("x"), good)
	f.Fuzz(func(t *testing.T, key, value []byte) {
		gotID, e, err := decodeEntry(key, value)
		if err != nil {
			if !errors.Is(err, ErrStore) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		if e.empty() || len(e.topics) > MaxTopicsPerNode {
			t.Fatalf("bad entry accepted: %+v", e)
		}
		if e.rec != nil && (e.rec.PeerID != gotID || !gotID.MatchesPublicKey(e.env.PublicKey)) {
			t.Fatalf("entry for %s holds a record of %s", gotID, e.rec.PeerID)
		}
	})
}
