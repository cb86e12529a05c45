package host_test

import (
	"context"
	"fmt"
	"io"

	"github.com/libp2p/go-libp2p/core/network"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/lfnet/lfnet/host"
)

func ExampleProtocolID() {
	network := host.NetworkIDFromName("example network")
	fmt.Println(host.ProtocolID(network, "sync", "1"))
	fmt.Println(host.ProtocolID(host.DefaultNetworkID, "sync", "1"))
	// Output:
	// /lfnet/9baf3114136142ca/sync/1
	// /lfnet/1e124a9cf9a352ed/sync/1
}

// Two nodes of the same network: one serves a protocol, the other bootstraps from it and
// uses it.
func ExampleNew() {
	ctx := context.Background()
	loopback := host.WithListenAddrs(ma.StringCast("/ip4/127.0.0.1/tcp/0"))
	server, err := host.New(ctx, loopback, host.WithNATPortMap(false))
	if err != nil {
		panic(err)
	}
	defer server.Close()
	greet := server.ProtocolID("greet", "1")
	server.Libp2p().SetStreamHandler(greet, func(s network.Stream) {
		defer s.Close()
		_, _ = s.Write([]byte("hello from the server"))
	})

	client, err := host.New(ctx, loopback, host.WithNATPortMap(false), host.WithBootstrap(server.Addrs()...))
	if err != nil {
		panic(err)
	}
	defer client.Close()
	// The bootstrap dial puts the server's address in the peerstore, so its id is enough.
	s, err := client.Libp2p().NewStream(ctx, server.ID(), client.ProtocolID("greet", "1"))
	if err != nil {
		panic(err)
	}
	defer s.Close()
	reply, err := io.ReadAll(s)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(reply))
	// Output: hello from the server
}
