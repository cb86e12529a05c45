package test

import (
	"context"
	"io"
	"sync"
	"testing"

	"github.com/lfnet/lfnet"
	lfhost "github.com/lfnet/lfnet/host"
)

// startNodes starts count lfnet nodes on loopback with fastOptions; node i > 0 knows only
// node bootstrapOf(i), so discovery and membership have to do the rest. open runs on each
// node once it is up and returns the handles it opened. When the test ends, every node
// closes its handles in order and then itself, all nodes at once.
func startNodes(t *testing.T, count int, bootstrapOf func(i int) int, open func(n *lfnet.Node) []io.Closer) []*lfnet.Node {
	t.Helper()
	var all []*lfnet.Node
	var handles [][]io.Closer
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for i, n := range all {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if i < len(handles) {
					for _, h := range handles[i] {
						_ = h.Close()
					}
				}
				if err := n.Close(); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	})
	for i := range count {
		opts := append(fastOptions(), lfnet.WithHostOptions(lfhost.WithNATPortMap(false)))
		if i > 0 {
			opts = append(opts, lfnet.WithBootstrap(all[bootstrapOf(i)].Addrs()[0].String()))
		}
		n, err := lfnet.New(context.Background(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, n)
		handles = append(handles, open(n))
	}
	return all
}
