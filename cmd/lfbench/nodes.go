package main

// This file builds the real lfnet nodes the network scenarios run: each in this process,
// listening on 127.0.0.1 only, NAT port mapping off, joined through bootstrap addresses and
// discovery as an application's nodes would be, with one wireCounter seeing the stream
// bytes of all of them.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lfnet/lfnet"
	lfhost "github.com/lfnet/lfnet/host"
	"github.com/lfnet/lfnet/topics/discovery"
)

// quietLogger drops everything below Error: 100 nodes at Info would drown the table.
var quietLogger = slog.New(slog.DiscardHandler)

// nodeOptions are the options of every benchmark node: an application's defaults except
// for loopback-only listening, no NAT port mapping, the shared wire counter and a quiet
// logger. walkStep, when not zero, replaces discovery's step interval (10 s by default) so
// that a hundred nodes find each other in seconds rather than minutes.
func nodeOptions(wire *wireCounter, walkStep time.Duration, bootstrap ...string) []lfnet.Option {
	hostOpts := []lfhost.Option{lfhost.WithNATPortMap(false)}
	if wire != nil {
		hostOpts = append(hostOpts, lfhost.WithLibp2pOptions(libp2p.BandwidthReporter(wire)))
	}
	opts := []lfnet.Option{
		lfnet.WithListenAddrs("/ip4/127.0.0.1/tcp/0"),
		lfnet.WithHostOptions(hostOpts...),
		lfnet.WithLogger(quietLogger),
	}
	if walkStep > 0 {
		d := discovery.DefaultConfig()
		d.StepInterval = walkStep
		d.Walker.BackoffBase = walkStep
		opts = append(opts, lfnet.WithDiscoveryConfig(d))
	}
	if len(bootstrap) > 0 {
		opts = append(opts, lfnet.WithBootstrap(bootstrap...))
	}
	return opts
}

// bootAddr is the address other nodes bootstrap from n with.
func bootAddr(n *lfnet.Node) string { return n.Addrs()[0].String() }

// startNodes starts count nodes; node i bootstraps from node (i-1)/2, so that each knows one
// earlier node and discovery has to do the rest. extra is added to each node's options.
func startNodes(ctx context.Context, count int, wire *wireCounter, walkStep time.Duration, extra func(i int) []lfnet.Option) ([]*lfnet.Node, error) {
	nodes := make([]*lfnet.Node, 0, count)
	for i := range count {
		var boot []string
		if i > 0 {
			boot = []string{bootAddr(nodes[(i-1)/2])}
		}
		opts := nodeOptions(wire, walkStep, boot...)
		if extra != nil {
			opts = append(opts, extra(i)...)
		}
		n, err := lfnet.New(ctx, opts...)
		if err != nil {
			return nodes, fmt.Errorf("node %d: %w", i, err)
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// closeAll closes nodes in parallel (each Close waits up to the leave timeout).
func closeAll(nodes []*lfnet.Node) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		if n == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = n.Close()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// neighbourGauge reads a node's lfnet_overlay_neighbors metric: active-view neighbours
// summed over its topics, the public view of membership's NeighborUp and NeighborDown.
type neighbourGauge struct{ reg *prometheus.Registry }

func newNeighbourGauge() (neighbourGauge, lfnet.Option) {
	reg := prometheus.NewRegistry()
	return neighbourGauge{reg}, lfnet.WithMetrics(reg)
}

func (g neighbourGauge) neighbours() (int, error) {
	families, err := g.reg.Gather()
	if err != nil {
		return 0, fmt.Errorf("gather metrics: %w", err)
	}
	for _, f := range families {
		if f.GetName() == "lfnet_overlay_neighbors" && len(f.GetMetric()) == 1 {
			return int(f.GetMetric()[0].GetGauge().GetValue()), nil
		}
	}
	return 0, errors.New("no lfnet_overlay_neighbors metric")
}

// pollUntil calls done every interval until it returns true, ctx ends or timeout passes.
func pollUntil(ctx context.Context, timeout, interval time.Duration, what string, done func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := done()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not done after %v", what, timeout)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(interval):
		}
	}
}

// wireCounter is a libp2p bandwidth reporter that counts the bytes written to streams,
// per protocol, without the rate meters (and their global goroutine) of libp2p's own
// counter. Stream bytes leave out what lies beneath the streams: yamux frame headers (12
// bytes per frame), the security layer's records (TLS over TCP here: a 16-byte tag and a
// 5-byte header per record of up to 16 KiB) and TCP/IP headers.
type wireCounter struct {
	total      atomic.Int64
	byProtocol sync.Map // protocol.ID -> *atomic.Int64
}

var _ metrics.Reporter = (*wireCounter)(nil)

func (w *wireCounter) LogSentMessage(n int64) { w.total.Add(n) }
func (w *wireCounter) LogRecvMessage(int64)   {}
func (w *wireCounter) LogSentMessageStream(n int64, p protocol.ID, _ peer.ID) {
	c, ok := w.byProtocol.Load(p)
	if !ok {
		c, _ = w.byProtocol.LoadOrStore(p, new(atomic.Int64))
	}
	c.(*atomic.Int64).Add(n)
}
func (w *wireCounter) LogRecvMessageStream(int64, protocol.ID, peer.ID) {}
func (w *wireCounter) GetBandwidthForPeer(peer.ID) metrics.Stats        { return metrics.Stats{} }
func (w *wireCounter) GetBandwidthForProtocol(p protocol.ID) metrics.Stats {
	return metrics.Stats{TotalOut: w.snapshot()[familyOf(p)]}
}
func (w *wireCounter) GetBandwidthTotals() metrics.Stats {
	return metrics.Stats{TotalOut: w.total.Load()}
}
func (w *wireCounter) GetBandwidthByPeer() map[peer.ID]metrics.Stats { return nil }
func (w *wireCounter) GetBandwidthByProtocol() map[protocol.ID]metrics.Stats {
	out := map[protocol.ID]metrics.Stats{}
	for f, n := range w.snapshot() {
		out[protocol.ID(f)] = metrics.Stats{TotalOut: n}
	}
	return out
}
func (w *wireCounter) Reset()               {}
func (w *wireCounter) TrimIdle(_ time.Time) {}

// snapshot returns the bytes sent so far per protocol family (see familyOf).
func (w *wireCounter) snapshot() map[string]int64 {
	out := map[string]int64{}
	w.byProtocol.Range(func(k, v any) bool {
		out[familyOf(k.(protocol.ID))] += v.(*atomic.Int64).Load()
		return true
	})
	return out
}

// familyOf names a protocol without its network id and version: lfnet's ids are
// /lfnet/<network>/<name>/<version>; stock GossipSub's are /meshsub/<version>.
func familyOf(p protocol.ID) string {
	s := string(p)
	switch {
	case s == "":
		return "(negotiating)"
	case strings.HasPrefix(s, "/meshsub/"), strings.HasPrefix(s, "/floodsub/"):
		return "plain-gossipsub"
	}
	parts := strings.Split(strings.Trim(s, "/"), "/")
	if len(parts) >= 2 {
		return parts[len(parts)-2]
	}
	return s
}

// diffBytes returns after - before per family, largest first, as "name bytes" details.
func diffBytes(before, after map[string]int64) map[string]float64 {
	out := map[string]float64{}
	for _, k := range slices.Sorted(maps.Keys(after)) {
		if d := after[k] - before[k]; d > 0 {
			out["wire_bytes_"+k] = float64(d)
		}
	}
	return out
}
