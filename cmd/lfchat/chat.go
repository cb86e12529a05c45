package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/lfnet/lfnet"
	"github.com/lfnet/lfnet/codec"
	lfhost "github.com/lfnet/lfnet/host"
	"github.com/lfnet/lfnet/syncproto"
	"github.com/lfnet/lfnet/syncproto/logsync"
	"github.com/lfnet/lfnet/topics"
)

// chatMessage is the body of every operation in a room's logs.
type chatMessage struct {
	_    struct{} `cbor:",toarray"`
	Nick string
	Text string
}

// maxText bounds what one message may carry.
const maxText = 4 << 10

// progressThreshold: catching up on at least this many messages is worth announcing.
const progressThreshold = 20

func chat(ctx context.Context, o options, logger *slog.Logger, stdin io.Reader, stdout, stderr io.Writer) error {
	fresh := o.topic == ""
	room := topics.Random()
	if !fresh {
		var err error
		if room, err = topics.Parse(o.topic); err != nil {
			return err
		}
	}
	listen := o.listen
	if len(listen) == 0 {
		listen = []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"}
	}
	opts := []lfnet.Option{
		lfnet.WithLogger(logger),
		lfnet.WithListenAddrs(listen...),
		lfnet.WithMDNS(o.mdns),
		lfnet.WithHostOptions(lfhost.WithNATPortMap(o.nat)),
	}
	if len(o.bootstrap) > 0 {
		opts = append(opts, lfnet.WithBootstrap(o.bootstrap...))
	}
	if len(o.relays) > 0 {
		opts = append(opts, lfnet.WithRelays(o.relays...))
	}
	if o.dataDir != "" {
		opts = append(opts, lfnet.WithDataDir(o.dataDir))
	}
	node, err := lfnet.New(ctx, opts...)
	if err != nil {
		return err
	}
	defer node.Close()
	logs, err := node.LogSync(ctx, room, true)
	if err != nil {
		return err
	}
	defer logs.Close()

	out := &printer{w: stdout, script: o.script, self: node.PublicKey()}
	nick := o.nick
	if nick == "" {
		nick = "anon-" + hex.EncodeToString(out.self[:3])
	}
	out.ready(node, room, fresh, nick)
	if o.script {
		conns := watchConnections(node.Host().Libp2p().Network())
		printed := make(chan struct{})
		go func() {
			defer close(printed)
			conns.print(out)
		}()
		defer func() { conns.stop(); <-printed }()
	}

	sub, err := logs.Subscribe()
	if err != nil {
		return err
	}
	defer sub.Close()
	g, err := node.Gossip(ctx, room)
	if err != nil {
		return err
	}
	defer g.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	subCtx, cancelSub := context.WithCancel(ctx)
	defer cancelSub()
	pres := newPresence(g, out, nick)
	wg.Add(1)
	go func() {
		defer wg.Done()
		pres.run(subCtx)
	}()
	defer func() {
		// Tell the room we left, before the handles close.
		bye, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		pres.announce(bye, false)
	}()
	// History first, then whatever arrives; the printer skips what it already showed.
	if err := out.history(ctx, logs); err != nil {
		return err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		out.follow(subCtx, sub)
	}()

	lines := make(chan string)
	go readLines(stdin, lines) // ends with stdin; a blocked terminal read cannot be interrupted
	for {
		select {
		case <-ctx.Done():
			return nil
		case line, ok := <-lines:
			if !ok {
				return nil
			}
			switch {
			case strings.TrimSpace(line) == "":
			case strings.HasPrefix(line, "/nick "):
				nick = strings.TrimSpace(strings.TrimPrefix(line, "/nick "))
				pres.setNick(nick)
				pres.announce(ctx, true)
				out.notice(fmt.Sprintf("you are now %s", nick))
			case line == "/quit":
				return nil
			case strings.HasPrefix(line, "/"):
				out.notice("commands: /nick NAME, /quit")
			default:
				if len(line) > maxText {
					out.notice(fmt.Sprintf("message longer than %d bytes not sent", maxText))
					continue
				}
				body, err := codec.Marshal(chatMessage{Nick: nick, Text: line})
				if err != nil {
					return err
				}
				op, err := logs.Publish(ctx, body)
				if err != nil {
					return fmt.Errorf("send: %w", err)
				}
				out.message(logsync.Entry{Op: op})
			}
		}
	}
}

func readLines(r io.Reader, lines chan<- string) {
	defer close(lines)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines <- sc.Text()
	}
}

// printer writes what the user sees: plain lines for people, one JSON object per line for
// programs (--script).
type printer struct {
	w      io.Writer
	script bool
	self   logsync.PublicKey

	mu    sync.Mutex
	shown map[logsync.Hash]struct{}
}

func (p *printer) emit(human string, machine map[string]any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.script {
		b, _ := json.Marshal(machine)
		fmt.Fprintln(p.w, string(b))
		return
	}
	fmt.Fprintln(p.w, human)
}

func (p *printer) ready(node *lfnet.Node, room topics.Topic, fresh bool, nick string) {
	addrs := node.Addrs()
	strs := make([]string, len(addrs))
	for i, a := range addrs {
		strs[i] = a.String()
	}
	var human strings.Builder
	fmt.Fprintf(&human, "lfchat: you are %s (node %s) in room %s\n", nick, shortID(node.ID()), room.Short())
	if fresh {
		fmt.Fprintf(&human, "Join this room from another terminal with:\n\n  go run ./cmd/lfchat --topic %s --bootstrap %s\n", room, joinAddr(addrs))
	}
	human.WriteString("Type a message and press Enter. /nick NAME to change your name, Ctrl-C to leave.")
	p.emit(human.String(), map[string]any{"type": "ready", "id": node.ID().String(), "topic": room.String(), "addrs": strs})
}

// shortID is the tail of a node id, enough to tell nodes apart on screen.
func shortID(id peer.ID) string {
	s := id.String()
	return "…" + s[max(0, len(s)-6):]
}

// joinAddr picks the address another terminal on this machine reaches most surely.
func joinAddr(addrs []ma.Multiaddr) string {
	best := ""
	for _, a := range addrs {
		s := a.String()
		if strings.HasPrefix(s, "/ip4/127.0.0.1/tcp/") {
			return s
		}
		if best == "" {
			best = s
		}
	}
	return best
}

// connection reports a connection to a peer opening (up) or closing, and whether it runs
// through a relay (its remote address is a /p2p-circuit address).
func (p *printer) connection(c connEvent) {
	state := "closed"
	if c.up {
		state = "open"
	}
	relayed := ""
	if c.relayed {
		relayed = " (relayed)"
	}
	p.emit(fmt.Sprintf("* connection to %s %s%s", shortID(c.peer), state, relayed), map[string]any{
		"type": "connection", "id": c.peer.String(), "addr": c.addr.String(), "relayed": c.relayed, "up": c.up,
	})
}

func (p *printer) presence(id peer.ID, nick string, online bool) {
	state := "left"
	if online {
		state = "is online"
	}
	p.emit(fmt.Sprintf("* %s %s", nick, state), map[string]any{"type": "presence", "id": id.String(), "nick": nick, "online": online})
}

func (p *printer) notice(text string) {
	p.emit("* "+text, map[string]any{"type": "notice", "text": text})
}

// message shows one operation of the room, once.
func (p *printer) message(e logsync.Entry) {
	p.mu.Lock()
	if p.shown == nil {
		p.shown = make(map[logsync.Hash]struct{})
	}
	_, dup := p.shown[e.Op.Hash()]
	p.shown[e.Op.Hash()] = struct{}{}
	p.mu.Unlock()
	if dup {
		return
	}
	var m chatMessage
	if err := codec.Unmarshal(e.Op.Body, &m); err != nil {
		return // not a chat message: another application's data in the same topic
	}
	at := time.UnixMicro(int64(e.Op.Header.Timestamp))
	p.emit(fmt.Sprintf("%s <%s> %s", at.Format("15:04:05"), m.Nick, m.Text), map[string]any{
		"type": "message", "id": e.Op.Hash().String(), "author": e.Op.Header.PublicKey.String(),
		"seq": e.Op.Header.SeqNum, "time": e.Op.Header.Timestamp, "nick": m.Nick, "text": m.Text,
		"own": e.Op.Header.PublicKey == p.self,
	})
}

// history prints the stored messages in time order.
func (p *printer) history(ctx context.Context, logs *lfnet.LogSync) error {
	var all []logsync.Entry
	if err := logs.Range(ctx, func(e logsync.Entry) error { all = append(all, e); return nil }); err != nil {
		return err
	}
	slices.SortFunc(all, func(a, b logsync.Entry) int {
		return int64Compare(int64(a.Op.Header.Timestamp), int64(b.Op.Header.Timestamp))
	})
	for _, e := range all {
		p.message(e)
	}
	return nil
}

func int64Compare(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// follow prints messages as sync delivers them, and catch-up progress.
func (p *printer) follow(ctx context.Context, sub *syncproto.Subscription) {
	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			return
		}
		switch ev.Kind {
		case syncproto.ItemReceived:
			if e, ok := ev.Item.(logsync.Entry); ok {
				p.message(e)
			}
		case syncproto.SyncStarted:
			if n := ev.Expected.ItemsReceived; n >= progressThreshold {
				p.notice(fmt.Sprintf("catching up on %d messages from %s", n, shortID(ev.Remote)))
			}
		case syncproto.SyncFinished:
			if n := ev.Metrics.ItemsReceived; n >= progressThreshold {
				p.notice(fmt.Sprintf("caught up: %d messages from %s", n, shortID(ev.Remote)))
			}
		}
	}
}
