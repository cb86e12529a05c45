package container

import (
	"fmt"
	"testing"
	"time"

	"github.com/lfnet/lfnet/test/internal/chatproc"
)

// TestPartitionHeals: five lfchat nodes and an lfnode (their only bootstrap node) on one
// network. All exchange messages; two nodes are cut off the network and everybody keeps
// writing; once they are back, every node has every message.
func TestPartitionHeals(t *testing.T) {
	requireDocker(t)
	p := startProject(t, "net")
	boot := p.lfnodeAddr("net")
	room := topic()
	names := []string{"n1", "n2", "n3", "n4", "n5"}
	procs := make(map[string]*chatproc.Proc)
	for _, n := range names {
		procs[n] = p.chat(n, "net", "--topic", room, "--bootstrap", boot)
	}
	start := time.Now()
	for _, n := range names {
		procs[n].Say("hello from " + n)
	}
	for _, n := range names {
		procs[n].WaitFor(othersSay(names, n, "hello from %s")...)
	}
	t.Logf("5 nodes exchanged messages in %v", time.Since(start).Round(time.Second))

	cut := []string{"n4", "n5"}
	for _, n := range cut {
		mustRun(t, "docker", "network", "disconnect", p.network("net"), p.container(n))
	}
	for _, n := range names {
		procs[n].Say("while split, " + n)
	}
	// The side that kept the network still syncs, and the split is real.
	procs["n1"].WaitFor("while split, n2", "while split, n3")
	for _, n := range cut {
		if procs["n1"].Received("while split, "+n) > 0 || procs[n].Received("while split, n1") > 0 {
			t.Fatalf("%s was not cut off", n)
		}
	}
	start = time.Now()
	for _, n := range cut {
		mustRun(t, "docker", "network", "connect", p.network("net"), p.container(n))
	}
	for _, n := range names {
		procs[n].WaitFor(othersSay(names, n, "while split, %s")...)
	}
	t.Logf("all nodes converged %v after the two reconnected", time.Since(start).Round(time.Second))
}

// othersSay formats msg for every name except self.
func othersSay(names []string, self, msg string) []string {
	var out []string
	for _, n := range names {
		if n != self {
			out = append(out, fmt.Sprintf(msg, n))
		}
	}
	return out
}

// TestRelayJoinsUnroutableNetworks: X and Y sit on two internal networks with no route
// between them; lfnode is on both. Each knows only lfnode's address on its own network,
// as bootstrap node and relay. They find each other through lfnode and sync over a relayed
// connection.
func TestRelayJoinsUnroutableNetworks(t *testing.T) {
	requireDocker(t)
	p := startProject(t, "a", "b")
	bootA, bootB := p.lfnodeAddr("a"), p.lfnodeAddr("b")
	room := topic()
	x := p.chat("x", "a", "--topic", room, "--bootstrap", bootA, "--relay", bootA)
	y := p.chat("y", "b", "--topic", room, "--bootstrap", bootB, "--relay", bootB)
	start := time.Now()
	x.Say("x to y")
	y.Say("y to x")
	y.WaitFor("x to y")
	x.WaitFor("y to x")
	t.Logf("X and Y synced through lfnode in %v", time.Since(start).Round(time.Second))
	for _, conn := range x.WaitConnected(y.Ready.ID) {
		if !conn.Relayed {
			t.Errorf("x reaches y directly at %s", conn.Addr)
		}
		t.Logf("x reaches y at %s", conn.Addr)
	}
	for _, conn := range y.WaitConnected(x.Ready.ID) {
		if !conn.Relayed {
			t.Errorf("y reaches x directly at %s", conn.Addr)
		}
	}
}
