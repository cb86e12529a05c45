package gossip_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/lfnet/lfnet/topics"
	"github.com/lfnet/lfnet/topics/gossip"
)

// Two nodes on loopback share a room. Without a Membership every connected peer holding the
// topic is a neighbour; in lfnet the node facade plugs in the topic's HyParView overlay.
func Example() {
	ctx := context.Background()
	network := func(name, version string) protocol.ID {
		return protocol.ID("/lfnet/example/" + name + "/" + version)
	}
	room := topics.FromString("example room")

	var hosts [2]host.Host
	var routers [2]*gossip.Router
	for i := range hosts {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
		if err != nil {
			log.Fatal(err)
		}
		defer h.Close()
		r, err := gossip.New(ctx, h, gossip.Config{ProtocolID: network})
		if err != nil {
			log.Fatal(err)
		}
		defer r.Close()
		hosts[i], routers[i] = h, r
	}
	if err := hosts[0].Connect(ctx, peer.AddrInfo{ID: hosts[1].ID(), Addrs: hosts[1].Addrs()}); err != nil {
		log.Fatal(err)
	}

	alice, err := routers[0].Stream(ctx, room)
	if err != nil {
		log.Fatal(err)
	}
	defer alice.Close()
	bob, err := routers[1].Stream(ctx, room)
	if err != nil {
		log.Fatal(err)
	}
	defer bob.Close()
	inbox := bob.Subscribe()

	// Messages are ephemeral: wait until Bob is in Alice's mesh, or nobody hears her.
	for !slices.Contains(alice.MeshPeers(), hosts[1].ID()) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := alice.Publish(ctx, []byte("hello, room")); err != nil {
		log.Fatal(err)
	}
	msg, err := inbox.Next(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s (from Alice: %v)\n", msg.Data, msg.From == hosts[0].ID())

	err = alice.Publish(ctx, make([]byte, gossip.DefaultMaxMessageSize+1))
	fmt.Println(err != nil && errors.Is(err, gossip.ErrMessageTooLarge))
	// Output:
	// hello, room (from Alice: true)
	// true
}
