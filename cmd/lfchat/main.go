// Command lfchat is lfnet's demo: a terminal chat room whose history is an append-only log
// per participant, synced between peers in live mode (so a node that was offline gets what
// it missed), with presence announced over gossip.
//
// Start it without arguments to open a fresh room; it prints the command that joins the
// room from another terminal.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

type options struct {
	topic     string
	bootstrap []string
	relays    []string
	listen    []string
	mdns      bool
	nat       bool
	dataDir   string
	nick      string
	script    bool
	verbose   bool
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("lfchat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, `lfchat: a peer-to-peer chat room on lfnet.

Usage: lfchat [flags]

Without --topic it opens a fresh room and prints the command that joins it from another
terminal. Type a line and press Enter to send it; /nick NAME changes your name; Ctrl-C or
Ctrl-D leaves.

Flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.topic, "topic", "", "room to join: a 64-character hex topic id (default: a fresh random room)")
	fs.Var((*listFlag)(&o.bootstrap), "bootstrap", "full multiaddr (ending in /p2p/<id>) of a node to start from; repeatable")
	fs.Var((*listFlag)(&o.relays), "relay", "full multiaddr (ending in /p2p/<id>) of a relay, such as an lfnode, to stay reachable through\nwhen peers cannot reach you directly; repeatable")
	fs.Var((*listFlag)(&o.listen), "listen", "multiaddr to listen on; repeatable (default /ip4/0.0.0.0/tcp/0 and /ip4/0.0.0.0/udp/0/quic-v1)")
	fs.BoolVar(&o.mdns, "mdns", false, "find peers on the local network by multicast DNS (announces this node on the LAN)")
	fs.BoolVar(&o.nat, "nat", false, "ask the local router for a port mapping (UPnP / NAT-PMP) so peers beyond it can reach you")
	fs.StringVar(&o.dataDir, "data", "", "directory for identity and history; without it everything is forgotten on exit")
	fs.StringVar(&o.nick, "nick", "", "name shown to others (default: derived from your node id)")
	fs.BoolVar(&o.script, "script", false, "for programs: read messages from stdin, print one JSON object per line\n(also a \"connection\" object whenever a connection to a peer opens or closes)")
	fs.BoolVar(&o.verbose, "v", false, "log lfnet's debug messages to stderr")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := chat(ctx, o, logger, stdin, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "lfchat: %v\n", err)
		return 1
	}
	return 0
}
