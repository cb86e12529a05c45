package host

import (
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"golang.org/x/net/ipv4"
)

// withMDNSPort moves mDNS to another port, so the test neither talks to the machine's own
// mDNS responder nor to concurrently running tests.
func withMDNSPort(port int) Option {
	return func(c *config) error {
		c.mdnsPort = port
		return nil
	}
}

func loopbackInterface(t *testing.T) net.Interface {
	t.Helper()
	ifis, err := net.Interfaces()
	if err != nil {
		t.Skipf("cannot list interfaces: %v", err)
	}
	for _, ifi := range ifis {
		if ifi.Flags&net.FlagLoopback != 0 && ifi.Flags&net.FlagUp != 0 {
			return ifi
		}
	}
	t.Skip("no loopback interface")
	return net.Interface{}
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// requireLoopbackMulticast skips the test unless a multicast packet sent on the loopback
// interface comes back on it, which is all the mDNS test needs and never leaves the machine.
func requireLoopbackMulticast(t *testing.T, lo net.Interface, port int) {
	t.Helper()
	group := net.IPv4(224, 0, 0, 251)
	rc, err := net.ListenPacket("udp4", net.JoinHostPort("0.0.0.0", strconv.Itoa(port)))
	if err != nil {
		t.Skipf("multicast unavailable: %v", err)
	}
	defer rc.Close()
	rp := ipv4.NewPacketConn(rc)
	if err := rp.JoinGroup(&lo, &net.UDPAddr{IP: group}); err != nil {
		t.Skipf("multicast unavailable on %s: %v", lo.Name, err)
	}
	sc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Skipf("multicast unavailable: %v", err)
	}
	defer sc.Close()
	sp := ipv4.NewPacketConn(sc)
	if err := sp.SetMulticastInterface(&lo); err != nil {
		t.Skipf("multicast unavailable on %s: %v", lo.Name, err)
	}
	_ = sp.SetMulticastLoopback(true)
	if _, err := sp.WriteTo([]byte("probe"), nil, &net.UDPAddr{IP: group, Port: port}); err != nil {
		t.Skipf("multicast send failed on %s: %v", lo.Name, err)
	}
	_ = rc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	if n, _, err := rc.ReadFrom(buf); err != nil || string(buf[:n]) != "probe" {
		t.Skipf("loopback multicast does not come back on %s: %v", lo.Name, err)
	}
}

// TestMDNSDiscovery: two hosts with mDNS on the loopback interface find each other, connect,
// and each ends up in the other's address book. A host with mDNS off is not found.
func TestMDNSDiscovery(t *testing.T) {
	lo := loopbackInterface(t)
	port := freeUDPPort(t)
	requireLoopbackMulticast(t, lo, port)

	netID := NetworkIDFromName("mdns test")
	mdnsOpts := []Option{WithNetworkID(netID), WithMDNS(true), WithMDNSInterfaces(lo.Name), withMDNSPort(port)}
	a := newTestHost(t, mdnsOpts...)
	b := newTestHost(t, mdnsOpts...)
	quiet := newTestHost(t, WithNetworkID(netID))

	for _, pair := range [][2]*Host{{a, b}, {b, a}} {
		x, y := pair[0], pair[1]
		eventually(t, "mDNS to bring a node into the address book", func() bool {
			e, ok := x.AddressBook().Get(y.ID())
			return ok && e.Record != nil
		})
	}
	for _, h := range []*Host{a, b} {
		if _, ok := h.AddressBook().Get(quiet.ID()); ok {
			t.Fatal("found a node that has mDNS off")
		}
	}
}

func TestMDNSServiceNameDependsOnNetwork(t *testing.T) {
	a, b := mdnsServiceName(NetworkIDFromName("a")), mdnsServiceName(NetworkIDFromName("b"))
	if a == b {
		t.Fatal("two networks share an mDNS service name")
	}
	// RFC 6335: service names are at most 15 characters (plus the leading underscore).
	if svc := a[1 : len(a)-len("._udp")]; len(svc) > 15 {
		t.Fatalf("service name %q too long", svc)
	}
}

func TestParseMDNSTXTFiltersAddresses(t *testing.T) {
	self := randomID(t)
	other := randomID(t)
	p2p := "/p2p/" + other.String()
	txt := []string{
		"dnsaddr=/ip4/192.168.1.5/tcp/4001" + p2p,
		"dnsaddr=/ip4/127.0.0.1/udp/4001/quic-v1" + p2p,
		"dnsaddr=/ip4/8.8.8.8/tcp/4001" + p2p,                                // public: not from a LAN
		"dnsaddr=/ip4/10.0.0.1/tcp/1/p2p/" + other.String() + "/p2p-circuit", // relayed
		"dnsaddr=/ip4/10.0.0.2/tcp/4001/p2p/" + self.String(),                // ourselves
		"dnsaddr=not a multiaddr",
		"something=else",
		"dnsaddr=/ip4/10.0.0.3/tcp/4001", // no node id
	}
	got := parseMDNSTXT(txt, self)
	want := []peer.AddrInfo{{ID: other, Addrs: []ma.Multiaddr{
		ma.StringCast("/ip4/192.168.1.5/tcp/4001"), ma.StringCast("/ip4/127.0.0.1/udp/4001/quic-v1"),
	}}}
	if len(got) != 1 || got[0].ID != want[0].ID || !slices.EqualFunc(got[0].Addrs, want[0].Addrs, ma.Multiaddr.Equal) {
		t.Fatalf("parseMDNSTXT = %v, want %v", got, want)
	}
}

func FuzzParseMDNSTXT(f *testing.F) {
	f.Add("dnsaddr=/ip4/192.168.1.5/tcp/4001/p2p/12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf", "dnsaddr=")
	f.Add("dnsaddr=/ip6/fe80::1/udp/1/quic-v1", "x")
	self := peer.ID("self")
	f.Fuzz(func(t *testing.T, a, b string) {
		for _, info := range parseMDNSTXT([]string{a, b}, self) {
			if info.ID == self || len(info.Addrs) == 0 || len(info.Addrs) > mdnsMaxAddrs {
				t.Fatalf("bad result %v", info)
			}
			for _, addr := range info.Addrs {
				if !lanDialable(addr) {
					t.Fatalf("non-LAN address %s", addr)
				}
			}
		}
	})
}
