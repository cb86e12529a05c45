package host

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/multiformats/go-multistream"
)

func TestProtocolIDFormat(t *testing.T) {
	var id [NetworkIDSize]byte
	got := string(ProtocolID(id, "sync", "1"))
	parts := strings.Split(got, "/")
	if len(parts) != 5 || parts[0] != "" || parts[1] != "lfnet" || parts[3] != "sync" || parts[4] != "1" {
		t.Fatalf("ProtocolID = %q, want /lfnet/<tag>/sync/1", got)
	}
	if len(parts[2]) != 16 {
		t.Fatalf("network tag %q is %d characters, want 16", parts[2], len(parts[2]))
	}
	if ProtocolID(DefaultNetworkID, "sync", "1") == ProtocolID(NetworkIDFromName("other"), "sync", "1") {
		t.Fatal("different networks share a protocol id")
	}
	parsed, err := ParseNetworkID(strings.Repeat("ab", 32))
	if err != nil || parsed[0] != 0xab {
		t.Fatalf("ParseNetworkID: %v %x", err, parsed)
	}
	for _, bad := range []string{"", "ab", strings.Repeat("zz", 32)} {
		if _, err := ParseNetworkID(bad); !errors.Is(err, ErrInvalidNetworkID) {
			t.Errorf("ParseNetworkID(%q) = %v, want ErrInvalidNetworkID", bad, err)
		}
	}
}

func TestIdentityPersistsInDataDir(t *testing.T) {
	dir := t.TempDir()
	a := newTestHost(t, WithDataDir(dir))
	id := a.ID()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dir, KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && info.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", info.Mode().Perm())
	}
	b := newTestHost(t, WithDataDir(dir))
	if b.ID() != id {
		t.Fatalf("identity changed across restart: %s then %s", id, b.ID())
	}
	pub, err := b.ID().ExtractPublicKey()
	if err != nil || pub.Type() != crypto.Ed25519 {
		t.Fatalf("node id is not an ed25519 key: %v %v", pub, err)
	}
}

func TestIdentityWithoutDataDirIsEphemeral(t *testing.T) {
	a := newTestHost(t)
	b := newTestHost(t)
	if a.ID() == b.ID() {
		t.Fatal("two ephemeral hosts share an identity")
	}
}

func TestIdentityRefusesBadKeyFiles(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no POSIX permissions on Windows")
	}
	t.Run("permissions", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := LoadOrCreateKey(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, KeyFileName), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := New(context.Background(), append(testOptions(t), WithDataDir(dir))...)
		if !errors.Is(err, ErrKeyPermissions) {
			t.Fatalf("New with a 0644 key file: %v, want ErrKeyPermissions", err)
		}
	})
	t.Run("type", func(t *testing.T) {
		dir := t.TempDir()
		k, _, err := crypto.GenerateSecp256k1Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		data, err := crypto.MarshalPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, KeyFileName), data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOrCreateKey(dir); !errors.Is(err, ErrKeyType) {
			t.Fatalf("secp256k1 key file: %v, want ErrKeyType", err)
		}
		_, err = New(context.Background(), append(testOptions(t), WithLibp2pOptions(libp2p.Identity(k)))...)
		if !errors.Is(err, ErrKeyType) {
			t.Fatalf("secp256k1 libp2p.Identity: %v, want ErrKeyType", err)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, KeyFileName), []byte("not a key"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOrCreateKey(dir); !errors.Is(err, ErrKeyFile) {
			t.Fatalf("garbage key file: %v, want ErrKeyFile", err)
		}
	})
}

func TestAddrsAreFullP2PAddrs(t *testing.T) {
	h := newTestHost(t)
	addrs := h.Addrs()
	if len(addrs) == 0 {
		t.Fatal("no addresses")
	}
	for _, a := range addrs {
		info, err := peer.AddrInfoFromP2pAddr(a)
		if err != nil || info.ID != h.ID() {
			t.Fatalf("address %s does not end in /p2p/%s: %v", a, h.ID(), err)
		}
		if !strings.HasPrefix(a.String(), "/ip4/127.0.0.1/") {
			t.Fatalf("address %s is not on loopback", a)
		}
	}
}

// TestNetworkIDIsolation: hosts with the same network id speak lfnet protocols, hosts with
// different ids cannot, and only same-network nodes enter the address book.
func TestNetworkIDIsolation(t *testing.T) {
	netA := NetworkIDFromName("isolation test A")
	netB := NetworkIDFromName("isolation test B")
	a1 := newTestHost(t, WithNetworkID(netA))
	a2 := newTestHost(t, WithNetworkID(netA))
	b1 := newTestHost(t, WithNetworkID(netB))
	for _, h := range []*Host{a1, a2, b1} {
		h.Libp2p().SetStreamHandler(h.ProtocolID("echo", "1"), echoHandler)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if err := connect(t, a1, a2); err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(ctx, a1, a2.ID(), a1.ProtocolID("echo", "1"), "same network"); err != nil {
		t.Fatalf("same network: %v", err)
	}

	// The other network's node is reachable at the libp2p level, but no lfnet protocol
	// matches.
	if err := connect(t, a1, b1); err != nil {
		t.Fatal(err)
	}
	_, err := roundTrip(ctx, a1, b1.ID(), a1.ProtocolID("echo", "1"), "other network")
	var notSupported multistream.ErrNotSupported[protocol.ID]
	if !errors.As(err, &notSupported) {
		t.Fatalf("other network: %v, want protocols not supported", err)
	}
	_, err = roundTrip(ctx, b1, a1.ID(), b1.ProtocolID("echo", "1"), "other network")
	if !errors.As(err, &notSupported) {
		t.Fatalf("other network, reverse: %v, want protocols not supported", err)
	}

	eventually(t, "a1 to learn a2's record", func() bool {
		e, ok := a1.AddressBook().Get(a2.ID())
		return ok && e.Record != nil && len(e.Addrs) > 0
	})
	// Identify with b1 completed before the stream attempt failed. a1 handles identify
	// events in order, so once a node connected later is in the book, b1's event has been
	// handled too, and b1 must not have been taken in.
	a3 := newTestHost(t, WithNetworkID(netA))
	if err := connect(t, a3, a1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a1 to learn a3's record", func() bool {
		_, ok := a1.AddressBook().Get(a3.ID())
		return ok
	})
	if _, ok := a1.AddressBook().Get(b1.ID()); ok {
		t.Fatal("a node of another network entered the address book")
	}
}

// TestNetworkSecret: only nodes with the same secret can connect at all.
func TestNetworkSecret(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, 32)
	other := bytes.Repeat([]byte{8}, 32)
	tcpOnly := WithListenAddrs(ma.StringCast("/ip4/127.0.0.1/tcp/0"))
	newPrivate := func(opts ...Option) *Host {
		h, err := New(context.Background(), append([]Option{tcpOnly, WithNATPortMap(false)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		return h
	}
	a := newPrivate(WithNetworkSecret(secret))
	b := newPrivate(WithNetworkSecret(secret))
	stranger := newPrivate()
	wrong := newPrivate(WithNetworkSecret(other))

	if err := connect(t, b, a); err != nil {
		t.Fatalf("same secret: %v", err)
	}
	for name, h := range map[string]*Host{"no secret": stranger, "other secret": wrong} {
		if err := connect(t, h, a); err == nil {
			t.Fatalf("%s: connected to a private network node", name)
		}
		if err := connect(t, a, h); err == nil {
			t.Fatalf("%s: private network node connected out to it", name)
		}
		if a.Libp2p().Network().Connectedness(h.ID()) == network.Connected {
			t.Fatalf("%s: connected", name)
		}
	}

	_, err := New(context.Background(), WithNATPortMap(false), WithNetworkSecret(secret), WithListenAddrs(loopbackAddrs(t)...))
	if !errors.Is(err, ErrQUICWithSecret) {
		t.Fatalf("QUIC with a secret: %v, want ErrQUICWithSecret", err)
	}
	if _, err := New(context.Background(), WithNetworkSecret([]byte("short"))); !errors.Is(err, ErrOption) {
		t.Fatalf("short secret: %v, want ErrOption", err)
	}
}

// TestAttach: lfnet runs on an application's host and never closes it.
func TestAttach(t *testing.T) {
	app, err := libp2p.New(libp2p.ListenAddrs(loopbackAddrs(t)...))
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	peerHost := newTestHost(t)

	x, err := Attach(app)
	if err != nil {
		t.Fatal(err)
	}
	if x.Libp2p() != app || x.ID() != app.ID() {
		t.Fatal("Attach does not wrap the given host")
	}
	x.Libp2p().SetStreamHandler(x.ProtocolID("echo", "1"), echoHandler)
	if err := connect(t, peerHost, x); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := roundTrip(ctx, peerHost, x.ID(), peerHost.ProtocolID("echo", "1"), "hi"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "attached host's book to learn the peer", func() bool {
		_, ok := x.AddressBook().Get(peerHost.ID())
		return ok
	})
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	// The application's host still works after lfnet is gone.
	if len(app.Network().ListenAddresses()) == 0 {
		t.Fatal("application host stopped listening")
	}
	if _, err := roundTrip(ctx, peerHost, app.ID(), peerHost.ProtocolID("echo", "1"), "still here"); err != nil {
		t.Fatalf("application host after lfnet Close: %v", err)
	}
	for _, p := range app.Mux().Protocols() {
		if strings.HasSuffix(string(p), "/"+nodeProtocolName+"/1") {
			t.Fatalf("lfnet left its handler %s behind", p)
		}
	}

	if _, err := Attach(app, WithNetworkSecret(bytes.Repeat([]byte{1}, 32))); !errors.Is(err, ErrOption) {
		t.Fatalf("Attach with a transport-level option: %v, want ErrOption", err)
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	h, err := New(context.Background(), testOptions(t)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.AddressBook().SetBootstrap(randomID(t), true); !errors.Is(err, ErrClosed) {
		t.Fatalf("address book write after Close: %v, want ErrClosed", err)
	}
}

// TestWebSocketAndLibp2pPassThrough: WebSocket is opt-in, and extra libp2p options reach
// the host (here the identify user agent).
func TestWebSocketAndLibp2pPassThrough(t *testing.T) {
	wsAddr := ma.StringCast("/ip4/127.0.0.1/tcp/0/ws")
	if _, err := New(context.Background(), WithNATPortMap(false), WithListenAddrs(wsAddr)); err == nil {
		t.Fatal("listened on WebSocket without WithWebSocket")
	}
	server := newTestHost(t, WithWebSocket(true), WithListenAddrs(wsAddr),
		WithLibp2pOptions(libp2p.UserAgent("lfnet-test-agent")))
	var wsAddrs []ma.Multiaddr
	for _, a := range server.Libp2p().Addrs() {
		if _, err := a.ValueForProtocol(ma.P_WS); err == nil {
			wsAddrs = append(wsAddrs, a)
		}
	}
	if len(wsAddrs) == 0 {
		t.Fatalf("no WebSocket address among %v", server.Libp2p().Addrs())
	}
	client := newTestHost(t, WithWebSocket(true))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := client.Libp2p().Connect(ctx, peer.AddrInfo{ID: server.ID(), Addrs: wsAddrs}); err != nil {
		t.Fatalf("connect over WebSocket: %v", err)
	}
	eventually(t, "identify to report the user agent", func() bool {
		v, err := client.Libp2p().Peerstore().Get(server.ID(), "AgentVersion")
		return err == nil && v == "lfnet-test-agent"
	})
}

// TestResourceLimitsApply: the resource manager enforces the configured limits (here: no
// inbound connections at all).
func TestResourceLimitsApply(t *testing.T) {
	blockInbound := rcmgr.PartialLimitConfig{
		System: rcmgr.ResourceLimits{ConnsInbound: rcmgr.BlockAllLimit},
	}.Build(defaultLimits())
	closed := newTestHost(t, WithResourceLimits(blockInbound))
	open := newTestHost(t)
	closed.Libp2p().SetStreamHandler(closed.ProtocolID("echo", "1"), echoHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = connect(t, open, closed) // the dialer's side may complete before the refusal
	if _, err := roundTrip(ctx, open, closed.ID(), closed.ProtocolID("echo", "1"), "hi"); err == nil {
		t.Fatal("inbound connection admitted despite a zero inbound limit")
	}
	if err := connect(t, closed, open); err != nil {
		t.Fatalf("outbound connections should still work: %v", err)
	}
	if _, err := New(context.Background(), WithConnLimits(10, 5)); !errors.Is(err, ErrOption) {
		t.Fatalf("inverted connection limits: %v, want ErrOption", err)
	}
}
