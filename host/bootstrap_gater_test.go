package host

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// TestBootstrapRedialsAfterRestart: a bootstrap node is dialled at start, and when it
// restarts (same key, same port) the client reconnects by itself.
func TestBootstrapRedialsAfterRestart(t *testing.T) {
	dir := t.TempDir()
	boot, err := New(context.Background(), WithDataDir(dir), WithNATPortMap(false),
		WithListenAddrs(ma.StringCast("/ip4/127.0.0.1/tcp/0")))
	if err != nil {
		t.Fatal(err)
	}
	bootID := boot.ID()
	listen := boot.Libp2p().Network().ListenAddresses()
	bootAddrs := boot.Addrs()

	client := newTestHost(t, WithBootstrap(bootAddrs...))
	connected := func() bool { return client.Libp2p().Network().Connectedness(bootID) == network.Connected }
	eventually(t, "the client to dial its bootstrap node", connected)
	if e, ok := client.AddressBook().Get(bootID); !ok || !e.Bootstrap {
		t.Fatalf("bootstrap node not flagged in the address book: %+v", e)
	}
	if !client.Libp2p().ConnManager().IsProtected(bootID, bootstrapProtectTag) {
		t.Fatal("bootstrap connection not protected from trimming")
	}

	if err := boot.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the client to notice the bootstrap node is gone", func() bool { return !connected() })

	boot2, err := New(context.Background(), WithDataDir(dir), WithNATPortMap(false), WithListenAddrs(listen...))
	if err != nil {
		t.Fatalf("restart bootstrap node on %v: %v", listen, err)
	}
	defer boot2.Close()
	if boot2.ID() != bootID {
		t.Fatal("bootstrap node changed identity")
	}
	eventually(t, "the client to redial the restarted bootstrap node", connected)
}

// connWatch records every peer a host ever had a connection with.
type connWatch struct {
	mu    sync.Mutex
	peers map[peer.ID]bool
}

func watchConns(h *Host) *connWatch {
	w := &connWatch{peers: make(map[peer.ID]bool)}
	h.Libp2p().Network().Notify(&network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.peers[c.RemotePeer()] = true
		},
	})
	return w
}

func (w *connWatch) saw(id peer.ID) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.peers[id]
}

// refusesInbound checks that gated never accepts a connection from h: libp2p dialers may
// finish their side of the handshake before the listener's gater closes the connection, so
// the proof is on the gated side, plus the failure of any protocol h tries to run.
func refusesInbound(t *testing.T, gated *Host, seen *connWatch, h *Host) {
	t.Helper()
	gated.Libp2p().SetStreamHandler(gated.ProtocolID("echo", "1"), echoHandler)
	dialEachTransport(t, h, gated)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := roundTrip(ctx, h, gated.ID(), gated.ProtocolID("echo", "1"), "let me in"); err == nil {
		t.Fatal("a refused node ran a protocol on the gated host")
	}
	if seen.saw(h.ID()) {
		t.Fatal("the gated host accepted a connection from a refused node")
	}
}

// dialEachTransport connects from -> to over each of to's addresses separately.
func dialEachTransport(t *testing.T, from, to *Host) []error {
	t.Helper()
	var errs []error
	for _, a := range to.Libp2p().Addrs() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := from.Libp2p().Connect(network.WithForceDirectDial(ctx, "test"), peer.AddrInfo{ID: to.ID(), Addrs: []ma.Multiaddr{a}})
		cancel()
		errs = append(errs, err)
	}
	return errs
}

func TestGatingDenyList(t *testing.T) {
	denied := newTestHost(t)
	friend := newTestHost(t)
	gated := newTestHost(t, WithDenyList(denied.ID()))
	seen := watchConns(gated)

	// Outbound: the gated host refuses to dial a denied node.
	for _, err := range dialEachTransport(t, gated, denied) {
		if err == nil {
			t.Fatal("dialled a denied node")
		}
	}
	// Inbound: a denied node's connection is refused on every transport.
	refusesInbound(t, gated, seen, denied)
	// Others are unaffected, both ways.
	for _, err := range dialEachTransport(t, friend, gated) {
		if err != nil {
			t.Fatalf("connection from an allowed node: %v", err)
		}
	}
	if err := connect(t, gated, friend); err != nil {
		t.Fatal(err)
	}
	if seen.saw(denied.ID()) {
		t.Fatal("accepted a connection from a denied node")
	}
}

func TestGatingAllowList(t *testing.T) {
	listed := newTestHost(t)
	unlisted := newTestHost(t)
	both := newTestHost(t)
	gated := newTestHost(t, WithAllowList(listed.ID(), both.ID()), WithDenyList(both.ID()))
	seen := watchConns(gated)

	for _, err := range dialEachTransport(t, listed, gated) {
		if err != nil {
			t.Fatalf("inbound from a listed node: %v", err)
		}
	}
	if err := connect(t, gated, listed); err != nil {
		t.Fatalf("outbound to a listed node: %v", err)
	}
	for _, h := range []*Host{unlisted, both} {
		for _, err := range dialEachTransport(t, gated, h) {
			if err == nil {
				t.Fatal("dialled a node outside the allow list (or denied)")
			}
		}
		refusesInbound(t, gated, seen, h)
	}
}

// TestBootstrapFlagFollowsConfiguration: the persisted bootstrap flag is dropped when the
// node is no longer configured as a bootstrap node.
func TestBootstrapFlagFollowsConfiguration(t *testing.T) {
	dir := t.TempDir()
	key, id := newKey(t)
	bootAddr := ma.StringCast("/ip4/127.0.0.1/tcp/9/p2p/" + id.String())

	a := newTestHost(t, WithDataDir(dir), WithBootstrap(bootAddr))
	if err := a.AddressBook().AddRecord(signedRecord(t, key, id, 1, "/ip4/127.0.0.1/tcp/9")); err != nil {
		t.Fatal(err)
	}
	if e, _ := a.AddressBook().Get(id); !e.Bootstrap {
		t.Fatal("configured bootstrap node not flagged")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b := newTestHost(t, WithDataDir(dir))
	e, ok := b.AddressBook().Get(id)
	if !ok || e.Bootstrap {
		t.Fatalf("after dropping it from the configuration: %+v (found %v), want a plain entry", e, ok)
	}
}
