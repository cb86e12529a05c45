package membership_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/lfnet/lfnet/membership"
	"github.com/lfnet/lfnet/topics"
)

// node is a peer id for the example; libp2p's peer.ID works the same way.
type node uint32

func (n node) MarshalBinary() ([]byte, error) {
	return []byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, nil
}

// Two state machines join by hand: the embedder carries every Send to the other side and
// watches NeighborUp.
func Example() {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	key := topics.Derive(topics.FromString("example"), "membership-auth")
	states := map[node]*membership.State[node]{}
	for id := node(1); id <= 2; id++ {
		st, err := membership.NewState(id, key, membership.DefaultConfig(), rand.New(rand.NewPCG(uint64(id), 0)), now)
		if err != nil {
			panic(err)
		}
		states[id] = st
		st.Actions() // the first shuffle timer; a real embedder would arm it
	}

	type delivery struct {
		from, to node
		msg      membership.Message
	}
	var queue []delivery
	collect := func(id node) {
		for _, a := range states[id].Actions() {
			switch a.Kind {
			case membership.ActionSend:
				fmt.Printf("%d -> %d: %v\n", id, a.Peer, a.Msg.Kind())
				queue = append(queue, delivery{id, a.Peer, a.Msg})
			case membership.ActionNeighborUp:
				fmt.Printf("%d: neighbour %d up\n", id, a.Peer)
			}
		}
	}

	states[2].Join(membership.PeerInfo[node]{ID: 1}, now)
	collect(2)
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		states[d.to].HandleMessage(d.from, d.msg, now)
		collect(d.to)
	}
	fmt.Println(states[1].ActiveView(), states[2].ActiveView())
	// Output:
	// 2 -> 1: Join
	// 1: neighbour 2 up
	// 1 -> 2: Neighbor
	// 2: neighbour 1 up
	// 2 -> 1: NeighborReply
	// [2] [1]
}

// The driver runs one overlay per topic on a libp2p host; NeighborUp and NeighborDown
// events tell the layers above which links to use.
func ExampleDriver() {
	var h host.Host // the application's libp2p host
	var contact peer.AddrInfo
	d, err := membership.NewDriver(h, "/lfnet/0123456789abcdef/membership/1")
	if err != nil {
		panic(err)
	}
	defer d.Close()

	overlay, err := d.Join(context.Background(), topics.FromString("my room"), []peer.AddrInfo{contact})
	if err != nil {
		panic(err)
	}
	for ev := range overlay.Events() {
		switch ev.Kind {
		case membership.EventNeighborUp:
			fmt.Println("sync with", ev.Peer)
		case membership.EventNeighborDown:
			fmt.Println("stop syncing with", ev.Peer)
		case membership.EventNeedContacts:
			// ask discovery for more nodes of the topic, then overlay.AddContacts(...)
		}
	}
}
