package lfnet_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/lfnet/lfnet"
	lfhost "github.com/lfnet/lfnet/host"
	"github.com/lfnet/lfnet/syncproto"
	"github.com/lfnet/lfnet/syncproto/logsync"
	"github.com/lfnet/lfnet/topics"
)

// loopback keeps the example's nodes on this machine.
var loopback = []lfnet.Option{
	lfnet.WithListenAddrs("/ip4/127.0.0.1/tcp/0"),
	lfnet.WithHostOptions(lfhost.WithNATPortMap(false)),
}

// Two nodes share a topic: the second starts from the first's address, discovery finds
// that they share the topic, and the data one publishes reaches the other.
func Example() {
	ctx := context.Background()
	alice, err := lfnet.New(ctx, loopback...)
	if err != nil {
		log.Fatal(err)
	}
	defer alice.Close()
	bob, err := lfnet.New(ctx, append(loopback, lfnet.WithBootstrap(alice.Addrs()[0].String()))...)
	if err != nil {
		log.Fatal(err)
	}
	defer bob.Close()

	room := topics.FromString("example room")
	aliceLogs, err := alice.LogSync(ctx, room, true)
	if err != nil {
		log.Fatal(err)
	}
	defer aliceLogs.Close()
	bobLogs, err := bob.LogSync(ctx, room, true)
	if err != nil {
		log.Fatal(err)
	}
	defer bobLogs.Close()
	events, err := bobLogs.Subscribe()
	if err != nil {
		log.Fatal(err)
	}
	defer events.Close()

	if _, err := aliceLogs.Publish(ctx, []byte("hello, bob")); err != nil {
		log.Fatal(err)
	}
	wait, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		ev, err := events.Next(wait)
		if err != nil {
			log.Fatal(err)
		}
		if ev.Kind == syncproto.ItemReceived {
			fmt.Printf("bob got %q\n", ev.Item.(logsync.Entry).Op.Body)
			return
		}
	}
	// Output: bob got "hello, bob"
}

// A node keeps its identity and logs across restarts in its data directory.
func ExampleWithDataDir() {
	dir, cleanup := tempDir()
	defer cleanup()
	ctx := context.Background()
	room := topics.FromString("notes")

	n, err := lfnet.New(ctx, append(loopback, lfnet.WithDataDir(dir))...)
	if err != nil {
		log.Fatal(err)
	}
	id := n.ID()
	logs, err := n.LogSync(ctx, room, false)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := logs.Publish(ctx, []byte("remember me")); err != nil {
		log.Fatal(err)
	}
	logs.Close()
	n.Close()

	n, err = lfnet.New(ctx, append(loopback, lfnet.WithDataDir(dir))...)
	if err != nil {
		log.Fatal(err)
	}
	defer n.Close()
	logs, err = n.LogSync(ctx, room, false)
	if err != nil {
		log.Fatal(err)
	}
	defer logs.Close()
	_ = logs.Range(ctx, func(e logsync.Entry) error {
		fmt.Printf("%s (same node: %t)\n", e.Op.Body, n.ID() == id)
		return nil
	})
	// Output: remember me (same node: true)
}
