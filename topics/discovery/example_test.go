package discovery_test

import (
	"context"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	lfhost "github.com/lfnet/lfnet/host"
	"github.com/lfnet/lfnet/topics"
	"github.com/lfnet/lfnet/topics/discovery"
)

// Example runs one discovery session between two nodes that hold two topics each, one of
// them in common. Each learns the common topic and the other's signed record, and nothing
// about the topics it does not hold.
func Example() {
	ctx := context.Background()
	chess, garden, choir := topics.FromString("chess club"), topics.FromString("garden"), topics.FromString("choir")

	type node struct {
		h   *lfhost.Host
		reg *topics.Registry
		svc *discovery.Service
	}
	start := func(held ...topics.Topic) node {
		h, err := lfhost.New(ctx, lfhost.WithListenAddrs(ma.StringCast("/ip4/127.0.0.1/tcp/0")), lfhost.WithNATPortMap(false))
		if err != nil {
			panic(err)
		}
		reg := topics.NewRegistry()
		for _, t := range held {
			reg.Add(t)
		}
		cfg := discovery.DefaultConfig()
		cfg.StepInterval = 0 // no background walks: this example runs one session by hand
		return node{h, reg, discovery.New(h.Libp2p(), h.ProtocolID("discovery", "1"), h.AddressBook(), reg, cfg)}
	}
	a, b := start(chess, garden), start(chess, choir)
	defer func() {
		for _, n := range []node{a, b} {
			_ = n.svc.Close()
			n.reg.Close()
			_ = n.h.Close()
		}
	}()

	a.h.Libp2p().Peerstore().AddAddrs(b.h.ID(), b.h.Libp2p().Addrs(), peerstore.PermanentAddrTTL)
	res, err := a.svc.Discover(ctx, b.h.ID())
	if err != nil {
		panic(err)
	}
	fmt.Println("topics in common:", len(res.Common), res.Common[0] == chess)
	fmt.Println("a's address book has b for chess:", len(a.h.AddressBook().NodesForTopic(chess)) == 1)
	fmt.Println("a's address book has b for choir:", len(a.h.AddressBook().NodesForTopic(choir)) == 1)
	// Output:
	// topics in common: 1 true
	// a's address book has b for chess: true
	// a's address book has b for choir: false
}
