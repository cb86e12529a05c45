package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/proto"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/goleak"

	"github.com/lfnet/lfnet"
	"github.com/lfnet/lfnet/host"
	"github.com/lfnet/lfnet/syncproto/logsync"
	"github.com/lfnet/lfnet/topics"
	"github.com/lfnet/lfnet/topics/discovery"
)

// buildDir holds the lfnode binary built for TestBinaryRunsAndStopsOnSIGTERM.
var buildDir string

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		if buildDir != "" {
			os.RemoveAll(buildDir)
		}
		os.Exit(code)
	}))
}

// lineWriter hands complete lines written to it to a channel.
type lineWriter struct {
	mu    sync.Mutex
	buf   []byte
	lines chan string
}

func newLineWriter() *lineWriter { return &lineWriter{lines: make(chan string, 256)} }

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		select {
		case w.lines <- string(w.buf[:i]):
		default:
		}
		w.buf = w.buf[i+1:]
	}
}

// firstAddr waits for the first printed multiaddr.
func firstAddr(t *testing.T, lines <-chan string) peer.AddrInfo {
	t.Helper()
	select {
	case line := <-lines:
		info, err := peer.AddrInfoFromString(line)
		if err != nil {
			t.Fatalf("first output line %q is not a /p2p/ multiaddr: %v", line, err)
		}
		return *info
	case <-time.After(60 * time.Second):
		t.Fatal("lfnode printed no address")
	}
	return peer.AddrInfo{}
}

// startInProcess runs lfnode's run function on loopback until the test ends.
func startInProcess(t *testing.T, extra ...string) peer.AddrInfo {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := newLineWriter()
	done := make(chan error, 1)
	args := append([]string{"--data", t.TempDir(), "--listen", "/ip4/127.0.0.1/tcp/0", "--nat-portmap=false", "--log-level", "warn"}, extra...)
	go func() { done <- run(ctx, args, out, io.Discard) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	select {
	case line := <-out.lines:
		info, err := peer.AddrInfoFromString(line)
		if err != nil {
			t.Fatalf("output line %q is not a /p2p/ multiaddr: %v", line, err)
		}
		return *info
	case err := <-done:
		t.Fatalf("run ended early: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("lfnode printed no address")
	}
	return peer.AddrInfo{}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}

func TestHelpExplainsEveryFlag(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"--help"}, io.Discard, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v, want flag.ErrHelp (exit status 0)", err)
	}
	help := out.String()
	fs, _ := newFlagSet(io.Discard)
	count := 0
	fs.VisitAll(func(f *flag.Flag) {
		count++
		if strings.TrimSpace(f.Usage) == "" {
			t.Errorf("flag --%s has no explanation", f.Name)
		}
		if !strings.Contains(help, "  -"+f.Name) {
			t.Errorf("--help does not show --%s", f.Name)
		}
	})
	if count < 10 {
		t.Fatalf("only %d flags", count)
	}
	for _, want := range []string{"SIGTERM", "/p2p/", "relay", "AutoNAT"} {
		if !strings.Contains(help, want) {
			t.Errorf("--help does not mention %q", want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, args := range map[string][]string{
		"no data":          {},
		"bad listen":       {"--data", dir, "--listen", "not-an-addr"},
		"id and name":      {"--data", dir, "--network-id", strings.Repeat("00", 32), "--network-name", "x"},
		"bad network id":   {"--data", dir, "--network-id", "abc"},
		"quic with secret": {"--data", dir, "--network-secret-file", secret, "--listen", "/ip4/127.0.0.1/udp/0/quic-v1"},
		"stray argument":   {"--data", dir, "extra"},
		"bad log level":    {"--data", dir, "--log-level", "loud"},
		"unknown flag":     {"--data", dir, "--no-such-flag"},
	} {
		err := run(context.Background(), args, io.Discard, io.Discard)
		if !errors.As(err, new(usageError)) {
			t.Errorf("%s: %v, want a usage error", name, err)
		}
	}
}

func TestListFlag(t *testing.T) {
	var l listFlag
	l.values = []string{"default"}
	for _, s := range []string{"a,b", " c ", ""} {
		if err := l.Set(s); err != nil {
			t.Fatal(err)
		}
	}
	if got := l.String(); got != "a,b,c" {
		t.Fatalf("listFlag = %q, want a,b,c (explicit values replace the default)", got)
	}
}

// TestServesRelayAndAutoNAT: a node connecting to lfnode sees the relay (hop) and AutoNAT
// protocols and the lfnet node protocol of the default network.
func TestServesRelayAndAutoNAT(t *testing.T) {
	relay := startInProcess(t)
	client := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := client.Libp2p().Connect(ctx, relay); err != nil {
		t.Fatal(err)
	}
	want := []protocol.ID{proto.ProtoIDv2Hop, "/libp2p/autonat/1.0.0", client.ProtocolID("node", "1")}
	eventually(t, "identify to report lfnode's protocols", func() bool {
		got, err := client.Libp2p().Peerstore().SupportsProtocols(relay.ID, want...)
		return err == nil && len(got) == len(want)
	})
}

// relayOnly lets a node connect directly only to the relay: every other connection, in
// either direction, must go through a relay circuit.
type relayOnly struct{ relay peer.ID }

func isCircuit(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

func (g relayOnly) InterceptPeerDial(peer.ID) bool { return true }
func (g relayOnly) InterceptAddrDial(p peer.ID, a ma.Multiaddr) bool {
	return p == g.relay || isCircuit(a)
}
func (g relayOnly) InterceptAccept(network.ConnMultiaddrs) bool { return true }
func (g relayOnly) InterceptSecured(_ network.Direction, p peer.ID, c network.ConnMultiaddrs) bool {
	return p == g.relay || isCircuit(c.RemoteMultiaddr())
}
func (g relayOnly) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

func newClient(t *testing.T, opts ...host.Option) *host.Host {
	t.Helper()
	base := []host.Option{
		host.WithListenAddrs(ma.StringCast("/ip4/127.0.0.1/tcp/0"), ma.StringCast("/ip4/127.0.0.1/udp/0/quic-v1")),
		host.WithNATPortMap(false),
	}
	h, err := host.New(context.Background(), append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

// TestRelayConnectsUnreachableNodes: A and B can only make direct connections to the lfnode
// relay; B keeps a reservation on it as its static relay and advertises the circuit, A
// dials B at B's advertised addresses, and a stream between them works over the limited,
// relayed connection.
func TestRelayConnectsUnreachableNodes(t *testing.T) {
	relay := startInProcess(t)
	gate := host.WithConnectionGater(relayOnly{relay: relay.ID})

	b := newClient(t, gate, host.WithStaticRelays(relay))
	echo := b.ProtocolID("echo", "1")
	b.Libp2p().SetStreamHandler(echo, func(s network.Stream) {
		defer s.Close()
		_, _ = io.Copy(s, s)
	})
	eventually(t, "B to advertise a circuit through the relay", func() bool {
		return slices.ContainsFunc(b.Libp2p().Addrs(), isCircuit)
	})
	advertised := peer.AddrInfo{ID: b.ID(), Addrs: b.Libp2p().Addrs()}

	a := newClient(t, gate)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Direct dialling is impossible...
	direct := peer.AddrInfo{ID: b.ID()}
	for _, addr := range b.Libp2p().Network().ListenAddresses() {
		direct.Addrs = append(direct.Addrs, addr)
	}
	if err := a.Libp2p().Connect(network.WithForceDirectDial(ctx, "test"), direct); err == nil {
		t.Fatal("A dialled B directly")
	}
	// ...but B's advertised addresses lead through the relay.
	if err := a.Libp2p().Connect(ctx, advertised); err != nil {
		t.Fatalf("dial %v: %v", advertised.Addrs, err)
	}
	s, err := a.Libp2p().NewStream(network.WithAllowLimitedConn(ctx, "relayed test"), b.ID(), echo)
	if err != nil {
		t.Fatalf("stream over the relayed connection: %v", err)
	}
	defer s.Close()
	if !s.Conn().Stat().Limited || !isCircuit(s.Conn().RemoteMultiaddr()) {
		t.Fatalf("stream runs over %s (limited=%v), want a limited relay circuit", s.Conn().RemoteMultiaddr(), s.Conn().Stat().Limited)
	}
	if _, err := s.Write([]byte("through the relay")); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(s)
	if err != nil || string(reply) != "through the relay" {
		t.Fatalf("echo over the relay: %q, %v", reply, err)
	}
	for _, c := range a.Libp2p().Network().ConnsToPeer(b.ID()) {
		if !isCircuit(c.RemoteMultiaddr()) {
			t.Fatalf("A has a direct connection to B: %s", c.RemoteMultiaddr())
		}
	}
}

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// buildBinary compiles lfnode once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "lfnode-test")
		if err != nil {
			buildErr = err
			return
		}
		buildDir = dir
		binary = filepath.Join(dir, "lfnode")
		if runtime.GOOS == "windows" {
			binary += ".exe"
		}
		out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", binary, ".").CombinedOutput()
		if err != nil {
			buildErr = errors.New(string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("build lfnode: %v", buildErr)
	}
	return binary
}

// TestBinaryRunsAndStopsOnSIGTERM runs the real command: it prints its addresses, accepts a
// connection, exits with status 0 on SIGTERM, and comes back with the same identity.
func TestBinaryRunsAndStopsOnSIGTERM(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGTERM on Windows")
	}
	bin := buildBinary(t)
	data := t.TempDir()
	var ids []peer.ID
	for range 2 {
		cmd := exec.Command(bin, "--data", data, "--listen", "/ip4/127.0.0.1/tcp/0,/ip4/127.0.0.1/udp/0/quic-v1", "--nat-portmap=false")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 16)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		info := firstAddr(t, lines)
		ids = append(ids, info.ID)

		client := newClient(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = client.Libp2p().Connect(ctx, info)
		cancel()
		if err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("connect to lfnode: %v\nstderr:\n%s", err, stderr.String())
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		for range lines {
			// Drain stdout so the process is never blocked writing.
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("lfnode exit after SIGTERM: %v\nstderr:\n%s", err, stderr.String())
		}
		if !strings.Contains(stderr.String(), "lfnode stopped") {
			t.Fatalf("no clean shutdown logged:\n%s", stderr.String())
		}
		if err := client.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if ids[0] != ids[1] {
		t.Fatalf("identity changed across restarts: %s, %s", ids[0], ids[1])
	}
}

// TestRelayedNodesMeetAndSync: two lfnet nodes that can each reach only lfnode (their
// bootstrap node and relay) find each other through discovery sessions with lfnode, which
// holds no topics but shares the records it knows, connect through the relay circuit their
// records advertise, and sync a topic's log over it.
func TestRelayedNodesMeetAndSync(t *testing.T) {
	relay := startInProcess(t, "--relay-unlimited")
	relayAddr := relay.Addrs[0].Encapsulate(ma.StringCast("/p2p/" + relay.ID.String())).String()
	fastWalks := discovery.DefaultConfig()
	fastWalks.StepInterval = 200 * time.Millisecond
	newNode := func() *lfnet.Node {
		n, err := lfnet.New(context.Background(),
			lfnet.WithListenAddrs("/ip4/127.0.0.1/tcp/0"),
			lfnet.WithHostOptions(host.WithNATPortMap(false), host.WithConnectionGater(relayOnly{relay: relay.ID})),
			lfnet.WithBootstrap(relayAddr),
			lfnet.WithRelays(relayAddr),
			lfnet.WithDiscoveryConfig(fastWalks),
		)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := n.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return n
	}
	x, y := newNode(), newNode()
	room := topics.Random()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	xLogs, err := x.LogSync(ctx, room, true)
	if err != nil {
		t.Fatal(err)
	}
	defer xLogs.Close()
	yLogs, err := y.LogSync(ctx, room, true)
	if err != nil {
		t.Fatal(err)
	}
	defer yLogs.Close()
	op, err := xLogs.Publish(ctx, []byte("through the relay"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "Y to receive X's operation", func() bool {
		found := false
		_ = yLogs.Range(ctx, func(e logsync.Entry) error {
			found = found || e.Op.Hash() == op.Hash()
			return nil
		})
		return found
	})
	conns := x.Host().Libp2p().Network().ConnsToPeer(y.ID())
	if len(conns) == 0 {
		t.Fatal("X synced with Y without a connection to it")
	}
	for _, c := range conns {
		if !isCircuit(c.RemoteMultiaddr()) {
			t.Fatalf("X has a direct connection to Y: %s", c.RemoteMultiaddr())
		}
	}
}
