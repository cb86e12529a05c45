// Command lfnode runs an always-on lfnet node: a stable bootstrap node that other nodes
// list with WithBootstrap, a circuit-relay v2 relay for nodes that cannot reach each other
// directly, and an AutoNAT server that tells nodes whether they are reachable. It also
// answers discovery sessions: holding no topics, it shares nothing but the signed records
// of nodes it knows, which is how nodes that know only lfnode find each other.
//
// It keeps its identity (and address book) in --data, prints its full multiaddrs (one per
// line, ending in /p2p/<node id>) on standard output once it listens, logs to standard
// error, and shuts down cleanly on SIGINT or SIGTERM. Run `lfnode --help` for the flags.
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/lfnet/lfnet/host"
	"github.com/lfnet/lfnet/topics"
	"github.com/lfnet/lfnet/topics/discovery"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return
	case errors.As(err, new(usageError)):
		fmt.Fprintln(os.Stderr, "lfnode:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "lfnode:", err)
		os.Exit(1)
	}
}

// usageError marks mistakes in the command line (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

const usageHeader = `Usage: lfnode --data DIR [flags]

lfnode is an always-on lfnet node: a bootstrap node for other nodes (it passes on the
signed records of the nodes it knows, never topics), a circuit-relay v2 relay, and an
AutoNAT server. It prints each of its multiaddrs (ending in /p2p/<node id>)
on its own line on standard output once it listens; hand one of them to other nodes as a
bootstrap address or static relay. Logs go to standard error. SIGINT or SIGTERM stops it
cleanly (exit status 0).

Flags (-flag and --flag are the same; -h or --help shows this text):
`

const defaultListen = "/ip4/0.0.0.0/tcp/4001,/ip4/0.0.0.0/udp/4001/quic-v1,/ip6/::/tcp/4001,/ip6/::/udp/4001/quic-v1"

// listFlag collects a repeatable, comma-separated flag.
type listFlag struct {
	values []string
	set    bool
}

func (l *listFlag) String() string { return strings.Join(l.values, ",") }

func (l *listFlag) Set(s string) error {
	if !l.set {
		l.values, l.set = nil, true // the first explicit use replaces the default
	}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			l.values = append(l.values, part)
		}
	}
	return nil
}

type options struct {
	dataDir        string
	listen         listFlag
	bootstrap      listFlag
	networkID      string
	networkName    string
	secretFile     string
	websocket      bool
	relayUnlimited bool
	natPortMap     bool
	mdns           bool
	logLevel       string
}

// newFlagSet defines lfnode's flags, writing help and errors to output.
func newFlagSet(output io.Writer) (*flag.FlagSet, *options) {
	o := &options{}
	o.listen.values = strings.Split(defaultListen, ",")
	fs := flag.NewFlagSet("lfnode", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHeader)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.dataDir, "data", "", "data `directory` (required): holds the node's identity key node.key (mode 0600,\ncreated on first start) and its address book lfnet.db; created with mode 0700")
	fs.Var(&o.listen, "listen", "`multiaddrs` to listen on, comma separated or repeated; port 0 picks a free port.\nWith --network-secret-file, QUIC addresses are refused (and left out of the default)")
	fs.Var(&o.bootstrap, "bootstrap", "other always-on nodes to stay connected to, as `multiaddrs` ending in /p2p/<node id>,\ncomma separated or repeated; redialled with backoff when the connection drops")
	fs.StringVar(&o.networkID, "network-id", "", "network id as 64 `hex` characters (default: lfnet's default network); nodes only\nspeak lfnet protocols with nodes of the same network")
	fs.StringVar(&o.networkName, "network-name", "", "derive the network id from this `name` (blake3 of the name) instead of --network-id")
	fs.StringVar(&o.secretFile, "network-secret-file", "", "`file` holding a 32-byte network secret as 64 hex characters; makes the network\nprivate (libp2p pre-shared key): nodes without the secret cannot connect at all.\nOnly TCP and WebSocket work with a secret")
	fs.BoolVar(&o.websocket, "websocket", false, "also listen on WebSocket (adds /tcp/0/ws addresses unless --listen names some)")
	fs.BoolVar(&o.relayUnlimited, "relay-unlimited", false, "relay connections without libp2p's default limits (2 minutes and 128 KiB per\ndirection per relayed connection, which are enough for hole punching)")
	fs.BoolVar(&o.natPortMap, "nat-portmap", true, "ask the local router for a port mapping (UPnP / NAT-PMP)")
	fs.BoolVar(&o.mdns, "mdns", false, "announce this node and find others on the local network with multicast DNS")
	fs.StringVar(&o.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	return fs, o
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs, o := newFlagSet(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected arguments %q", fs.Args())
	}
	if o.dataDir == "" {
		return nil, usagef("--data is required")
	}
	if o.networkID != "" && o.networkName != "" {
		return nil, usagef("--network-id and --network-name are mutually exclusive")
	}
	return o, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, usagef("--log-level: %v", err)
	}
	return l, nil
}

func parseAddrs(flagName string, values []string) ([]ma.Multiaddr, error) {
	out := make([]ma.Multiaddr, 0, len(values))
	for _, v := range values {
		a, err := ma.NewMultiaddr(v)
		if err != nil {
			return nil, usagef("--%s %q: %v", flagName, v, err)
		}
		out = append(out, a)
	}
	return out, nil
}

func isQUIC(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_QUIC_V1)
	return err == nil
}

func readSecret(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--network-secret-file: %w", err)
	}
	secret, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(secret) != 32 {
		return nil, usagef("--network-secret-file %s: want 64 hex characters (32 bytes)", path)
	}
	return secret, nil
}

// hostOptions turns the command line into host options.
func hostOptions(o *options, log *slog.Logger) ([]host.Option, error) {
	opts := []host.Option{
		host.WithDataDir(o.dataDir),
		host.WithLogger(log),
		host.WithRelayService(true, !o.relayUnlimited),
		host.WithAutoNATService(true),
		host.WithNATPortMap(o.natPortMap),
		host.WithWebSocket(o.websocket),
		host.WithMDNS(o.mdns),
	}
	switch {
	case o.networkID != "":
		id, err := host.ParseNetworkID(o.networkID)
		if err != nil {
			return nil, usagef("--network-id: %v", err)
		}
		opts = append(opts, host.WithNetworkID(id))
	case o.networkName != "":
		opts = append(opts, host.WithNetworkID(host.NetworkIDFromName(o.networkName)))
	}
	var secret []byte
	if o.secretFile != "" {
		var err error
		if secret, err = readSecret(o.secretFile); err != nil {
			return nil, err
		}
		opts = append(opts, host.WithNetworkSecret(secret))
	}
	listen, err := parseAddrs("listen", o.listen.values)
	if err != nil {
		return nil, err
	}
	if secret != nil {
		if o.listen.set {
			for _, a := range listen {
				if isQUIC(a) {
					return nil, usagef("--listen %s: QUIC cannot be used with a network secret", a)
				}
			}
		} else {
			listen = slices.DeleteFunc(listen, isQUIC)
		}
	}
	if o.websocket && !o.listen.set {
		listen = append(listen, ma.StringCast("/ip4/0.0.0.0/tcp/0/ws"), ma.StringCast("/ip6/::/tcp/0/ws"))
	}
	opts = append(opts, host.WithListenAddrs(listen...))
	if len(o.bootstrap.values) > 0 {
		boot, err := parseAddrs("bootstrap", o.bootstrap.values)
		if err != nil {
			return nil, err
		}
		opts = append(opts, host.WithBootstrap(boot...))
	}
	return opts, nil
}

// run starts the node, prints its addresses on stdout and serves until ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	level, err := parseLevel(o.logLevel)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	opts, err := hostOptions(o, log)
	if err != nil {
		return err
	}
	h, err := host.New(ctx, opts...)
	if err != nil {
		return err
	}
	for _, a := range h.Addrs() {
		if _, err := fmt.Fprintln(stdout, a); err != nil {
			h.Close()
			return fmt.Errorf("print addresses: %w", err)
		}
	}
	// lfnode holds no topics, so discovery's private set intersection finds nothing in
	// common with anyone; but every session still hands the other side a sample of the
	// signed records lfnode knows. That makes lfnode a step of other nodes' random walks:
	// two nodes that only know lfnode learn each other's records through it, then find
	// their common topics with each other directly. It never walks itself (it has nothing
	// to look for); its address book fills from the nodes that connect to it.
	disc := discovery.New(h.Libp2p(), h.ProtocolID("discovery", "1"), h.AddressBook(), topics.NewRegistry(),
		discovery.Config{SessionTimeout: discovery.DefaultConfig().SessionTimeout, Logger: log})
	networkID := h.NetworkID()
	log.Info("lfnode running", "node", h.ID(), "network", hex.EncodeToString(networkID[:]))
	<-ctx.Done()
	log.Info("lfnode stopping")
	if err := errors.Join(disc.Close(), h.Close()); err != nil {
		return err
	}
	log.Info("lfnode stopped")
	return nil
}
