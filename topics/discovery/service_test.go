package discovery

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/goleak"

	lfhost "github.com/lfnet/lfnet/host"
	"github.com/lfnet/lfnet/topics"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type node struct {
	h   *lfhost.Host
	reg *topics.Registry
	svc *Service
}

func newNode(t *testing.T, cfg Config, held []topics.Topic, opts ...lfhost.Option) *node {
	t.Helper()
	base := []lfhost.Option{lfhost.WithListenAddrs(ma.StringCast("/ip4/127.0.0.1/tcp/0")), lfhost.WithNATPortMap(false)}
	h, err := lfhost.New(context.Background(), append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	reg := topics.NewRegistry()
	for _, tp := range held {
		reg.Add(tp)
	}
	n := &node{h: h, reg: reg, svc: New(h.Libp2p(), h.ProtocolID("discovery", "1"), h.AddressBook(), reg, cfg)}
	t.Cleanup(func() {
		_ = n.svc.Close()
		reg.Close()
		_ = h.Close()
	})
	return n
}

func fullAddr(t *testing.T, n *node) ma.Multiaddr {
	t.Helper()
	for _, a := range n.h.Addrs() {
		return a
	}
	t.Fatal("node has no address")
	return nil
}

// combos returns the 20 ways to pick 3 of 6 topics.
func combos(ts []topics.Topic) [][]topics.Topic {
	var out [][]topics.Topic
	for i := range ts {
		for j := i + 1; j < len(ts); j++ {
			for k := j + 1; k < len(ts); k++ {
				out = append(out, []topics.Topic{ts[i], ts[j], ts[k]})
			}
		}
	}
	return out
}

func TestDiscoveryChainOfTwentyFindsEveryTopicPeer(t *testing.T) {
	var all []topics.Topic
	for i := range 6 {
		all = append(all, topics.FromString(fmt.Sprintf("topic %d", i)))
	}
	held := combos(all)
	cfg := DefaultConfig()
	cfg.StepInterval = 100 * time.Millisecond
	cfg.Walker.BackoffBase = 200 * time.Millisecond
	var nodes []*node
	for i := range 20 {
		var opts []lfhost.Option
		if i > 0 {
			opts = append(opts, lfhost.WithBootstrap(fullAddr(t, nodes[i-1])))
		}
		nodes = append(nodes, newNode(t, cfg, held[i], opts...))
	}
	complete := func() (bool, string) {
		for i, a := range nodes {
			for _, tp := range held[i] {
				known := a.h.AddressBook().NodesForTopic(tp)
				for j, b := range nodes {
					if i != j && slices.Contains(held[j], tp) && !slices.Contains(known, b.h.ID()) {
						return false, fmt.Sprintf("node %d does not know node %d shares %s", i, j, tp.Short())
					}
				}
			}
		}
		return true, ""
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		ok, why := complete()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(why)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i, a := range nodes {
		for _, e := range a.h.AddressBook().All() {
			for _, tp := range e.Topics {
				if !slices.Contains(held[i], tp) {
					t.Fatalf("node %d's address book lists topic %s, which it does not hold", i, tp.Short())
				}
			}
		}
	}
}

func TestDiscoveryWireRevealsNoTopic(t *testing.T) {
	t1, t2, t3, t4, t5 := topics.FromString("w1"), topics.FromString("w2"), topics.FromString("w3"), topics.FromString("w4"), topics.FromString("w5")
	cfg := DefaultConfig()
	cfg.StepInterval = 0 // sessions only when the test asks
	a := newNode(t, cfg, []topics.Topic{t1, t2, t3})
	b := newNode(t, cfg, []topics.Topic{t3, t4, t5}) // share t3 only

	var mu sync.Mutex
	var frames [][][]byte // per session
	tap := func(f []byte) {
		mu.Lock()
		frames[len(frames)-1] = append(frames[len(frames)-1], bytes.Clone(f))
		mu.Unlock()
	}
	frameTap.Store(&tap)
	defer frameTap.Store(nil)

	if err := a.h.Libp2p().Connect(context.Background(), peer.AddrInfo{ID: b.h.ID(), Addrs: b.h.Libp2p().Addrs()}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		mu.Lock()
		frames = append(frames, nil)
		mu.Unlock()
		res, err := a.svc.Discover(context.Background(), b.h.ID())
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Common) != 1 || res.Common[0] != t3 {
			t.Fatalf("common = %v, want [t3]", res.Common)
		}
	}
	eventually(t, "b records a's topic", func() bool {
		return slices.Contains(b.h.AddressBook().NodesForTopic(t3), a.h.ID())
	})
	if e, _ := b.h.AddressBook().Get(a.h.ID()); len(e.Topics) != 1 {
		t.Fatalf("b learned topics %v of a, want only the shared one", e.Topics)
	}

	mu.Lock()
	defer mu.Unlock()
	var secrets [][]byte
	for _, tp := range []topics.Topic{t1, t2, t3, t4, t5} {
		d := topics.Derive(tp, purpose)
		secrets = append(secrets, bytes.Clone(tp[:16]), bytes.Clone(d[:16]))
	}
	for s, session := range frames {
		for _, f := range session {
			for _, secret := range secrets {
				if bytes.Contains(f, secret) {
					t.Fatalf("session %d: topic material on the wire", s)
				}
			}
		}
	}
	// Salts and tokens are fresh per session: no 16-byte window of one session's PSI
	// frames (hello, offer, match) appears in the other's frames. The record frames carry
	// the nodes' own signed peer records, which identify them as the connection already
	// does; their topic tokens are covered by the same check.
	for _, f1 := range frames[0] {
		for i := 0; i+16 <= len(f1); i++ {
			w := f1[i : i+16]
			for _, f2 := range frames[1] {
				if bytes.Contains(f2, w) && !inRecord(f1, i) {
					t.Fatalf("value %x repeats across sessions", w)
				}
			}
		}
	}
}

// inRecord reports whether the 16-byte window at i of a frame overlaps a signed peer
// record envelope (whose bytes identify the node and legitimately repeat).
func inRecord(frame []byte, i int) bool {
	m, err := decodeMessage(frame, kindRecords)
	if err != nil {
		return false
	}
	for _, r := range m.(recordsMsg).Records {
		at := bytes.Index(frame, r.Record)
		if at >= 0 && i+16 > at && i < at+len(r.Record) {
			return true
		}
	}
	return false
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDiscoveryRejectsForgedRecords(t *testing.T) {
	// A record for one node, signed by another, never enters the book.
	cfg := DefaultConfig()
	cfg.StepInterval = 0
	a := newNode(t, cfg, nil)
	b := newNode(t, cfg, nil)
	own, err := b.svc.ownRecord()
	if err != nil {
		t.Fatal(err)
	}
	forged := bytes.Clone(own)
	forged[len(forged)-1] ^= 1
	learned := a.svc.ingest(b.h.ID(), recordsMsg{Records: []recordEntry{{Record: forged}}}, nil, newSalt(), newSalt(), roleAcceptor)
	if len(learned) != 0 {
		t.Fatalf("forged record accepted: %v", learned)
	}
	if _, ok := a.h.AddressBook().Get(b.h.ID()); ok {
		t.Fatal("forged record landed in the address book")
	}
}
