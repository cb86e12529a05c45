package syncproto

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/zeebo/blake3"

	"github.com/lfnet/lfnet/codec"
	"github.com/lfnet/lfnet/topics"
)

// Handshake message kinds (codec.Tagged).
const (
	kindHello   = 1
	kindAuth    = 2
	kindVerdict = 3
)

const (
	nonceSize = 32
	macSize   = 32
	// authPurpose is the Derive purpose of the handshake key.
	authPurpose = "sync-auth"
)

type helloMsg struct {
	_     struct{} `cbor:",toarray"`
	Nonce []byte
}

type authMsg struct {
	_   struct{} `cbor:",toarray"`
	MAC []byte
}

type verdictMsg struct {
	_      struct{} `cbor:",toarray"`
	Accept bool
}

// handshakeKey is the per-topic key the MAC is computed under.
func handshakeKey(t topics.Topic) [32]byte { return topics.Derive(t, authPurpose) }

// handshakeMAC binds the topic key to both nonces and both node ids, each id length-prefixed
// so that no two (initiator, acceptor) pairs hash the same input.
func handshakeMAC(key [32]byte, nonceI, nonceA []byte, initiator, acceptor peer.ID) []byte {
	h, err := blake3.NewKeyed(key[:])
	if err != nil {
		panic(fmt.Sprintf("syncproto: blake3 keyed hash: %v", err)) // key is always 32 bytes
	}
	_, _ = h.Write(nonceI)
	_, _ = h.Write(nonceA)
	for _, id := range []peer.ID{initiator, acceptor} {
		_, _ = h.Write(binary.AppendUvarint(nil, uint64(len(id))))
		_, _ = h.Write([]byte(id))
	}
	return h.Sum(nil)
}

func newNonce() []byte {
	n := make([]byte, nonceSize)
	_, _ = rand.Read(n) // crypto/rand.Read does not fail on supported platforms
	return n
}

func writeMsg(w *codec.Writer, kind uint64, body any) error {
	b, err := codec.MarshalTagged(kind, body)
	if err != nil {
		return err
	}
	return w.WriteFrame(b)
}

// readMsg reads one tagged frame of the wanted kind into body.
func readMsg(r *codec.Reader, kind uint64, body any) error {
	frame, err := r.ReadFrame()
	if err != nil {
		return fmt.Errorf("%w: read: %w", ErrHandshake, err)
	}
	return decodeHandshakeFrame(frame, kind, body)
}

func decodeHandshakeFrame(frame []byte, kind uint64, body any) error {
	t, err := codec.UnmarshalTagged(frame)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	if t.Kind != kind {
		return fmt.Errorf("%w: %w: got kind %d, want %d", ErrHandshake, codec.ErrUnknownKind, t.Kind, kind)
	}
	if err := codec.Unmarshal(t.Body, body); err != nil {
		return fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	return nil
}

// initiateHandshake runs the initiator's side for topic. It returns nil when the acceptor
// accepted, an error wrapping ErrRejected when it refused, or ErrHandshake.
func initiateHandshake(r *codec.Reader, w *codec.Writer, t topics.Topic, self, remote peer.ID) error {
	nonceI := newNonce()
	if err := writeMsg(w, kindHello, helloMsg{Nonce: nonceI}); err != nil {
		return fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	var hello helloMsg
	if err := readMsg(r, kindHello, &hello); err != nil {
		return err
	}
	if len(hello.Nonce) != nonceSize {
		return fmt.Errorf("%w: nonce of %d bytes", ErrHandshake, len(hello.Nonce))
	}
	mac := handshakeMAC(handshakeKey(t), nonceI, hello.Nonce, self, remote)
	if err := writeMsg(w, kindAuth, authMsg{MAC: mac}); err != nil {
		return fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	var v verdictMsg
	if err := readMsg(r, kindVerdict, &v); err != nil {
		return err
	}
	if !v.Accept {
		return ErrRejected
	}
	return nil
}

// acceptHandshake runs the acceptor's side up to the verdict: it returns the topic among
// candidates whose key matches the initiator's MAC. The caller decides and then sends the
// verdict with sendVerdict. found is false when no candidate matches.
func acceptHandshake(r *codec.Reader, w *codec.Writer, candidates []topics.Topic, self, remote peer.ID) (t topics.Topic, found bool, err error) {
	var hello helloMsg
	if err := readMsg(r, kindHello, &hello); err != nil {
		return t, false, err
	}
	if len(hello.Nonce) != nonceSize {
		return t, false, fmt.Errorf("%w: nonce of %d bytes", ErrHandshake, len(hello.Nonce))
	}
	nonceA := newNonce()
	if err := writeMsg(w, kindHello, helloMsg{Nonce: nonceA}); err != nil {
		return t, false, fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	var auth authMsg
	if err := readMsg(r, kindAuth, &auth); err != nil {
		return t, false, err
	}
	if len(auth.MAC) != macSize {
		return t, false, fmt.Errorf("%w: MAC of %d bytes", ErrHandshake, len(auth.MAC))
	}
	for _, c := range candidates {
		want := handshakeMAC(handshakeKey(c), hello.Nonce, nonceA, remote, self)
		if subtle.ConstantTimeCompare(want, auth.MAC) == 1 {
			return c, true, nil
		}
	}
	return t, false, nil
}

func sendVerdict(w *codec.Writer, accept bool) error {
	if err := writeMsg(w, kindVerdict, verdictMsg{Accept: accept}); err != nil {
		return fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	return nil
}
