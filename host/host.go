package host

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	bhost "github.com/libp2p/go-libp2p/p2p/host/basic"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ws "github.com/libp2p/go-libp2p/p2p/transport/websocket"
	ma "github.com/multiformats/go-multiaddr"
	"go.etcd.io/bbolt"
	"go.uber.org/fx"

	"github.com/lfnet/lfnet/host/internal/mdns"
)

// DBFileName is the address book database inside the data directory (unless WithDB).
const DBFileName = "lfnet.db"

// Explicit resource manager scale: libp2p's default limits computed for this much memory
// and this many file descriptors, independent of the machine the node happens to run on.
const (
	DefaultResourceMemory = 512 << 20
	DefaultResourceFDs    = 1024
)

// nodeProtocolName names a protocol every lfnet host registers. Seeing it in a peer's
// identify protocols tells us the peer belongs to our network, which is the condition for
// letting its peer record into the address book.
const nodeProtocolName = "node"

// ErrQUICWithSecret is returned when a QUIC listen address is combined with a network
// secret: QUIC cannot carry the pre-shared key, so such a node would accept strangers.
var ErrQUICWithSecret = errors.New("host: QUIC cannot be used with a network secret")

// Host is an lfnet node's libp2p host plus the network id, the address book, bootstrap
// dialling, mDNS and the relay service. lfnet's protocols register their handlers on
// Libp2p() under ids built by ProtocolID.
type Host struct {
	h         host.Host
	owned     bool
	networkID [NetworkIDSize]byte
	nodeProto protocol.ID
	book      *AddressBook
	db        *bbolt.DB
	ownDB     bool
	log       *slog.Logger
	relay     *relayv2.Relay
	mdns      *mdnsDiscovery
	idSub     event.Subscription

	ctx       context.Context // ends with Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// New builds a libp2p host with lfnet's defaults: a persistent ed25519 identity (see
// WithDataDir), TCP and QUIC-v1 (WebSocket on request), Noise and TLS, yamux, a resource
// manager with explicit limits, a connection manager, AutoNAT, hole punching, the relay
// client with optional static relays, and NAT port mapping. Options from
// WithLibp2pOptions override these defaults. ctx bounds only the construction.
func New(ctx context.Context, opts ...Option) (*Host, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o(cfg); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	log := cfg.logger
	if log == nil {
		log = slog.Default()
	}

	// Apply the caller's libp2p options to a scratch config, to learn which of our defaults
	// they replace.
	var given libp2p.Config
	if err := given.Apply(cfg.libp2pOpts...); err != nil {
		return nil, fmt.Errorf("%w: libp2p option: %v", ErrOption, err)
	}

	key := given.PeerKey
	if key != nil {
		if err := checkKeyType(key); err != nil {
			return nil, err
		}
	} else {
		var err error
		if cfg.dataDir != "" {
			key, err = LoadOrCreateKey(cfg.dataDir)
		} else {
			key, _, err = crypto.GenerateEd25519Key(rand.Reader)
		}
		if err != nil {
			return nil, err
		}
	}

	lopts := slices.Clone(cfg.libp2pOpts)
	var cleanups []func()
	cleanup := func() {
		for _, c := range slices.Backward(cleanups) {
			c()
		}
	}
	fail := func(err error) (*Host, error) {
		cleanup()
		return nil, err
	}

	if given.PeerKey == nil {
		lopts = append(lopts, libp2p.Identity(key))
	}
	if given.Transports == nil {
		lopts = append(lopts, libp2p.Transport(tcp.NewTCPTransport))
		if cfg.secret == nil {
			lopts = append(lopts, libp2p.Transport(quic.NewTransport))
		}
		if cfg.websocket {
			lopts = append(lopts, libp2p.Transport(ws.New))
		}
	}
	if given.ListenAddrs == nil {
		addrs, err := listenAddrs(cfg)
		if err != nil {
			return nil, err
		}
		lopts = append(lopts, libp2p.ListenAddrs(addrs...))
	} else if cfg.secret != nil && slices.ContainsFunc(given.ListenAddrs, isQUIC) {
		return nil, ErrQUICWithSecret
	}
	if cfg.secret != nil {
		lopts = append(lopts, libp2p.PrivateNetwork(cfg.secret))
	}
	if given.ResourceManager == nil {
		limits := defaultLimits()
		if cfg.limits != nil {
			limits = *cfg.limits
		}
		rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits))
		if err != nil {
			return fail(fmt.Errorf("host: resource manager: %w", err))
		}
		cleanups = append(cleanups, func() { rm.Close() })
		lopts = append(lopts, libp2p.ResourceManager(rm))
	}
	if given.ConnManager == nil {
		cm, err := connmgr.NewConnManager(cfg.connLow, cfg.connHigh, connmgr.WithGracePeriod(time.Minute))
		if err != nil {
			return fail(fmt.Errorf("host: connection manager: %w", err))
		}
		cleanups = append(cleanups, func() { cm.Close() })
		lopts = append(lopts, libp2p.ConnectionManager(cm))
	}
	if len(cfg.allow) > 0 || len(cfg.deny) > 0 || cfg.gater != nil {
		if given.ConnectionGater != nil {
			return fail(fmt.Errorf("%w: a libp2p connection gater cannot be combined with allow/deny lists; use WithConnectionGater", ErrOption))
		}
		lopts = append(lopts, libp2p.ConnectionGater(NewGater(cfg.allow, cfg.deny, cfg.gater)))
	}
	if cfg.natPortMap && given.NATManager == nil {
		lopts = append(lopts, libp2p.NATPortMap())
	}
	lopts = append(lopts, libp2p.EnableHolePunching())
	var relays *relayKeeper
	if len(cfg.staticRelays) > 0 {
		if given.AddrsFactory != nil {
			return fail(fmt.Errorf("%w: static relays add their circuit addresses with an address factory; a libp2p AddrsFactory cannot be combined with them", ErrOption))
		}
		relays = newRelayKeeper(cfg.staticRelays, log)
		lopts = append(lopts, libp2p.AddrsFactory(relays.addrsFactory))
	}
	if cfg.autoNATSvc {
		lopts = append(lopts, libp2p.EnableNATService(), libp2p.EnableAutoNATv2())
	}

	db := cfg.db
	ownDB := false
	if db == nil && cfg.dataDir != "" {
		var err error
		db, err = bbolt.Open(filepath.Join(cfg.dataDir, DBFileName), 0o600, &bbolt.Options{Timeout: 5 * time.Second})
		if err != nil {
			return fail(fmt.Errorf("%w: open %s: %w", ErrStore, DBFileName, err))
		}
		ownDB = true
		cleanups = append(cleanups, func() { db.Close() })
	}

	// When libp2p fails while starting (a listen address in use, say), it does not close
	// the parts it already built; keep a handle on the host so we can.
	var built *bhost.BasicHost
	lopts = append(lopts, libp2p.WithFxOption(fx.Invoke(func(bh *bhost.BasicHost) { built = bh })))
	h, err := libp2p.New(lopts...)
	if err != nil {
		if built != nil {
			built.Close()
		}
		return fail(fmt.Errorf("host: libp2p: %w", err))
	}
	// From here on, a failing attach closes the host (and with it the resource and
	// connection managers) and the database itself.
	x, err := attach(h, cfg, log, true, db, ownDB)
	if err != nil {
		return nil, err
	}
	if relays != nil {
		x.wg.Add(1)
		go func() {
			defer x.wg.Done()
			relays.run(x.ctx, h)
		}()
	}
	return x, nil
}

// Attach adds lfnet to a libp2p host the application owns: it registers lfnet's handlers,
// runs the address book, bootstrap dialling and mDNS as configured, and on Close removes
// what it added without ever closing h. Options that shape the libp2p host itself
// (transports, listen addresses, secret, gating, relays, limits) are refused with ErrOption;
// configure those on h. The host should use an ed25519 identity.
func Attach(h host.Host, opts ...Option) (*Host, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o(cfg); err != nil {
			return nil, err
		}
	}
	if len(cfg.forNew) > 0 {
		return nil, fmt.Errorf("%w: %v apply only to New", ErrOption, cfg.forNew)
	}
	if cfg.dataDir != "" && cfg.db == nil {
		return nil, fmt.Errorf("%w: with Attach, pass the database with WithDB (the identity belongs to the host)", ErrOption)
	}
	log := cfg.logger
	if log == nil {
		log = slog.Default()
	}
	return attach(h, cfg, log, false, cfg.db, false)
}

func attach(h host.Host, cfg *config, log *slog.Logger, owned bool, db *bbolt.DB, ownDB bool) (*Host, error) {
	x := &Host{
		h:         h,
		owned:     owned,
		networkID: cfg.networkID,
		nodeProto: ProtocolID(cfg.networkID, nodeProtocolName, "1"),
		db:        db,
		ownDB:     ownDB,
		log:       log.With("node", h.ID().ShortString()),
	}
	ctx, cancel := context.WithCancel(context.Background())
	x.ctx, x.cancel = ctx, cancel
	ok := false
	defer func() {
		if !ok {
			x.stop()
		}
	}()

	book, err := newAddressBook(addressBookConfig{
		self:      h.ID(),
		db:        db,
		ps:        h.Peerstore(),
		log:       x.log,
		now:       cfg.now,
		connected: func(id peer.ID) bool { return h.Network().Connectedness(id) == network.Connected },
		mirrorTTL: cfg.staleAfter,
	})
	if err != nil {
		return nil, err
	}
	x.book = book

	h.SetStreamHandler(x.nodeProto, func(s network.Stream) { _ = s.Close() })

	x.idSub, err = h.EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted))
	if err != nil {
		return nil, fmt.Errorf("host: subscribe to identify events: %w", err)
	}
	x.wg.Add(1)
	go x.watchIdentify(ctx)
	x.wg.Add(1)
	go x.maintain(ctx, cfg.maintainEvery, cfg.staleAfter)

	if cfg.relayService {
		var ropts []relayv2.Option
		if !cfg.relayLimited {
			ropts = append(ropts, relayv2.WithInfiniteLimits())
		}
		x.relay, err = relayv2.New(h, ropts...)
		if err != nil {
			return nil, fmt.Errorf("host: relay service: %w", err)
		}
	}

	// The bootstrap flag mirrors the configuration: nodes dropped from it lose the flag.
	configured := make(map[peer.ID]bool, len(cfg.bootstrap))
	for _, info := range cfg.bootstrap {
		configured[info.ID] = true
	}
	for _, e := range book.All() {
		if e.Bootstrap && !configured[e.ID] {
			if err := book.SetBootstrap(e.ID, false); err != nil {
				return nil, err
			}
		}
	}
	if len(cfg.bootstrap) > 0 {
		for _, info := range cfg.bootstrap {
			if info.ID == h.ID() {
				continue
			}
			h.Peerstore().AddAddrs(info.ID, info.Addrs, peerstore.PermanentAddrTTL)
			h.ConnManager().Protect(info.ID, bootstrapProtectTag)
			if err := book.SetBootstrap(info.ID, true); err != nil {
				return nil, err
			}
		}
		b, err := newBootstrapper(h, book, x.log, cfg.bootstrap)
		if err != nil {
			return nil, fmt.Errorf("host: bootstrap: %w", err)
		}
		x.wg.Add(1)
		go func() {
			defer x.wg.Done()
			b.run(ctx)
		}()
	}

	if cfg.mdns {
		x.mdns, err = startMDNS(h, x.log, cfg.networkID, cfg.mdnsIfaces, cfg.mdnsPort)
		switch {
		case err == nil:
			x.wg.Add(1)
			go func() {
				defer x.wg.Done()
				x.mdns.run(ctx)
			}()
		case len(cfg.mdnsIfaces) == 0 && errors.Is(err, mdns.ErrNoInterface):
			// A machine without a multicast-capable network (an offline laptop) is no
			// reason to refuse to start; named interfaces that do not work are.
			x.log.Warn("mDNS disabled: no usable network interface", "err", err)
		default:
			return nil, err
		}
	}
	ok = true
	return x, nil
}

// watchIdentify feeds the address book from identify: every peer of our network that
// completes identify hands us its signed peer record and counts as a successful contact.
func (x *Host) watchIdentify(ctx context.Context) {
	defer x.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-x.idSub.Out():
			if !ok {
				return
			}
			e := ev.(event.EvtPeerIdentificationCompleted)
			if !slices.Contains(e.Protocols, x.nodeProto) {
				continue
			}
			if e.SignedPeerRecord != nil {
				if err := x.book.AddRecord(e.SignedPeerRecord); err != nil && !errors.Is(err, ErrStaleRecord) {
					x.log.Debug("peer record from identify refused", "peer", e.Peer, "err", err)
				}
			}
			if err := x.book.MarkSuccess(e.Peer); err != nil {
				x.log.Debug("address book", "err", err)
			}
		}
	}
}

// maintain periodically picks up records that identify pushes update after the first
// exchange, and expires stale entries.
func (x *Host) maintain(ctx context.Context, every, staleAfter time.Duration) {
	defer x.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			x.refreshConnectedRecords()
			if _, err := x.book.Expire(x.book.now().Add(-staleAfter)); err != nil {
				x.log.Warn("address book expiry", "err", err)
			}
		}
	}
}

func (x *Host) refreshConnectedRecords() {
	cab, ok := peerstore.GetCertifiedAddrBook(x.h.Peerstore())
	if !ok {
		return
	}
	for _, id := range x.h.Network().Peers() {
		e, known := x.book.Get(id)
		if !known {
			continue
		}
		env := cab.GetPeerRecord(id)
		if env == nil || (e.Record != nil && e.Record.Equal(env)) {
			continue
		}
		if err := x.book.AddRecord(env); err != nil && !errors.Is(err, ErrStaleRecord) {
			x.log.Debug("peer record from peerstore refused", "peer", id, "err", err)
		}
	}
}

// ID returns the node id.
func (x *Host) ID() peer.ID { return x.h.ID() }

// Libp2p returns the underlying libp2p host.
func (x *Host) Libp2p() host.Host { return x.h }

// AddressBook returns the node's address book.
func (x *Host) AddressBook() *AddressBook { return x.book }

// NetworkID returns the network id.
func (x *Host) NetworkID() [NetworkIDSize]byte { return x.networkID }

// ProtocolID returns the protocol id of an lfnet protocol in this host's network.
func (x *Host) ProtocolID(name, version string) protocol.ID {
	return ProtocolID(x.networkID, name, version)
}

// Addrs returns the host's addresses as full multiaddrs ending in /p2p/<node id>, ready to
// hand to other nodes (for example as bootstrap addresses).
func (x *Host) Addrs() []ma.Multiaddr {
	addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: x.h.ID(), Addrs: x.h.Addrs()})
	if err != nil {
		// Only an invalid own peer id could fail, which libp2p never produces.
		x.log.Error("own addresses", "err", err)
		return nil
	}
	return addrs
}

// Close stops everything lfnet started: bootstrap dialling, mDNS, the relay service, the
// address book, and — for hosts made by New — the libp2p host and the database it opened.
// A host passed to Attach is left running. Close is idempotent.
func (x *Host) Close() error {
	x.closeOnce.Do(func() { x.closeErr = x.stop() })
	return x.closeErr
}

func (x *Host) stop() error {
	x.cancel()
	var errs []error
	if x.mdns != nil {
		errs = append(errs, x.mdns.close())
	}
	if x.idSub != nil {
		errs = append(errs, x.idSub.Close())
	}
	x.wg.Wait()
	if x.relay != nil {
		errs = append(errs, x.relay.Close())
	}
	x.h.RemoveStreamHandler(x.nodeProto)
	if x.book != nil {
		x.book.close()
	}
	if x.owned {
		// Close the connections before the host. go-libp2p v0.51's Host.Close stops the
		// observed-address manager from reading its identify subscription without closing
		// it; an identify exchange that completes after that blocks the event bus for good
		// (holding its lock), and AutoNAT's close then waits on that lock forever. Seen at
		// the teardown of 50 and 100 busy nodes. With no connections left, no identify
		// exchange can complete once the manager has stopped.
		errs = append(errs, x.h.Network().Close())
		errs = append(errs, x.h.Close())
	}
	if x.ownDB && x.db != nil {
		errs = append(errs, x.db.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("host: close: %w", err)
	}
	return nil
}

func isQUIC(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_QUIC_V1)
	return err == nil
}

func listenAddrs(cfg *config) ([]ma.Multiaddr, error) {
	if len(cfg.listenAddrs) > 0 {
		if cfg.secret != nil && slices.ContainsFunc(cfg.listenAddrs, isQUIC) {
			return nil, ErrQUICWithSecret
		}
		return cfg.listenAddrs, nil
	}
	specs := []string{"/ip4/0.0.0.0/tcp/0", "/ip6/::/tcp/0"}
	if cfg.secret == nil {
		specs = append(specs, "/ip4/0.0.0.0/udp/0/quic-v1", "/ip6/::/udp/0/quic-v1")
	}
	if cfg.websocket {
		specs = append(specs, "/ip4/0.0.0.0/tcp/0/ws", "/ip6/::/tcp/0/ws")
	}
	out := make([]ma.Multiaddr, 0, len(specs))
	for _, s := range specs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// defaultLimits are libp2p's default limits (with its service limits) scaled to an explicit
// memory and file-descriptor budget.
func defaultLimits() rcmgr.ConcreteLimitConfig {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	return limits.Scale(DefaultResourceMemory, DefaultResourceFDs)
}
