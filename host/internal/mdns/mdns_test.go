package mdns

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/net/dns/dnsmessage"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testService = "_lfnet-0123abcd._udp.local."

func TestQueryRoundTrip(t *testing.T) {
	pkt, err := buildQuery(testService)
	if err != nil {
		t.Fatal(err)
	}
	got, err := parsePacket(pkt, testService)
	if err != nil {
		t.Fatal(err)
	}
	if !got.query || !got.asksForService {
		t.Fatalf("query parsed as %+v", got)
	}
	other, err := parsePacket(pkt, "_other._udp.local.")
	if err != nil {
		t.Fatal(err)
	}
	if other.asksForService {
		t.Fatal("query for another service matched")
	}
}

func TestResponseRoundTrip(t *testing.T) {
	txt := []string{"dnsaddr=/ip4/192.168.1.2/tcp/1/p2p/x", "dnsaddr=/ip4/192.168.1.2/udp/1/quic-v1/p2p/x"}
	pkt, err := buildResponse(testService, "abc."+testService, txt)
	if err != nil {
		t.Fatal(err)
	}
	got, err := parsePacket(pkt, testService)
	if err != nil {
		t.Fatal(err)
	}
	if got.query || len(got.instances) != 1 || !slices.Equal(got.instances["abc"], txt) {
		t.Fatalf("response parsed as %+v", got)
	}
	// The service name comparison ignores case, as DNS does.
	got, err = parsePacket(pkt, strings.ToUpper(testService))
	if err != nil || !slices.Equal(got.instances["abc"], txt) {
		t.Fatalf("case-insensitive match: %+v %v", got, err)
	}
	// Other services' instances are ignored.
	got, err = parsePacket(pkt, "_other._udp.local.")
	if err != nil || len(got.instances) != 0 {
		t.Fatalf("other service: %+v %v", got, err)
	}
}

func TestResponseStaysSmall(t *testing.T) {
	var txt []string
	for i := range 200 {
		txt = append(txt, fmt.Sprintf("dnsaddr=/ip4/192.168.1.%d/tcp/4001/p2p/12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf", i))
	}
	txt = append(txt, strings.Repeat("x", 300)) // longer than a TXT string can be
	pkt, err := buildResponse(testService, "abc."+testService, txt)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkt) > maxAnnouncementBytes {
		t.Fatalf("announcement of %d bytes exceeds %d", len(pkt), maxAnnouncementBytes)
	}
	got, err := parsePacket(pkt, testService)
	if err != nil || len(got.instances["abc"]) == 0 {
		t.Fatalf("truncated announcement unreadable: %+v %v", got, err)
	}
}

// TestParseBoundsInstances: a packet describing many instances with many strings yields at
// most maxInstancesPerPkt instances of maxTXTPerInstance strings.
func TestParseBoundsInstances(t *testing.T) {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{Response: true})
	if err := b.StartAnswers(); err != nil {
		t.Fatal(err)
	}
	many := make([]string, 100)
	for i := range many {
		many[i] = "s"
	}
	for i := range 40 {
		name := dnsmessage.MustNewName(fmt.Sprintf("i%d.%s", i, testService))
		if err := b.TXTResource(dnsmessage.ResourceHeader{Name: name, Class: dnsmessage.ClassINET}, dnsmessage.TXTResource{TXT: many}); err != nil {
			t.Fatal(err)
		}
	}
	pkt, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	got, err := parsePacket(pkt, testService)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.instances) != maxInstancesPerPkt {
		t.Fatalf("%d instances kept, want %d", len(got.instances), maxInstancesPerPkt)
	}
	for inst, strs := range got.instances {
		if len(strs) != maxTXTPerInstance {
			t.Fatalf("instance %s kept %d strings, want %d", inst, len(strs), maxTXTPerInstance)
		}
	}
}

func FuzzParsePacket(f *testing.F) {
	q, _ := buildQuery(testService)
	r, _ := buildResponse(testService, "abc."+testService, []string{"dnsaddr=/ip4/1.2.3.4/tcp/1"})
	f.Add(q)
	f.Add(r)
	f.Add([]byte{})
	unicode := dnsmessage.NewBuilder(nil, dnsmessage.Header{Response: true})
	_ = unicode.StartAnswers()
	_ = unicode.TXTResource(dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName("\u0130\u0130." + testService), Class: dnsmessage.ClassINET},
		dnsmessage.TXTResource{TXT: []string{"x"}})
	if pkt, err := unicode.Finish(); err == nil {
		f.Add(pkt)
	}
	f.Add(make([]byte, 12))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		got, err := parsePacket(pkt, testService)
		if err != nil {
			return
		}
		if len(got.instances) > maxInstancesPerPkt {
			t.Fatalf("%d instances", len(got.instances))
		}
		for inst, strs := range got.instances {
			if inst == "" || strings.Contains(inst, ".") || len(strs) > maxTXTPerInstance {
				t.Fatalf("bad instance %q with %d strings", inst, len(strs))
			}
		}
	})
}
