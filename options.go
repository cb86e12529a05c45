package lfnet

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	lfhost "github.com/lfnet/lfnet/host"
	"github.com/lfnet/lfnet/membership"
	"github.com/lfnet/lfnet/syncproto"
	"github.com/lfnet/lfnet/syncproto/logsync"
	"github.com/lfnet/lfnet/topics/discovery"
)

// Option configures a Node.
type Option func(*config) error

type config struct {
	dataDir     string
	libp2pHost  host.Host
	hostOpts    []lfhost.Option
	store       logsync.Store
	logger      *slog.Logger
	metrics     prometheus.Registerer
	membership  membership.Config
	discovery   discovery.Config
	syncConfig  syncproto.CoordinatorConfig
	gossipLimit int
	leaveWait   time.Duration
	antiEntropy time.Duration
}

func defaultConfig() *config {
	return &config{
		logger:      slog.Default(),
		membership:  membership.DefaultConfig(),
		discovery:   discovery.DefaultConfig(),
		syncConfig:  syncproto.DefaultCoordinatorConfig(),
		gossipLimit: 4 << 10,
		leaveWait:   2 * time.Second,
		antiEntropy: time.Minute,
	}
}

// WithDataDir keeps the node's identity key, address book and logs in dir (created if
// missing), so that they survive restarts. Without it everything lives in memory.
func WithDataDir(dir string) Option {
	return func(c *config) error { c.dataDir = dir; return nil }
}

// WithHost runs lfnet on an existing libp2p host owned by the application: lfnet adds its
// protocol handlers and never closes the host.
func WithHost(h host.Host) Option {
	return func(c *config) error {
		if h == nil {
			return fmt.Errorf("%w: nil host", ErrOption)
		}
		c.libp2pHost = h
		return nil
	}
}

// WithListenAddrs sets the addresses to listen on, e.g. "/ip4/0.0.0.0/udp/0/quic-v1".
func WithListenAddrs(addrs ...string) Option {
	return func(c *config) error {
		mas, err := parseAddrs(addrs)
		if err != nil {
			return err
		}
		c.hostOpts = append(c.hostOpts, lfhost.WithListenAddrs(mas...))
		return nil
	}
}

// WithBootstrap sets nodes, as full multiaddrs ending in /p2p/<id>, that the node dials at
// start and keeps dialling; discovery starts from them.
func WithBootstrap(addrs ...string) Option {
	return func(c *config) error {
		mas, err := parseAddrs(addrs)
		if err != nil {
			return err
		}
		c.hostOpts = append(c.hostOpts, lfhost.WithBootstrap(mas...))
		return nil
	}
}

// WithRelays sets circuit-relay v2 relays (for example lfnode instances), as full multiaddrs
// ending in /p2p/<id>. The node keeps a reservation on each and advertises the relayed
// addresses in its signed peer record, so that nodes that cannot reach it directly (on
// another private network, behind a NAT) connect through a relay; see
// host.WithStaticRelays.
func WithRelays(addrs ...string) Option {
	return func(c *config) error {
		mas, err := parseAddrs(addrs)
		if err != nil {
			return err
		}
		infos, err := peer.AddrInfosFromP2pAddrs(mas...)
		if err != nil {
			return fmt.Errorf("%w: relay address: %v", ErrOption, err)
		}
		c.hostOpts = append(c.hostOpts, lfhost.WithStaticRelays(infos...))
		return nil
	}
}

// WithMDNS finds nodes on the local network by multicast DNS (off by default: it tells the
// LAN that this node exists; it never reveals topics).
func WithMDNS(enable bool) Option {
	return func(c *config) error { c.hostOpts = append(c.hostOpts, lfhost.WithMDNS(enable)); return nil }
}

// WithHostOptions passes options to the host package (network id, network secret, relays,
// gating, transports, resource limits, ...).
func WithHostOptions(opts ...lfhost.Option) Option {
	return func(c *config) error { c.hostOpts = append(c.hostOpts, opts...); return nil }
}

// WithStore sets the log store. By default the node keeps logs in its bbolt database in the
// data directory, or in memory without one. The node does not close a store given here.
func WithStore(s logsync.Store) Option {
	return func(c *config) error { c.store = s; return nil }
}

// WithLogger sets the structured logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error { c.logger = l; return nil }
}

// WithMetrics registers the node's Prometheus metrics on reg.
func WithMetrics(reg prometheus.Registerer) Option {
	return func(c *config) error { c.metrics = reg; return nil }
}

// WithMembershipConfig tunes the HyParView overlays.
func WithMembershipConfig(cfg membership.Config) Option {
	return func(c *config) error { c.membership = cfg; return nil }
}

// WithDiscoveryConfig tunes topic discovery and its random walks.
func WithDiscoveryConfig(cfg discovery.Config) Option {
	return func(c *config) error { c.discovery = cfg; return nil }
}

// WithSyncConfig tunes the sync coordinator (retries, periodic re-sync). Live mode is
// chosen per LogSync call.
func WithSyncConfig(cfg syncproto.CoordinatorConfig) Option {
	return func(c *config) error { c.syncConfig = cfg; return nil }
}

// WithAntiEntropy sets how often each synced topic also syncs with one random node known
// to share it that is not an overlay neighbour (default 1 min; 0 turns it off). It lets
// overlay components that never link up, as after a partition heals, still converge.
func WithAntiEntropy(every time.Duration) Option {
	return func(c *config) error {
		if every < 0 {
			return fmt.Errorf("%w: anti-entropy interval %v", ErrOption, every)
		}
		c.antiEntropy = every
		return nil
	}
}

// WithGossipMessageLimit sets the largest gossip payload (default 4 KiB).
func WithGossipMessageLimit(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("%w: gossip message limit %d", ErrOption, n)
		}
		c.gossipLimit = n
		return nil
	}
}

func parseAddrs(addrs []string) ([]ma.Multiaddr, error) {
	out := make([]ma.Multiaddr, 0, len(addrs))
	for _, a := range addrs {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			return nil, fmt.Errorf("%w: address %q: %v", ErrOption, a, err)
		}
		out = append(out, m)
	}
	return out, nil
}
