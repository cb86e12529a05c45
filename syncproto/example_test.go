package syncproto_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/lfnet/lfnet/syncproto"
	"github.com/lfnet/lfnet/topics"
)

// maxRegister is a tiny replicated data type: a number that only grows. A session sends
// our value, reads the remote's, and keeps the larger.
type maxRegister struct {
	mu sync.Mutex
	v  uint64
}

func (r *maxRegister) get() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.v
}

// NewSession makes maxRegister a syncproto.Manager.
func (r *maxRegister) NewSession(syncproto.SessionInfo) (syncproto.Protocol, error) {
	return registerSession{r}, nil
}

// registerSession is one session of a maxRegister: a syncproto.Protocol.
type registerSession struct{ r *maxRegister }

func (s registerSession) Run(_ context.Context, conn syncproto.Conn, emit func(syncproto.Event)) error {
	if err := conn.WriteFrame(binary.BigEndian.AppendUint64(nil, s.r.get())); err != nil {
		return err
	}
	if err := conn.CloseWrite(); err != nil {
		return err
	}
	frame, err := conn.ReadFrame()
	if err != nil {
		return err
	}
	if len(frame) != 8 {
		return fmt.Errorf("max register: frame of %d bytes", len(frame))
	}
	s.r.mu.Lock()
	s.r.v = max(s.r.v, binary.BigEndian.Uint64(frame))
	s.r.mu.Unlock()
	if _, err := conn.ReadFrame(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("max register: expected the end, got %v", err)
	}
	emit(syncproto.Event{Kind: syncproto.SyncFinished, Metrics: syncproto.Metrics{ItemsReceived: 1}})
	return nil
}

// Example runs a custom data type through the sync layer: two nodes open a topic with
// their own Manager, membership (here: the example itself) reports each as the other's
// neighbour, and the coordinator runs a session between them.
func Example() {
	ctx := context.Background()
	room := topics.FromString("example room")
	proto := protocol.ID("/lfnet/example/sync/1")

	newNode := func(value uint64) (host.Host, *syncproto.Service, *syncproto.Topic, *maxRegister) {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
		if err != nil {
			panic(err)
		}
		reg := &maxRegister{v: value}
		svc := syncproto.NewService(h, proto)
		tp, err := svc.Open(room, reg, syncproto.DefaultCoordinatorConfig())
		if err != nil {
			panic(err)
		}
		return h, svc, tp, reg
	}
	ha, sa, ta, ra := newNode(7)
	hb, sb, tb, rb := newNode(42)
	defer func() {
		_ = sa.Close()
		_ = sb.Close()
		_ = ha.Close()
		_ = hb.Close()
	}()
	events := ta.Subscribe()
	defer events.Close()

	if err := ha.Connect(ctx, peer.AddrInfo{ID: hb.ID(), Addrs: hb.Addrs()}); err != nil {
		panic(err)
	}
	ta.NeighborUp(hb.ID())
	tb.NeighborUp(ha.ID())
	for {
		ev, err := events.Next(ctx)
		if err != nil {
			panic(err)
		}
		if ev.Kind == syncproto.SessionEnded {
			break
		}
	}
	fmt.Println("a:", ra.get())
	fmt.Println("b:", rb.get())
	// Output:
	// a: 42
	// b: 42
}
