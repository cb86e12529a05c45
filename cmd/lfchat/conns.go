package main

import (
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

type connEvent struct {
	peer    peer.ID
	addr    ma.Multiaddr
	relayed bool
	up      bool
}

// connWatch turns the network's connection notifications into events for the printer.
// Notifications arrive on the network's own goroutines, which must not block: a full
// queue drops events (only scripts read them, and they are informational).
type connWatch struct {
	net     network.Network
	notifee *network.NotifyBundle
	events  chan connEvent
	done    chan struct{}
}

func watchConnections(n network.Network) *connWatch {
	w := &connWatch{net: n, events: make(chan connEvent, 256), done: make(chan struct{})}
	report := func(c network.Conn, up bool) {
		addr := c.RemoteMultiaddr()
		_, err := addr.ValueForProtocol(ma.P_CIRCUIT)
		select {
		case w.events <- connEvent{peer: c.RemotePeer(), addr: addr, relayed: err == nil, up: up}:
		default:
		}
	}
	w.notifee = &network.NotifyBundle{
		ConnectedF:    func(_ network.Network, c network.Conn) { report(c, true) },
		DisconnectedF: func(_ network.Network, c network.Conn) { report(c, false) },
	}
	n.Notify(w.notifee)
	return w
}

// print hands events to out until stop.
func (w *connWatch) print(out *printer) {
	for {
		select {
		case <-w.done:
			return
		case ev := <-w.events:
			out.connection(ev)
		}
	}
}

func (w *connWatch) stop() {
	w.net.StopNotify(w.notifee)
	close(w.done)
}
