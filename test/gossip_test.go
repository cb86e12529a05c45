package test

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/lfnet/lfnet"
	"github.com/lfnet/lfnet/topics"
	"github.com/lfnet/lfnet/topics/gossip"
)

// TestGossip30NodesThroughDiscovery is issue 6's gossip scenario through the whole stack:
// 30 nodes join one topic through discovery, each publishes 10 messages, and every node
// receives each of the other nodes' 290 messages exactly once, never its own.
//
// It once lost up to a third of the messages: GossipSub keeps a mesh link after its peer
// leaves the active view, and the router dropped whatever arrived over such links. See
// the gossip router's topicState.admits.
func TestGossip30NodesThroughDiscovery(t *testing.T) {
	if testing.Short() {
		t.Skip("30 nodes")
	}
	const nodes, perNode = 30, 10
	start := time.Now()
	room := topics.FromString("gossip thirty")
	var handles []*gossip.Handle
	// Each node knows one earlier node; discovery and membership do the rest.
	all := startNodes(t, nodes, func(i int) int { return (i - 1) / 2 }, func(n *lfnet.Node) []io.Closer {
		g, err := n.Gossip(context.Background(), room)
		if err != nil {
			t.Fatal(err)
		}
		handles = append(handles, g)
		return []io.Closer{g}
	})
	// Count what each node receives, by author and text, checking as messages arrive so
	// that polling for completion stays cheap.
	type key struct {
		from peer.ID
		text string
	}
	type inbox struct {
		got     map[key]int
		problem string // the first duplicate or own message, if any
	}
	boxes := make([]inbox, nodes)
	var mu sync.Mutex
	ctx, cancel := context.WithCancel(context.Background())
	var readers sync.WaitGroup
	for i, g := range handles {
		boxes[i].got = map[key]int{}
		self := all[i].ID()
		sub := g.Subscribe()
		readers.Add(1)
		go func() {
			defer readers.Done()
			defer sub.Close()
			for {
				m, err := sub.Next(ctx)
				if err != nil {
					return
				}
				k := key{m.From, string(m.Data)}
				mu.Lock()
				box := &boxes[i]
				box.got[k]++
				switch {
				case box.problem != "":
				case m.From == self:
					box.problem = fmt.Sprintf("node %d received its own message %q", i, k.text)
				case box.got[k] > 1:
					box.problem = fmt.Sprintf("node %d received %q %d times", i, k.text, box.got[k])
				}
				mu.Unlock()
			}
		}()
	}
	defer func() {
		cancel()
		readers.Wait()
	}()
	// Gossip is ephemeral: it reaches whoever is in the mesh when it is sent. Publish once
	// every node's messages can reach every other node through the gossip meshes (which
	// follow the overlays' active views).
	index := map[peer.ID]int{}
	for i, n := range all {
		index[n.ID()] = i
	}
	// unreachable names a node that cannot reach every other through the meshes, or is "".
	unreachable := func() string {
		mesh := make([][]int, nodes)
		for i, g := range handles {
			for _, p := range g.MeshPeers() {
				if j, ok := index[p]; ok {
					mesh[i] = append(mesh[i], j)
				}
			}
		}
		for from := range nodes {
			seen := map[int]bool{from: true}
			queue := []int{from}
			for len(queue) > 0 {
				i := queue[0]
				queue = queue[1:]
				for _, j := range mesh[i] {
					if !seen[j] {
						seen[j] = true
						queue = append(queue, j)
					}
				}
			}
			if len(seen) != nodes {
				return fmt.Sprintf("node %d reaches %d of %d nodes (its mesh: %d peers)", from, len(seen), nodes, len(mesh[from]))
			}
		}
		return ""
	}
	// Deadlines only catch hangs; the machine may be slow and shared.
	deadline := time.Now().Add(3 * time.Minute)
	for problem := unreachable(); problem != ""; problem = unreachable() {
		if time.Now().After(deadline) {
			t.Fatalf("the gossip meshes never let every node reach every other: %s", problem)
		}
		time.Sleep(50 * time.Millisecond)
	}
	settled := time.Now()
	var publishers sync.WaitGroup
	for i, g := range handles {
		publishers.Add(1)
		go func() {
			defer publishers.Done()
			for j := range perNode {
				if err := g.Publish(context.Background(), []byte(fmt.Sprintf("message %d from %d", j, i))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	publishers.Wait()
	if t.Failed() {
		return
	}
	deadline = time.Now().Add(3 * time.Minute)
	for {
		mu.Lock()
		complete, problem := true, ""
		for i := range nodes {
			if p := boxes[i].problem; p != "" {
				mu.Unlock()
				t.Fatal(p)
			}
			if n := len(boxes[i].got); n != (nodes-1)*perNode {
				complete = false
				problem = fmt.Sprintf("node %d has %d of %d messages", i, n, (nodes-1)*perNode)
			}
		}
		mu.Unlock()
		if complete {
			t.Logf("meshes settled %v after the first node started; all delivered %v after publishing",
				settled.Sub(start).Round(time.Millisecond), time.Since(settled).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(problem)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
