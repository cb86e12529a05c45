package host

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// loopbackAddrs are the only addresses test hosts listen on.
func loopbackAddrs(t testing.TB) []ma.Multiaddr {
	t.Helper()
	return []ma.Multiaddr{
		ma.StringCast("/ip4/127.0.0.1/tcp/0"),
		ma.StringCast("/ip4/127.0.0.1/udp/0/quic-v1"),
	}
}

// testOptions keep a test host on loopback and away from the LAN (no UPnP/NAT-PMP).
func testOptions(t testing.TB) []Option {
	return []Option{
		WithListenAddrs(loopbackAddrs(t)...),
		WithNATPortMap(false),
	}
}

func newTestHost(t testing.TB, opts ...Option) *Host {
	t.Helper()
	h, err := New(context.Background(), append(testOptions(t), opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

func addrInfo(h *Host) peer.AddrInfo {
	return peer.AddrInfo{ID: h.ID(), Addrs: h.Libp2p().Addrs()}
}

func connect(t testing.TB, from, to *Host) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return from.Libp2p().Connect(ctx, addrInfo(to))
}

// eventually polls cond until it holds or the generous deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}

// echoHandler answers a stream with what it reads.
func echoHandler(s network.Stream) {
	defer s.Close()
	_, _ = io.Copy(s, s)
}

// roundTrip opens a stream to proto on to, sends msg and reads the echo.
func roundTrip(ctx context.Context, from *Host, to peer.ID, proto protocol.ID, msg string) (string, error) {
	s, err := from.Libp2p().NewStream(ctx, to, proto)
	if err != nil {
		return "", err
	}
	defer s.Close()
	if _, err := s.Write([]byte(msg)); err != nil {
		return "", err
	}
	if err := s.CloseWrite(); err != nil {
		return "", err
	}
	b, err := io.ReadAll(s)
	if err != nil {
		return "", err
	}
	if string(b) != msg {
		return string(b), errors.New("echo mismatch")
	}
	return string(b), nil
}
