package syncproto

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/lfnet/lfnet/codec"
	"github.com/lfnet/lfnet/topics"
)

// recorder keeps every byte written through it.
type recorder struct {
	io.ReadWriter
	mu  sync.Mutex
	out bytes.Buffer
}

func (r *recorder) Write(b []byte) (int, error) {
	r.mu.Lock()
	r.out.Write(b)
	r.mu.Unlock()
	return r.ReadWriter.Write(b)
}

// runHandshake runs both sides over an in-memory pipe and returns everything either side
// sent, the acceptor's result, and the initiator's error.
func runHandshake(t *testing.T, initTopic topics.Topic, acceptorTopics []topics.Topic) (wire []byte, got topics.Topic, found bool, initErr error) {
	t.Helper()
	ci, ca := net.Pipe()
	defer ci.Close()
	defer ca.Close()
	ri, ra := &recorder{ReadWriter: ci}, &recorder{ReadWriter: ca}
	const self, remote = peer.ID("initiator"), peer.ID("acceptor")
	done := make(chan error, 1)
	go func() {
		done <- initiateHandshake(codec.NewReader(ri, codec.MaxFrameHandshake), codec.NewWriter(ri, codec.MaxFrameHandshake), initTopic, self, remote)
	}()
	r, w := codec.NewReader(ra, codec.MaxFrameHandshake), codec.NewWriter(ra, codec.MaxFrameHandshake)
	got, found, err := acceptHandshake(r, w, acceptorTopics, remote, self)
	if err != nil {
		t.Fatalf("acceptor: %v", err)
	}
	if err := sendVerdict(w, found); err != nil {
		t.Fatal(err)
	}
	initErr = <-done
	return append(ri.out.Bytes(), ra.out.Bytes()...), got, found, initErr
}

func TestHandshakeFindsTheSharedTopic(t *testing.T) {
	shared := topics.FromString("shared")
	other := topics.FromString("other")
	_, got, found, err := runHandshake(t, shared, []topics.Topic{other, shared})
	if err != nil || !found || got != shared {
		t.Fatalf("found=%v got=%s err=%v", found, got.Short(), err)
	}
	_, _, found, err = runHandshake(t, shared, []topics.Topic{other})
	if found || !errors.Is(err, ErrRejected) {
		t.Fatalf("unknown topic: found=%v err=%v", found, err)
	}
}

// Neither the topic nor any key derived from it crosses the wire, and two sessions for the
// same topic look unrelated.
func TestHandshakeRevealsNoTopic(t *testing.T) {
	tp := topics.FromString("secret room")
	wire1, _, _, _ := runHandshake(t, tp, []topics.Topic{tp})
	wire2, _, _, _ := runHandshake(t, tp, []topics.Topic{tp})
	key := handshakeKey(tp)
	for _, secret := range [][]byte{tp[:], key[:]} {
		if bytes.Contains(wire1, secret[:16]) || bytes.Contains(wire2, secret[:16]) {
			t.Fatal("topic material on the wire")
		}
	}
	// Any 16-byte window of session 1 reappearing in session 2 would be a linkable value.
	for i := 0; i+16 <= len(wire1); i++ {
		if bytes.Contains(wire2, wire1[i:i+16]) {
			t.Fatalf("bytes %x repeat across sessions", wire1[i:i+16])
		}
	}
}

func TestHandshakeMACBindsIdentities(t *testing.T) {
	key := handshakeKey(topics.FromString("x"))
	n1, n2 := newNonce(), newNonce()
	base := handshakeMAC(key, n1, n2, "a", "b")
	for _, other := range [][]byte{
		handshakeMAC(key, n1, n2, "b", "a"),
		handshakeMAC(key, n2, n1, "a", "b"),
		handshakeMAC(key, n1, n2, "ab", ""),
	} {
		if bytes.Equal(base, other) {
			t.Fatal("MAC does not bind nonces and ids")
		}
	}
}

func FuzzHandshakeFrame(f *testing.F) {
	for kind, body := range map[uint64]any{kindHello: helloMsg{Nonce: make([]byte, 32)}, kindAuth: authMsg{MAC: make([]byte, 32)}, kindVerdict: verdictMsg{Accept: true}} {
		b, _ := codec.MarshalTagged(kind, body)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		var h helloMsg
		_ = decodeHandshakeFrame(frame, kindHello, &h)
		var a authMsg
		_ = decodeHandshakeFrame(frame, kindAuth, &a)
		var v verdictMsg
		if err := decodeHandshakeFrame(frame, kindVerdict, &v); err == nil {
			again, _ := codec.MarshalTagged(kindVerdict, v)
			if !bytes.Equal(again, frame) {
				t.Fatal("accepted verdict does not round-trip")
			}
		}
	})
}

// FuzzAcceptHandshake feeds arbitrary bytes as the initiator's stream: the acceptor must
// return an error or a verdict, never panic or hang.
func FuzzAcceptHandshake(f *testing.F) {
	var seed bytes.Buffer
	w := codec.NewWriter(&seed, codec.MaxFrameHandshake)
	_ = writeMsg(w, kindHello, helloMsg{Nonce: make([]byte, 32)})
	_ = writeMsg(w, kindAuth, authMsg{MAC: make([]byte, 32)})
	f.Add(seed.Bytes())
	tp := topics.FromString("fuzz")
	f.Fuzz(func(t *testing.T, in []byte) {
		r := codec.NewReader(bytes.NewReader(in), codec.MaxFrameHandshake)
		_, found, err := acceptHandshake(r, codec.NewWriter(io.Discard, codec.MaxFrameHandshake), []topics.Topic{tp}, "a", "b")
		if err == nil && found {
			t.Fatal("random input authenticated")
		}
	})
}
