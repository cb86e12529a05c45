package host

import (
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Gater is a libp2p connection gater enforcing an allow list and a deny list of node ids
// for inbound and outbound connections. The deny list wins over the allow list; an empty
// allow list allows every node that is not denied. Host.New installs one when WithAllowList,
// WithDenyList or WithConnectionGater is given; applications with their own libp2p host
// can install one themselves with libp2p.ConnectionGater(host.NewGater(...)).
type Gater struct {
	allow map[peer.ID]struct{}
	deny  map[peer.ID]struct{}
	next  connmgr.ConnectionGater
}

var _ connmgr.ConnectionGater = (*Gater)(nil)

// NewGater returns a gater for the given lists. next, if not nil, is consulted after the
// lists and can refuse further connections (it cannot admit a denied node).
func NewGater(allow, deny []peer.ID, next connmgr.ConnectionGater) *Gater {
	g := &Gater{next: next}
	if len(allow) > 0 {
		g.allow = make(map[peer.ID]struct{}, len(allow))
		for _, id := range allow {
			g.allow[id] = struct{}{}
		}
	}
	g.deny = make(map[peer.ID]struct{}, len(deny))
	for _, id := range deny {
		g.deny[id] = struct{}{}
	}
	return g
}

// Allowed reports whether the lists admit the node (the chained gater is not asked).
func (g *Gater) Allowed(id peer.ID) bool {
	if _, denied := g.deny[id]; denied {
		return false
	}
	if g.allow == nil {
		return true
	}
	_, ok := g.allow[id]
	return ok
}

// InterceptPeerDial refuses outbound dials to nodes the lists do not admit.
func (g *Gater) InterceptPeerDial(p peer.ID) bool {
	if !g.Allowed(p) {
		return false
	}
	return g.next == nil || g.next.InterceptPeerDial(p)
}

// InterceptAddrDial refuses outbound dials to nodes the lists do not admit.
func (g *Gater) InterceptAddrDial(p peer.ID, a ma.Multiaddr) bool {
	if !g.Allowed(p) {
		return false
	}
	return g.next == nil || g.next.InterceptAddrDial(p, a)
}

// InterceptAccept cannot know the remote node yet, so it only defers to the chained gater;
// inbound connections are judged in InterceptSecured.
func (g *Gater) InterceptAccept(addrs network.ConnMultiaddrs) bool {
	return g.next == nil || g.next.InterceptAccept(addrs)
}

// InterceptSecured refuses connections (both directions) once the remote node's identity is
// authenticated, for nodes the lists do not admit.
func (g *Gater) InterceptSecured(dir network.Direction, p peer.ID, addrs network.ConnMultiaddrs) bool {
	if !g.Allowed(p) {
		return false
	}
	return g.next == nil || g.next.InterceptSecured(dir, p, addrs)
}

// InterceptUpgraded defers to the chained gater.
func (g *Gater) InterceptUpgraded(c network.Conn) (bool, control.DisconnectReason) {
	if g.next == nil {
		return true, 0
	}
	return g.next.InterceptUpgraded(c)
}
