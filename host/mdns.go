package host

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/lfnet/lfnet/host/internal/mdns"
)

const (
	dnsaddrPrefix     = "dnsaddr="
	mdnsQueue         = 64
	mdnsMaxAddrs      = 16
	mdnsRedialAfter   = 30 * time.Second
	mdnsDialTimeout   = 15 * time.Second
	mdnsMaxRemembered = 1024
)

// mdnsDiscovery announces this node on the LAN and dials the nodes it hears about. Their
// signed peer records then reach the address book through identify, like any other
// connection's: mDNS itself only yields unsigned addresses and never writes to the book.
type mdnsDiscovery struct {
	h     host.Host
	log   *slog.Logger
	svc   *mdns.Service
	found chan peer.AddrInfo
}

// mdnsServiceName scopes the announcement to the network, so nodes of other networks
// (and other libp2p applications) are not even dialled.
func mdnsServiceName(networkID [NetworkIDSize]byte) string {
	return "_lfnet-" + networkTag(networkID)[:8] + "._udp"
}

func startMDNS(h host.Host, log *slog.Logger, networkID [NetworkIDSize]byte, ifaceNames []string, port int) (*mdnsDiscovery, error) {
	var ifis []net.Interface
	for _, name := range ifaceNames {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return nil, fmt.Errorf("%w: mDNS interface %q: %v", ErrOption, name, err)
		}
		ifis = append(ifis, *ifi)
	}
	var label [8]byte
	_, _ = rand.Read(label[:])
	d := &mdnsDiscovery{h: h, log: log, found: make(chan peer.AddrInfo, mdnsQueue)}
	svc, err := mdns.Start(mdns.Config{
		Service:    mdnsServiceName(networkID),
		Instance:   hex.EncodeToString(label[:]),
		TXT:        d.txt,
		Found:      d.onFound,
		Interfaces: ifis,
		Port:       port,
		Logger:     log,
	})
	if err != nil {
		return nil, fmt.Errorf("host: start mDNS: %w", err)
	}
	d.svc = svc
	return d, nil
}

// txt lists the node's direct addresses; relayed and browser-only ones are useless on a LAN.
func (d *mdnsDiscovery) txt() []string {
	p2p, err := ma.NewComponent("p2p", d.h.ID().String())
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range d.h.Addrs() {
		if !lanDialable(a) {
			continue
		}
		out = append(out, dnsaddrPrefix+a.Encapsulate(p2p).String())
	}
	return out
}

// lanDialable accepts IP addresses that are not public (loopback, private, link-local) and
// not relayed: mDNS answers come from anyone on the LAN, and must not make us dial out.
func lanDialable(a ma.Multiaddr) bool {
	first, _ := ma.SplitFirst(a)
	if first == nil {
		return false
	}
	switch first.Protocol().Code {
	case ma.P_IP4, ma.P_IP6:
	default:
		return false
	}
	if manet.IsPublicAddr(a) {
		return false
	}
	relayed := false
	ma.ForEach(a, func(c ma.Component) bool {
		switch c.Protocol().Code {
		case ma.P_CIRCUIT, ma.P_WEBTRANSPORT, ma.P_WEBRTC, ma.P_WEBRTC_DIRECT:
			relayed = true
		}
		return !relayed
	})
	return !relayed
}

// onFound runs on the mDNS receive goroutine: parse, filter, and hand over without blocking.
func (d *mdnsDiscovery) onFound(_ string, txt []string) {
	for _, info := range parseMDNSTXT(txt, d.h.ID()) {
		select {
		case d.found <- info:
		default:
			d.log.Debug("mDNS queue full; dropping found node", "node", info.ID)
		}
	}
}

// parseMDNSTXT turns announced TXT strings into dialable addresses per node, dropping
// anything malformed, public, relayed, or about ourselves.
func parseMDNSTXT(txt []string, self peer.ID) []peer.AddrInfo {
	byPeer := make(map[peer.ID][]ma.Multiaddr)
	var order []peer.ID
	for _, s := range txt {
		rest, ok := strings.CutPrefix(s, dnsaddrPrefix)
		if !ok {
			continue
		}
		full, err := ma.NewMultiaddr(rest)
		if err != nil {
			continue
		}
		info, err := peer.AddrInfoFromP2pAddr(full)
		if err != nil || info.ID == self || len(info.Addrs) != 1 || !lanDialable(info.Addrs[0]) {
			continue
		}
		if _, seen := byPeer[info.ID]; !seen {
			order = append(order, info.ID)
		}
		if len(byPeer[info.ID]) < mdnsMaxAddrs {
			byPeer[info.ID] = append(byPeer[info.ID], info.Addrs[0])
		}
	}
	out := make([]peer.AddrInfo, 0, len(order))
	for _, id := range order {
		out = append(out, peer.AddrInfo{ID: id, Addrs: byPeer[id]})
	}
	return out
}

// run dials found nodes one at a time until ctx ends, at most once per mdnsRedialAfter each.
func (d *mdnsDiscovery) run(ctx context.Context) {
	lastDial := make(map[peer.ID]time.Time)
	for {
		select {
		case <-ctx.Done():
			return
		case info := <-d.found:
			if d.h.Network().Connectedness(info.ID) == network.Connected {
				continue
			}
			now := time.Now()
			if t, ok := lastDial[info.ID]; ok && now.Sub(t) < mdnsRedialAfter {
				continue
			}
			if len(lastDial) >= mdnsMaxRemembered {
				for id, t := range lastDial {
					if now.Sub(t) >= mdnsRedialAfter {
						delete(lastDial, id)
					}
				}
				if len(lastDial) >= mdnsMaxRemembered {
					continue
				}
			}
			lastDial[info.ID] = now
			d.h.Peerstore().AddAddrs(info.ID, info.Addrs, peerstore.TempAddrTTL)
			dctx, cancel := context.WithTimeout(ctx, mdnsDialTimeout)
			if err := d.h.Connect(dctx, info); err != nil {
				d.log.Debug("mDNS: dial found node", "node", info.ID, "err", err)
			} else {
				d.log.Debug("mDNS: connected to found node", "node", info.ID)
			}
			cancel()
		}
	}
}

func (d *mdnsDiscovery) close() error {
	return d.svc.Close()
}
