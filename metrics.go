package lfnet

import (
	"fmt"
	"github.com/lfnet/lfnet/syncproto"

	"github.com/prometheus/client_golang/prometheus"
)

// registerMetrics exposes the node's state on reg. The collectors read counters the
// subsystems keep anyway, so metrics cost nothing until scraped.
func (n *Node) registerMetrics(reg prometheus.Registerer) error {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "lfnet", Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "lfnet", Name: name, Help: help}, f)
	}
	syncStat := func(pick func(s syncproto.Stats) uint64) func() float64 {
		return func() float64 { return float64(pick(n.sync.Stats())) }
	}
	collectors := []prometheus.Collector{
		gauge("peers_connected", "Nodes with an open connection.", func() float64 {
			return float64(len(n.host.Libp2p().Network().Peers()))
		}),
		gauge("address_book_nodes", "Nodes in the address book.", func() float64 {
			return float64(n.host.AddressBook().Len())
		}),
		gauge("topics_open", "Topics this node holds.", func() float64 {
			n.mu.Lock()
			defer n.mu.Unlock()
			return float64(len(n.topics))
		}),
		gauge("overlay_neighbors", "Active-view neighbours, summed over all topic overlays.", func() float64 {
			n.mu.Lock()
			defer n.mu.Unlock()
			total := 0
			for _, ts := range n.topics {
				total += len(ts.overlay.ActiveView())
			}
			return float64(total)
		}),
		counter("sync_sessions_started_total", "Sync sessions started.", syncStat(func(s syncproto.Stats) uint64 { return s.SessionsStarted })),
		counter("sync_sessions_failed_total", "Sync sessions that failed.", syncStat(func(s syncproto.Stats) uint64 { return s.SessionsFailed })),
		counter("sync_operations_received_total", "Operations received in finished sync sessions.", syncStat(func(s syncproto.Stats) uint64 { return s.ItemsReceived })),
		counter("sync_operations_sent_total", "Operations sent in finished sync sessions.", syncStat(func(s syncproto.Stats) uint64 { return s.ItemsSent })),
		counter("sync_bytes_received_total", "Operation bytes received in finished sync sessions.", syncStat(func(s syncproto.Stats) uint64 { return s.BytesReceived })),
		counter("sync_bytes_sent_total", "Operation bytes sent in finished sync sessions.", syncStat(func(s syncproto.Stats) uint64 { return s.BytesSent })),
		counter("handler_panics_total", "Protocol handler panics recovered.", func() float64 {
			return float64(n.guarded.panics.Load())
		}),
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("lfnet: register metrics: %w", err)
		}
	}
	return nil
}
