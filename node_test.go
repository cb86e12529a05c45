package lfnet

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	lfhost "github.com/lfnet/lfnet/host"
	"github.com/lfnet/lfnet/syncproto"
	"github.com/lfnet/lfnet/syncproto/logsync"
	"github.com/lfnet/lfnet/topics"
	"github.com/lfnet/lfnet/topics/discovery"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testOptions keep a node on loopback and make discovery step fast.
func testOptions(extra ...Option) []Option {
	d := discovery.DefaultConfig()
	d.StepInterval = 200 * time.Millisecond
	d.Walker.BackoffBase = 200 * time.Millisecond
	return append([]Option{
		WithListenAddrs("/ip4/127.0.0.1/tcp/0"),
		// No UPnP / NAT-PMP: tests send nothing beyond loopback.
		WithHostOptions(lfhost.WithNATPortMap(false)),
		WithDiscoveryConfig(d),
	}, extra...)
}

func newTestNode(t *testing.T, opts ...Option) *Node {
	t.Helper()
	n, err := New(context.Background(), testOptions(opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return n
}

func bootstrapFrom(n *Node) Option {
	return WithBootstrap(n.Addrs()[0].String())
}

// waitOps polls until the topic holds want operations in n's store.
func waitOps(t *testing.T, n *Node, l *LogSync, want int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := 0
		if err := l.Range(context.Background(), func(logsync.Entry) error { got++; return nil }); err != nil {
			t.Fatal(err)
		}
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s holds %d operations, want %d", n.ID().ShortString(), got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTwoNodesSyncThroughDiscoveryAndMembership(t *testing.T) {
	room := topics.Random()
	a := newTestNode(t)
	b := newTestNode(t, bootstrapFrom(a))
	la, err := a.LogSync(context.Background(), room, true)
	if err != nil {
		t.Fatal(err)
	}
	defer la.Close()
	lb, err := b.LogSync(context.Background(), room, true)
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	sub, err := lb.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for i := range 3 {
		if _, err := la.Publish(context.Background(), []byte(fmt.Sprintf("from a %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	waitOps(t, b, lb, 3)
	// Live: one more operation arrives as an event.
	op, err := la.Publish(context.Background(), []byte("live"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for the live operation: %v", err)
		}
		if ev.Kind == syncproto.ItemReceived && ev.Item.(logsync.Entry).Op.Hash() == op.Hash() {
			break
		}
	}
	if _, err := b.LogSync(context.Background(), room, false); err == nil {
		t.Fatal("LogSync with another live setting succeeded")
	}
}

func TestMetricsReportSync(t *testing.T) {
	reg := prometheus.NewRegistry()
	room := topics.Random()
	a := newTestNode(t)
	b := newTestNode(t, bootstrapFrom(a), WithMetrics(reg))
	la, err := a.LogSync(context.Background(), room, false)
	if err != nil {
		t.Fatal(err)
	}
	defer la.Close()
	if _, err := la.Publish(context.Background(), []byte("counted")); err != nil {
		t.Fatal(err)
	}
	lb, err := b.LogSync(context.Background(), room, false)
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	waitOps(t, b, lb, 1)
	deadline := time.Now().Add(30 * time.Second)
	for {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		values := map[string]float64{}
		for _, f := range families {
			for _, m := range f.GetMetric() {
				switch {
				case m.GetCounter() != nil:
					values[f.GetName()] = m.GetCounter().GetValue()
				case m.GetGauge() != nil:
					values[f.GetName()] = m.GetGauge().GetValue()
				}
			}
		}
		if values["lfnet_sync_operations_received_total"] == 1 && values["lfnet_topics_open"] == 1 && values["lfnet_peers_connected"] >= 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics %v", values)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestGossipBetweenNodesJoinedThroughDiscovery(t *testing.T) {
	room := topics.Random()
	a := newTestNode(t)
	b := newTestNode(t, bootstrapFrom(a))
	ga, err := a.Gossip(context.Background(), room)
	if err != nil {
		t.Fatal(err)
	}
	defer ga.Close()
	gb, err := b.Gossip(context.Background(), room)
	if err != nil {
		t.Fatal(err)
	}
	defer gb.Close()
	sub := ga.Subscribe()
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// GossipSub needs the subscription announcements to cross before a message can; keep
	// publishing (each message distinct) until one arrives.
	got := make(chan string, 1)
	go func() {
		msg, err := sub.Next(ctx)
		if err == nil {
			got <- string(msg.Data)
		}
		close(got)
	}()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case text, ok := <-got:
			if !ok || text == "" {
				t.Fatal("no gossip message arrived")
			}
			return
		case <-tick.C:
			if err := gb.Publish(ctx, []byte(fmt.Sprintf("hello %d", i))); err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatal("no gossip message arrived")
		}
	}
}
