package host

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Reservation upkeep on static relays.
const (
	relayProtectTag   = "lfnet-relay"
	relayRetryMin     = time.Second
	relayRetryMax     = time.Minute
	relayReserveLimit = 30 * time.Second
	// maxCircuitAddrs bounds the circuit addresses advertised per relay.
	maxCircuitAddrs = 8
)

// relayKeeper holds a circuit-relay v2 reservation on each static relay and advertises
// the matching /p2p-circuit addresses in the host's addresses (and so in its signed peer
// record). libp2p's autorelay does the same only while AutoNAT calls the node private,
// and advertises only public relay addresses; a node behind a relay on a private network
// (an office LAN, a container network) would stay unreachable. A node given static relays
// asked for them: it always keeps its reservations, and peers still prefer its direct
// addresses, since libp2p dials relay addresses last.
type relayKeeper struct {
	h      host.Host
	relays []peer.AddrInfo
	log    *slog.Logger

	mu       sync.Mutex
	reserved map[peer.ID]bool
}

func newRelayKeeper(relays []peer.AddrInfo, log *slog.Logger) *relayKeeper {
	return &relayKeeper{relays: relays, log: log, reserved: make(map[peer.ID]bool)}
}

// addrsFactory adds the circuit addresses of the relays holding a reservation for us.
func (k *relayKeeper) addrsFactory(addrs []ma.Multiaddr) []ma.Multiaddr {
	k.mu.Lock()
	h := k.h
	var relays []peer.ID
	for id, ok := range k.reserved {
		if ok {
			relays = append(relays, id)
		}
	}
	k.mu.Unlock()
	if h == nil {
		return addrs
	}
	slices.Sort(relays)
	for _, r := range relays {
		addrs = append(addrs, circuitAddrs(h, r)...)
	}
	return addrs
}

// circuitAddrs are the relay's addresses, each followed by /p2p/<relay>/p2p-circuit: the
// address this host reached it on first, then what identify told us. A relay's loopback
// addresses are left out unless we reach it on loopback ourselves: elsewhere they name
// some other machine.
func circuitAddrs(h host.Host, relay peer.ID) []ma.Multiaddr {
	suffix, err := ma.NewMultiaddr("/p2p/" + relay.String() + "/p2p-circuit")
	if err != nil {
		return nil
	}
	var base []ma.Multiaddr
	loopback := false
	for _, c := range h.Network().ConnsToPeer(relay) {
		if a := c.RemoteMultiaddr(); !isCircuitAddr(a) {
			base = append(base, a)
			loopback = loopback || manet.IsIPLoopback(a)
		}
	}
	base = append(base, h.Peerstore().Addrs(relay)...)
	var out []ma.Multiaddr
	for _, a := range base {
		if isCircuitAddr(a) || (manet.IsIPLoopback(a) && !loopback) {
			continue
		}
		c := a.Encapsulate(suffix)
		if !slices.ContainsFunc(out, c.Equal) {
			out = append(out, c)
		}
		if len(out) == maxCircuitAddrs {
			break
		}
	}
	return out
}

func isCircuitAddr(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

func (k *relayKeeper) setReserved(relay peer.ID, ok bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.reserved[relay] = ok
}

// run keeps a reservation on every relay until ctx ends.
func (k *relayKeeper) run(ctx context.Context, h host.Host) {
	k.mu.Lock()
	k.h = h
	k.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range k.relays {
		if r.ID == h.ID() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			k.keep(ctx, h, r)
		}()
	}
	wg.Wait()
}

// keep reserves a slot on relay, renews it before it expires, and reserves again at once
// when the connection to the relay drops (the relay forgets a reservation with it).
func (k *relayKeeper) keep(ctx context.Context, h host.Host, relay peer.AddrInfo) {
	lost := make(chan struct{}, 1)
	notifee := &network.NotifyBundle{DisconnectedF: func(n network.Network, c network.Conn) {
		if c.RemotePeer() == relay.ID && n.Connectedness(relay.ID) != network.Connected {
			select {
			case lost <- struct{}{}:
			default:
			}
		}
	}}
	h.Network().Notify(notifee)
	defer h.Network().StopNotify(notifee)
	defer h.ConnManager().Unprotect(relay.ID, relayProtectTag)

	retry := relayRetryMin
	for {
		select { // a loss from before this attempt is news no more
		case <-lost:
		default:
		}
		rctx, cancel := context.WithTimeout(ctx, relayReserveLimit)
		err := h.Connect(rctx, relay)
		var rsvp *client.Reservation
		if err == nil {
			rsvp, err = client.Reserve(rctx, h, relay)
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		var wait time.Duration
		if err != nil {
			k.setReserved(relay.ID, false)
			k.log.Debug("relay reservation failed", "relay", relay.ID, "retry in", retry, "err", err)
			wait, retry = retry, min(2*retry, relayRetryMax)
		} else {
			h.ConnManager().Protect(relay.ID, relayProtectTag)
			k.setReserved(relay.ID, true)
			k.log.Debug("relay reservation", "relay", relay.ID, "expires", rsvp.Expiration)
			retry = relayRetryMin
			wait = max(time.Until(rsvp.Expiration)*3/4, relayRetryMin)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-lost:
			t.Stop()
			k.setReserved(relay.ID, false)
		}
	}
}
