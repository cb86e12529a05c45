package host

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	ma "github.com/multiformats/go-multiaddr"
	"go.etcd.io/bbolt"
)

// ErrOption is returned for an invalid option or an option that does not apply (for example
// a transport option given to Attach, whose host is already built).
var ErrOption = errors.New("host: invalid option")

// Option configures New and Attach.
type Option func(*config) error

type config struct {
	dataDir       string
	db            *bbolt.DB
	listenAddrs   []ma.Multiaddr
	networkID     [NetworkIDSize]byte
	secret        []byte
	bootstrap     []peer.AddrInfo
	mdns          bool
	mdnsIfaces    []string
	mdnsPort      int
	allow, deny   []peer.ID
	gater         connmgr.ConnectionGater
	staticRelays  []peer.AddrInfo
	websocket     bool
	natPortMap    bool
	relayService  bool
	relayLimited  bool
	autoNATSvc    bool
	libp2pOpts    []libp2p.Option
	logger        *slog.Logger
	limits        *rcmgr.ConcreteLimitConfig
	connLow       int
	connHigh      int
	staleAfter    time.Duration
	maintainEvery time.Duration
	now           func() time.Time

	// forNew records options that only New can honour, to refuse them in Attach.
	forNew []string
}

func defaultConfig() *config {
	return &config{
		networkID:     DefaultNetworkID,
		natPortMap:    true,
		relayLimited:  true,
		connLow:       DefaultConnLow,
		connHigh:      DefaultConnHigh,
		staleAfter:    DefaultStaleAfter,
		maintainEvery: time.Minute,
		now:           time.Now,
	}
}

func (c *config) onlyNew(name string) { c.forNew = append(c.forNew, name) }

// Defaults for the connection manager and the address book.
const (
	// DefaultConnLow and DefaultConnHigh are the connection manager's watermarks: above
	// High, connections are trimmed down to Low (bootstrap nodes are protected).
	DefaultConnLow  = 96
	DefaultConnHigh = 192
	// DefaultStaleAfter is how long a node may go unseen and unreached before the host drops
	// it from the address book.
	DefaultStaleAfter = 30 * 24 * time.Hour
)

// WithDataDir keeps the node's identity key (node.key, mode 0600) and, unless WithDB is
// given, the address book (lfnet.db) in dir. Without it the identity is ephemeral and the
// address book lives in memory.
func WithDataDir(dir string) Option {
	return func(c *config) error {
		c.dataDir = dir
		return nil
	}
}

// WithDB stores the address book in an already open bbolt database (the node's shared
// database; the address book uses buckets prefixed "addrbook/"). The host never closes it.
func WithDB(db *bbolt.DB) Option {
	return func(c *config) error {
		c.db = db
		return nil
	}
}

// WithListenAddrs sets the addresses to listen on (default: all interfaces, random ports,
// TCP and QUIC-v1, plus WebSocket when enabled).
func WithListenAddrs(addrs ...ma.Multiaddr) Option {
	return func(c *config) error {
		c.listenAddrs = append(c.listenAddrs, addrs...)
		c.onlyNew("WithListenAddrs")
		return nil
	}
}

// WithNetworkID sets the network id (default DefaultNetworkID). Nodes of different networks
// have different protocol ids and cannot run lfnet protocols with each other.
func WithNetworkID(id [NetworkIDSize]byte) Option {
	return func(c *config) error {
		c.networkID = id
		return nil
	}
}

// WithNetworkSecret makes the network private: connections are encrypted with this 32-byte
// pre-shared key (libp2p private networks) below the security handshake, so nodes without
// the secret cannot connect at all. QUIC cannot carry a pre-shared key, so only TCP (and
// WebSocket) are used.
func WithNetworkSecret(secret []byte) Option {
	return func(c *config) error {
		if len(secret) != 32 {
			return fmt.Errorf("%w: network secret is %d bytes, want 32", ErrOption, len(secret))
		}
		c.secret = append([]byte(nil), secret...)
		c.onlyNew("WithNetworkSecret")
		return nil
	}
}

// WithBootstrap sets bootstrap nodes as multiaddrs ending in /p2p/<node id>. The host dials
// them at start and again, with backoff, whenever the connection is lost.
func WithBootstrap(addrs ...ma.Multiaddr) Option {
	return func(c *config) error {
		infos, err := peer.AddrInfosFromP2pAddrs(addrs...)
		if err != nil {
			return fmt.Errorf("%w: bootstrap address: %v", ErrOption, err)
		}
		c.bootstrap = append(c.bootstrap, infos...)
		return nil
	}
}

// WithMDNS turns discovery of nodes on the local network through multicast DNS on or off
// (default off: it announces the node's presence to everyone on the LAN). Found nodes are
// dialled, and their signed peer records enter the address book. mDNS never carries topics.
func WithMDNS(enable bool) Option {
	return func(c *config) error {
		c.mdns = enable
		return nil
	}
}

// WithMDNSInterfaces restricts mDNS to the named network interfaces (default: every
// interface that is up and multicast-capable).
func WithMDNSInterfaces(names ...string) Option {
	return func(c *config) error {
		c.mdnsIfaces = append(c.mdnsIfaces, names...)
		return nil
	}
}

// WithAllowList admits only the listed nodes, inbound and outbound (the deny list still
// wins). Requires New; see NewGater for application-owned hosts.
func WithAllowList(ids ...peer.ID) Option {
	return func(c *config) error {
		c.allow = append(c.allow, ids...)
		c.onlyNew("WithAllowList")
		return nil
	}
}

// WithDenyList refuses connections with the listed nodes, inbound and outbound.
func WithDenyList(ids ...peer.ID) Option {
	return func(c *config) error {
		c.deny = append(c.deny, ids...)
		c.onlyNew("WithDenyList")
		return nil
	}
}

// WithConnectionGater adds an application gater, consulted after the allow and deny lists.
func WithConnectionGater(g connmgr.ConnectionGater) Option {
	return func(c *config) error {
		c.gater = g
		c.onlyNew("WithConnectionGater")
		return nil
	}
}

// WithStaticRelays sets circuit-relay v2 relays (for example lfnode instances) as full
// addresses. The host keeps a reservation on each (renewed before it expires, and again at
// once after the connection to the relay drops) and, while it holds one, adds that relay's
// /p2p-circuit addresses to its own, so they travel in its signed peer record. Peers still
// reach the node directly where they can, since libp2p dials relay addresses last.
// Relays on private networks
// count too, unlike libp2p's autorelay, which advertises only public relay addresses and
// only once AutoNAT calls the node private. Cannot be combined with a libp2p AddrsFactory.
func WithStaticRelays(relays ...peer.AddrInfo) Option {
	return func(c *config) error {
		c.staticRelays = append(c.staticRelays, relays...)
		c.onlyNew("WithStaticRelays")
		return nil
	}
}

// WithWebSocket adds the WebSocket transport (default off).
func WithWebSocket(enable bool) Option {
	return func(c *config) error {
		c.websocket = enable
		c.onlyNew("WithWebSocket")
		return nil
	}
}

// WithNATPortMap turns UPnP / NAT-PMP port mapping on the local router on or off (default on).
func WithNATPortMap(enable bool) Option {
	return func(c *config) error {
		c.natPortMap = enable
		c.onlyNew("WithNATPortMap")
		return nil
	}
}

// WithRelayService runs a circuit-relay v2 service for other nodes, whatever AutoNAT says
// about this node's reachability (an always-on node such as lfnode). limited keeps libp2p's
// default per-connection limits (2 minutes, 128 KiB each way), which suffice for hole
// punching; false relays without limits.
func WithRelayService(enable, limited bool) Option {
	return func(c *config) error {
		c.relayService = enable
		c.relayLimited = limited
		return nil
	}
}

// WithAutoNATService answers other nodes' AutoNAT (v1 and v2) reachability probes.
func WithAutoNATService(enable bool) Option {
	return func(c *config) error {
		c.autoNATSvc = enable
		c.onlyNew("WithAutoNATService")
		return nil
	}
}

// WithLibp2pOptions passes extra options to libp2p.New. They take precedence over lfnet's
// defaults: a transport, listen address, identity, resource manager, connection manager or
// peerstore given here replaces lfnet's choice. New applies them twice (once to a scratch
// config, to see what they set), so pass options that set values, not constructors with
// side effects such as libp2p.DefaultPeerstore.
func WithLibp2pOptions(opts ...libp2p.Option) Option {
	return func(c *config) error {
		c.libp2pOpts = append(c.libp2pOpts, opts...)
		c.onlyNew("WithLibp2pOptions")
		return nil
	}
}

// WithLogger sets the logger (default: slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		c.logger = l
		return nil
	}
}

// WithResourceLimits replaces the resource manager's limits (default: libp2p's default
// limits scaled to DefaultResourceMemory and DefaultResourceFDs).
func WithResourceLimits(limits rcmgr.ConcreteLimitConfig) Option {
	return func(c *config) error {
		c.limits = &limits
		c.onlyNew("WithResourceLimits")
		return nil
	}
}

// WithConnLimits sets the connection manager's low and high watermarks.
func WithConnLimits(low, high int) Option {
	return func(c *config) error {
		if low < 0 || high < low {
			return fmt.Errorf("%w: connection limits low=%d high=%d", ErrOption, low, high)
		}
		c.connLow, c.connHigh = low, high
		c.onlyNew("WithConnLimits")
		return nil
	}
}
