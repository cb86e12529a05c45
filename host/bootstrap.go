package host

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Bootstrap redial backoff: exponential from bootstrapBackoffMin to bootstrapBackoffMax, each
// wait randomised by ±bootstrapJitter so that many nodes losing the same bootstrap node do
// not come back in lockstep.
const (
	bootstrapBackoffMin  = time.Second
	bootstrapBackoffMax  = time.Minute
	bootstrapJitter      = 0.2
	bootstrapDialTimeout = 30 * time.Second
	bootstrapProtectTag  = "lfnet-bootstrap"
)

type bootPeer struct {
	info    peer.AddrInfo
	backoff time.Duration
	next    time.Time // zero: no dial scheduled
	dialing bool
}

type dialResult struct {
	id  peer.ID
	err error
}

// bootstrapper keeps the host connected to its bootstrap nodes: it dials them at start and
// redials any whose connection is lost, with backoff.
type bootstrapper struct {
	h     host.Host
	book  *AddressBook
	log   *slog.Logger
	peers map[peer.ID]*bootPeer
	sub   event.Subscription
}

func newBootstrapper(h host.Host, book *AddressBook, log *slog.Logger, infos []peer.AddrInfo) (*bootstrapper, error) {
	sub, err := h.EventBus().Subscribe(new(event.EvtPeerConnectednessChanged))
	if err != nil {
		return nil, err
	}
	b := &bootstrapper{h: h, book: book, log: log, peers: make(map[peer.ID]*bootPeer), sub: sub}
	for _, info := range infos {
		if info.ID == h.ID() {
			continue
		}
		if bp, ok := b.peers[info.ID]; ok {
			bp.info.Addrs = append(bp.info.Addrs, info.Addrs...)
			continue
		}
		b.peers[info.ID] = &bootPeer{info: info, backoff: bootstrapBackoffMin}
	}
	return b, nil
}

// run owns the bootstrapper until ctx ends; dial goroutines it starts finish before it returns.
func (b *bootstrapper) run(ctx context.Context) {
	defer b.sub.Close()
	results := make(chan dialResult)
	inflight := 0
	defer func() {
		for ; inflight > 0; inflight-- {
			<-results
		}
	}()

	now := time.Now()
	for _, bp := range b.peers {
		bp.next = now
	}
	timer := time.NewTimer(0)
	defer timer.Stop()

	// The loop below is driven by events, dial results and the timer, but decides only from
	// the current state: any bootstrap node that is not connected and not being dialled gets
	// a redial scheduled, whatever order the events arrived in.
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-b.sub.Out():
			if !ok {
				return
			}
			e := ev.(event.EvtPeerConnectednessChanged)
			if bp, ours := b.peers[e.Peer]; ours && e.Connectedness == network.Connected {
				bp.backoff = bootstrapBackoffMin
			}
		case r := <-results:
			inflight--
			bp := b.peers[r.id]
			bp.dialing = false
			if r.err != nil && ctx.Err() == nil {
				if err := b.book.MarkFailure(r.id); err != nil {
					b.log.Debug("address book", "err", err)
				}
				bp.next = time.Now().Add(jittered(bp.backoff))
				b.log.Debug("bootstrap dial failed", "node", r.id, "err", r.err, "retry_in", bp.backoff)
				bp.backoff = min(2*bp.backoff, bootstrapBackoffMax)
			}
		case <-timer.C:
		}

		now := time.Now()
		var wake time.Time
		for id, bp := range b.peers {
			if bp.dialing {
				continue
			}
			if b.h.Network().Connectedness(id) == network.Connected {
				bp.next = time.Time{}
				continue
			}
			if bp.next.IsZero() {
				bp.next = now.Add(jittered(bp.backoff))
				b.log.Debug("bootstrap node not connected; redialling", "node", id, "in", bp.backoff)
			}
			if !bp.next.After(now) {
				bp.dialing, bp.next = true, time.Time{}
				inflight++
				go b.dial(ctx, bp.info, results)
				continue
			}
			if wake.IsZero() || bp.next.Before(wake) {
				wake = bp.next
			}
		}
		if !wake.IsZero() {
			timer.Reset(time.Until(wake))
		}
	}
}

func (b *bootstrapper) dial(ctx context.Context, info peer.AddrInfo, results chan<- dialResult) {
	dctx, cancel := context.WithTimeout(ctx, bootstrapDialTimeout)
	defer cancel()
	// Our own backoff paces the redials; the swarm's per-address backoff would only add a
	// second, longer one on top after the bootstrap node restarts.
	dctx = network.WithForceDirectDial(dctx, "lfnet bootstrap")
	err := b.h.Connect(dctx, info)
	results <- dialResult{id: info.ID, err: err}
}

func jittered(d time.Duration) time.Duration {
	f := 1 + bootstrapJitter*(2*rand.Float64()-1)
	return time.Duration(float64(d) * f)
}
