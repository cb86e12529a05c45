package benchkit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Dials on a loaded machine can miss libp2p's handshake timeout, and a failed dial puts the
// peer in dial backoff for a few seconds; connect retries each pair connectAttempts times,
// connectRetryWait apart.
const (
	connectAttempts  = 4
	connectRetryWait = 6 * time.Second
)

// connect connects h to info, retrying as described above.
func connect(ctx context.Context, h host.Host, info peer.AddrInfo) error {
	var err error
	for attempt := range connectAttempts {
		if attempt > 0 {
			select {
			case <-time.After(connectRetryWait):
			case <-ctx.Done():
				return errors.Join(err, ctx.Err())
			}
		}
		if err = h.Connect(ctx, info); err == nil {
			return nil
		}
	}
	return err
}

// ConnectAll connects every pair of hosts, a few dials at a time, and returns every dial's
// error.
func ConnectAll(ctx context.Context, hs []host.Host) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	sem := make(chan struct{}, 8)
	for i := range hs {
		for j := i + 1; j < len(hs); j++ {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				if err := connect(ctx, hs[i], peer.AddrInfo{ID: hs[j].ID(), Addrs: hs[j].Addrs()}); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("connect %d to %d: %w", i, j, err))
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ConnectTo connects h to every host of others, a few dials at a time.
func ConnectTo(ctx context.Context, h host.Host, others []host.Host) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	sem := make(chan struct{}, 8)
	for _, o := range others {
		if o.ID() == h.ID() {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := connect(ctx, h, peer.AddrInfo{ID: o.ID(), Addrs: o.Addrs()}); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("connect to %s: %w", o.ID().ShortString(), err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// BoundedGraph returns a connected random graph on n nodes in which no node has more than
// maxDegree neighbours: a ring, then random extra edges between nodes with room left.
// out[i] lists node i's neighbours in increasing order.
func BoundedGraph(n, maxDegree int, rng *rand.Rand) [][]int {
	adj := make([]map[int]bool, n)
	for i := range adj {
		adj[i] = map[int]bool{}
	}
	link := func(a, c int) { adj[a][c], adj[c][a] = true, true }
	for i := range n {
		link(i, (i+1)%n)
	}
	for range 50 * n {
		a, c := rng.IntN(n), rng.IntN(n)
		if a != c && !adj[a][c] && len(adj[a]) < maxDegree && len(adj[c]) < maxDegree {
			link(a, c)
		}
	}
	out := make([][]int, n)
	for i, m := range adj {
		for j := range m {
			out[i] = append(out[i], j)
		}
		slices.Sort(out[i])
	}
	return out
}
