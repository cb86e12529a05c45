package lfnet

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/thejerf/suture/v4"
	"go.etcd.io/bbolt"

	lfhost "github.com/lfnet/lfnet/host"
	"github.com/lfnet/lfnet/internal/bus"
	"github.com/lfnet/lfnet/membership"
	"github.com/lfnet/lfnet/syncproto"
	"github.com/lfnet/lfnet/syncproto/logsync"
	"github.com/lfnet/lfnet/topics"
	"github.com/lfnet/lfnet/topics/discovery"
	"github.com/lfnet/lfnet/topics/gossip"
)

// Errors of the facade.
var (
	// ErrOption: an option's value is invalid.
	ErrOption = errors.New("lfnet: invalid option")
	// ErrClosed: the node (or handle) was closed.
	ErrClosed = errors.New("lfnet: closed")
	// ErrLiveMismatch: LogSync was called for a topic already synced with the other live
	// setting; a topic is either live or not for the whole node.
	ErrLiveMismatch = errors.New("lfnet: topic already synced with a different live setting")
)

// dbFile is the node's database inside its data directory.
const dbFile = "lfnet.db"

// Node is one lfnet peer: a libp2p host that finds nodes sharing its topics, keeps a
// HyParView overlay per topic, gossips ephemeral messages and syncs persisted logs with the
// overlay's neighbours. Create it with New, open topics with Gossip and LogSync, and Close
// it when done.
type Node struct {
	cfg *config
	log *slog.Logger

	host     *lfhost.Host
	db       *bbolt.DB // nil without a data directory or with an application's store
	store    logsync.Store
	ownStore bool
	key      ed25519.PrivateKey

	registry *topics.Registry
	disc     *discovery.Service
	memb     *membership.Driver
	sync     *syncproto.Service
	gossip   *gossip.Router

	sup     *suture.Supervisor
	supDone <-chan error
	guarded *guardedHost

	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	topics map[topics.Topic]*topicState
	closed bool

	neighborEvents *bus.Bus[membership.Event]
}

// topicState is what the node runs for one topic while any handle refers to it.
type topicState struct {
	topic   topics.Topic
	refs    int
	overlay *membership.Overlay
	pump    chan struct{} // closed when the event pump has stopped

	mu       sync.Mutex // guards the sync fields, read by the pump
	sync     *syncproto.Topic
	mgr      *logsync.Manager
	live     bool
	syncRefs int
}

// New starts a node: host, address book, discovery, membership and sync. ctx bounds only
// the start.
func New(ctx context.Context, opts ...Option) (n *Node, err error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o(cfg); err != nil {
			return nil, err
		}
	}
	n = &Node{
		cfg:            cfg,
		log:            cfg.logger.With("component", "node"),
		topics:         make(map[topics.Topic]*topicState),
		neighborEvents: bus.New[membership.Event](),
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			n.shutdown()
		}
	}()

	hostOpts := append([]lfhost.Option{lfhost.WithLogger(cfg.logger)}, cfg.hostOpts...)
	if cfg.dataDir != "" {
		if err := os.MkdirAll(cfg.dataDir, 0o700); err != nil {
			return nil, fmt.Errorf("lfnet: data directory: %w", err)
		}
		n.db, err = bbolt.Open(filepath.Join(cfg.dataDir, dbFile), 0o600, logsync.BoltOptions())
		if err != nil {
			return nil, fmt.Errorf("lfnet: open database: %w", err)
		}
		hostOpts = append(hostOpts, lfhost.WithDataDir(cfg.dataDir), lfhost.WithDB(n.db))
	}
	if cfg.libp2pHost != nil {
		n.host, err = lfhost.Attach(cfg.libp2pHost, hostOpts...)
	} else {
		n.host, err = lfhost.New(ctx, hostOpts...)
	}
	if err != nil {
		return nil, fmt.Errorf("lfnet: host: %w", err)
	}
	n.key, err = signingKey(n.host)
	if err != nil {
		return nil, err
	}

	switch {
	case cfg.store != nil:
		n.store = cfg.store
	case n.db != nil:
		n.store, err = logsync.NewBoltStore(n.db)
		if err != nil {
			return nil, fmt.Errorf("lfnet: log store: %w", err)
		}
		n.ownStore = true
	default:
		n.store, n.ownStore = logsync.NewMemStore(), true
	}

	n.sup = suture.New("lfnet", supervisorSpec(n.log))
	n.supDone = n.sup.ServeBackground(n.ctx)
	n.guarded = newGuardedHost(n.host.Libp2p(), n.sup, n.log)
	h := n.guarded
	n.registry = topics.NewRegistry()
	dcfg := cfg.discovery
	dcfg.Logger = cfg.logger
	n.disc = discovery.New(h, n.host.ProtocolID("discovery", "1"), n.host.AddressBook(), n.registry, dcfg)
	n.memb, err = membership.NewDriver(h, n.host.ProtocolID("membership", "1"),
		membership.WithConfig(cfg.membership),
		membership.WithLogger(cfg.logger),
		membership.WithContactSource(n.contactsFor))
	if err != nil {
		return nil, fmt.Errorf("lfnet: membership: %w", err)
	}
	n.sync = syncproto.NewService(h, n.host.ProtocolID("sync", "1"), syncproto.WithLogger(cfg.logger))
	n.gossip, err = gossip.New(n.ctx, h, gossip.Config{
		ProtocolID:     n.host.ProtocolID,
		Membership:     gossipMembership{n},
		MaxMessageSize: cfg.gossipLimit,
		Logger:         cfg.logger,
	})
	if err != nil {
		return nil, fmt.Errorf("lfnet: gossip: %w", err)
	}

	n.sup.Add(loopService{name: "address book feed", run: n.feedContacts})
	if cfg.antiEntropy > 0 {
		n.sup.Add(loopService{name: "anti-entropy", run: n.antiEntropy})
	}
	if cfg.metrics != nil {
		if err := n.registerMetrics(cfg.metrics); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// signingKey returns the node's ed25519 key, which also signs the operations it authors.
func signingKey(h *lfhost.Host) (ed25519.PrivateKey, error) {
	priv := h.Libp2p().Peerstore().PrivKey(h.ID())
	if priv == nil || priv.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("lfnet: the host's identity is not an ed25519 key")
	}
	raw, err := priv.Raw()
	if err != nil || len(raw) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("lfnet: read identity key: %v", err)
	}
	return ed25519.PrivateKey(raw), nil
}

// ID returns the node id (its ed25519 public key as a libp2p peer id).
func (n *Node) ID() peer.ID { return n.host.ID() }

// Addrs returns the node's full multiaddrs (ending in /p2p/<id>), for other nodes'
// bootstrap lists.
func (n *Node) Addrs() []ma.Multiaddr { return n.host.Addrs() }

// Host returns the node's lfnet host (address book, network id, the libp2p host).
func (n *Node) Host() *lfhost.Host { return n.host }

// Store returns the node's log store.
func (n *Node) Store() logsync.Store { return n.store }

// PublicKey returns the key that authors this node's log operations.
func (n *Node) PublicKey() logsync.PublicKey { return logsync.PublicKeyOf(n.key) }

// contactsFor answers membership's questions for contacts: nodes discovery found to share
// the topic, with the addresses the peerstore has for them.
func (n *Node) contactsFor(_ context.Context, t topics.Topic) []peer.AddrInfo {
	ps := n.host.Libp2p().Peerstore()
	var out []peer.AddrInfo
	for _, id := range n.host.AddressBook().NodesForTopic(t) {
		if id == n.ID() {
			continue
		}
		out = append(out, peer.AddrInfo{ID: id, Addrs: ps.Addrs(id)})
	}
	return out
}

// feedContacts hands nodes that discovery learns to share a held topic to that topic's
// overlay, so that a topic opened before anyone was known joins as soon as someone is.
func (n *Node) feedContacts(ctx context.Context) {
	changes := n.host.AddressBook().Watch(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case c, ok := <-changes:
			if !ok {
				return
			}
			if len(c.Entry.Topics) == 0 || c.Entry.ID == n.ID() {
				continue
			}
			info := peer.AddrInfo{ID: c.Entry.ID, Addrs: c.Entry.Addrs}
			n.mu.Lock()
			for _, t := range c.Entry.Topics {
				if ts, ok := n.topics[t]; ok {
					ts.overlay.AddContacts(info)
				}
			}
			n.mu.Unlock()
		}
	}
}

// antiEntropy periodically syncs each synced topic with one random node that shares it
// but is not an overlay neighbour.
func (n *Node) antiEntropy(ctx context.Context) {
	var seed [32]byte
	_, _ = rand.Read(seed[:])
	rng := mrand.New(mrand.NewChaCha8(seed))
	timer := time.NewTimer(n.cfg.antiEntropy)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		n.mu.Lock()
		open := make([]*topicState, 0, len(n.topics))
		for _, ts := range n.topics {
			open = append(open, ts)
		}
		n.mu.Unlock()
		for _, ts := range open {
			ts.mu.Lock()
			st := ts.sync
			ts.mu.Unlock()
			if st == nil {
				continue
			}
			neighbours := ts.overlay.ActiveView()
			var far []peer.ID
			for _, p := range n.host.AddressBook().NodesForTopic(ts.topic) {
				if p != n.ID() && !slices.Contains(neighbours, p) {
					far = append(far, p)
				}
			}
			if len(far) > 0 {
				st.Probe(far[rng.IntN(len(far))])
			}
		}
		// Jitter keeps nodes that started together from probing in lockstep.
		timer.Reset(n.cfg.antiEntropy/2 + time.Duration(rng.Int64N(int64(n.cfg.antiEntropy))))
	}
}

// acquire takes a reference to topic t, joining its overlay on the first one.
func (n *Node) acquire(ctx context.Context, t topics.Topic) (*topicState, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrClosed
	}
	if ts, ok := n.topics[t]; ok {
		ts.refs++
		return ts, nil
	}
	overlay, err := n.memb.Join(ctx, t, n.contactsFor(ctx, t))
	if err != nil {
		return nil, fmt.Errorf("lfnet: join overlay of %s: %w", t.Short(), err)
	}
	ts := &topicState{topic: t, refs: 1, overlay: overlay, pump: make(chan struct{})}
	n.topics[t] = ts
	n.registry.Add(t) // wakes discovery
	go n.pumpEvents(ts)
	return ts, nil
}

// release drops a reference to t, leaving its overlay after the last one.
func (n *Node) release(ts *topicState) {
	n.mu.Lock()
	ts.refs--
	last := ts.refs == 0 && n.topics[ts.topic] == ts
	if last {
		delete(n.topics, ts.topic)
		n.registry.Remove(ts.topic)
	}
	n.mu.Unlock()
	if last {
		n.leave(ts)
	}
}

func (n *Node) leave(ts *topicState) {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.leaveWait)
	defer cancel()
	if err := ts.overlay.Leave(ctx); err != nil && !errors.Is(err, membership.ErrClosed) {
		n.log.Debug("leave overlay", "topic", ts.topic.Short(), "err", err)
	}
	<-ts.pump
}

// pumpEvents turns overlay events into sync sessions: neighbours are who we sync with.
func (n *Node) pumpEvents(ts *topicState) {
	defer close(ts.pump)
	for ev := range ts.overlay.Events() {
		switch ev.Kind {
		case membership.EventNeighborUp, membership.EventNeighborDown:
			n.neighborEvents.Publish(ev)
			ts.mu.Lock()
			st := ts.sync
			ts.mu.Unlock()
			if st == nil {
				continue
			}
			if ev.Kind == membership.EventNeighborUp {
				st.NeighborUp(ev.Peer)
			} else {
				st.NeighborDown(ev.Peer)
			}
		case membership.EventNeedContacts:
			n.disc.Kick()
		}
	}
}

// Close leaves every overlay politely (neighbours get Disconnect), stops all sessions,
// flushes and closes the stores the node opened, and closes the host if the node created
// it. No goroutine of the node outlives it.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.mu.Unlock()
	return n.shutdown()
}

func (n *Node) shutdown() error {
	var errs []error
	if n.gossip != nil {
		errs = append(errs, n.gossip.Close())
	}
	if n.sync != nil {
		errs = append(errs, n.sync.Close())
	}
	n.mu.Lock()
	open := make([]*topicState, 0, len(n.topics))
	for _, ts := range n.topics {
		open = append(open, ts)
	}
	clear(n.topics)
	n.mu.Unlock()
	var leaving sync.WaitGroup
	for _, ts := range open {
		leaving.Add(1)
		go func() {
			defer leaving.Done()
			n.leave(ts)
		}()
	}
	leaving.Wait()
	n.neighborEvents.Close()
	if n.memb != nil {
		errs = append(errs, n.memb.Close())
	}
	if n.disc != nil {
		errs = append(errs, n.disc.Close())
	}
	n.cancel()
	if n.supDone != nil {
		<-n.supDone
	}
	if n.registry != nil {
		n.registry.Close()
	}
	if n.host != nil {
		errs = append(errs, n.host.Close())
	}
	if n.ownStore && n.store != nil {
		errs = append(errs, n.store.Close())
	}
	if n.db != nil {
		errs = append(errs, n.db.Close())
	}
	return errors.Join(errs...)
}
