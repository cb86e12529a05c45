package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/lfnet/lfnet/codec"
	"github.com/lfnet/lfnet/topics/gossip"
)

// Presence travels over gossip, not the logs: it matters only while it is current.
const (
	heartbeatEvery = 5 * time.Second
	// offlineAfter missed heartbeats mark a peer offline.
	offlineAfter = 3 * heartbeatEvery
)

type presenceMsg struct {
	_      struct{} `cbor:",toarray"`
	Nick   string
	Online bool
}

// presence announces this node and tracks who else is in the room.
type presence struct {
	g   *gossip.Handle
	out *printer

	mu   sync.Mutex
	nick string
	seen map[peer.ID]seenPeer
}

type seenPeer struct {
	nick string
	last time.Time
}

func newPresence(g *gossip.Handle, out *printer, nick string) *presence {
	return &presence{g: g, out: out, nick: nick, seen: make(map[peer.ID]seenPeer)}
}

func (p *presence) setNick(nick string) {
	p.mu.Lock()
	p.nick = nick
	p.mu.Unlock()
}

func (p *presence) announce(ctx context.Context, online bool) {
	p.mu.Lock()
	msg := presenceMsg{Nick: p.nick, Online: online}
	p.mu.Unlock()
	b, err := codec.Marshal(msg)
	if err == nil {
		// Best effort: a lost heartbeat is covered by the next one.
		_ = p.g.Publish(ctx, b)
	}
}

// run heartbeats, reports arrivals and departures, and returns when ctx ends.
func (p *presence) run(ctx context.Context) {
	sub := p.g.Subscribe()
	defer sub.Close()
	msgs := make(chan gossip.Message)
	go func() {
		defer close(msgs)
		for {
			m, err := sub.Next(ctx)
			if err != nil {
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	defer func() {
		for range msgs { // let the reader finish before the subscription closes
		}
	}()
	tick := time.NewTicker(heartbeatEvery)
	defer tick.Stop()
	p.announce(ctx, true)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			p.announce(ctx, true)
			p.expire(time.Now())
		case m, ok := <-msgs:
			if !ok {
				return
			}
			var pm presenceMsg
			if err := codec.Unmarshal(m.Data, &pm); err != nil {
				continue
			}
			p.observe(m.From, pm, time.Now())
		}
	}
}

func (p *presence) observe(from peer.ID, pm presenceMsg, now time.Time) {
	p.mu.Lock()
	prev, known := p.seen[from]
	if pm.Online {
		p.seen[from] = seenPeer{nick: pm.Nick, last: now}
	} else {
		delete(p.seen, from)
	}
	p.mu.Unlock()
	switch {
	case pm.Online && !known:
		p.out.presence(from, pm.Nick, true)
	case pm.Online && prev.nick != pm.Nick:
		p.out.notice(fmt.Sprintf("%s is now %s", prev.nick, pm.Nick))
	case !pm.Online && known:
		p.out.presence(from, prev.nick, false)
	}
}

func (p *presence) expire(now time.Time) {
	p.mu.Lock()
	var gone []seenPeer
	var ids []peer.ID
	for id, s := range p.seen {
		if now.Sub(s.last) > offlineAfter {
			gone = append(gone, s)
			ids = append(ids, id)
			delete(p.seen, id)
		}
	}
	p.mu.Unlock()
	for i, s := range gone {
		p.out.presence(ids[i], s.nick, false)
	}
}
