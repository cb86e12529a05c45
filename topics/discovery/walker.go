package discovery

import (
	"math/rand/v2"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// WalkerConfig tunes the random walks.
type WalkerConfig struct {
	// Walkers is how many independent walks run.
	Walkers int
	// ResetProbability is the chance that a step restarts from a bootstrap or known node
	// instead of continuing from the last session's results.
	ResetProbability float64
	// BackoffBase and BackoffMax bound the per-node exponential backoff after failures.
	BackoffBase, BackoffMax time.Duration
}

// DefaultWalkerConfig returns two walkers resetting with probability 0.02, and per-node
// backoff from 5 s doubling to 10 min.
func DefaultWalkerConfig() WalkerConfig {
	return WalkerConfig{Walkers: 2, ResetProbability: 0.02, BackoffBase: 5 * time.Second, BackoffMax: 10 * time.Minute}
}

// Candidates is what the walker may reset to.
type Candidates struct {
	Bootstrap []peer.ID
	Known     []peer.ID
}

type backoff struct {
	failures int
	until    time.Time
}

// Walker decides which node each random walk contacts next. It does no I/O: Next proposes
// a node, Result reports the session's outcome. Not safe for concurrent use.
type Walker struct {
	self    peer.ID
	cfg     WalkerConfig
	rng     *rand.Rand
	last    [][]peer.ID // per walker: nodes returned by its last session
	backoff map[peer.ID]*backoff
}

// NewWalker returns a walker for node self.
func NewWalker(self peer.ID, cfg WalkerConfig, rng *rand.Rand) *Walker {
	if cfg.Walkers < 1 {
		cfg.Walkers = 1
	}
	return &Walker{self: self, cfg: cfg, rng: rng, last: make([][]peer.ID, cfg.Walkers), backoff: make(map[peer.ID]*backoff)}
}

// Walkers returns the number of walks.
func (w *Walker) Walkers() int { return len(w.last) }

func (w *Walker) usable(p peer.ID, now time.Time) bool {
	if p == w.self {
		return false
	}
	b, ok := w.backoff[p]
	return !ok || !now.Before(b.until)
}

func (w *Walker) pick(from []peer.ID, now time.Time) (peer.ID, bool) {
	var ok []peer.ID
	for _, p := range from {
		if w.usable(p, now) {
			ok = append(ok, p)
		}
	}
	if len(ok) == 0 {
		return "", false
	}
	return ok[w.rng.IntN(len(ok))], true
}

// Next proposes the node walk i contacts now; ok is false when no node is usable.
// Bootstrap nodes are preferred whenever the walk (re)starts.
func (w *Walker) Next(i int, c Candidates, now time.Time) (peer.ID, bool) {
	if len(w.last[i]) > 0 && w.rng.Float64() >= w.cfg.ResetProbability {
		if p, ok := w.pick(w.last[i], now); ok {
			return p, true
		}
	}
	if p, ok := w.pick(c.Bootstrap, now); ok {
		return p, true
	}
	return w.pick(c.Known, now)
}

// Result reports walk i's session with p: the nodes it returned, or failed.
func (w *Walker) Result(i int, p peer.ID, returned []peer.ID, failed bool, now time.Time) {
	if failed {
		b := w.backoff[p]
		if b == nil {
			b = &backoff{}
			w.backoff[p] = b
		}
		b.failures++
		d := w.cfg.BackoffBase
		for k := 1; k < b.failures && d < w.cfg.BackoffMax; k++ {
			d *= 2
		}
		b.until = now.Add(min(d, w.cfg.BackoffMax))
		return
	}
	delete(w.backoff, p)
	next := slices.DeleteFunc(slices.Clone(returned), func(q peer.ID) bool { return q == w.self || q == p })
	w.last[i] = next
}

// BackedOff reports whether p is waiting out a backoff at now.
func (w *Walker) BackedOff(p peer.ID, now time.Time) bool { return !w.usable(p, now) && p != w.self }

// pacer sets the pause between rounds of walk steps: base after news, doubling while
// rounds bring none, up to max. A round is cheap for one node but the walks of every node
// together are the largest background traffic of a quiet network (BENCHMARKS.md, "At
// scale"), and in a network whose membership does not change they find nothing new.
type pacer struct {
	base, max, cur time.Duration
}

// next returns the pause after a round; news says whether the round learned anything.
func (p *pacer) next(news bool) time.Duration {
	switch {
	case news || p.cur == 0:
		p.cur = p.base
	default:
		p.cur = min(2*p.cur, max(p.max, p.base))
	}
	return p.cur
}

// reset makes the next pause base again.
func (p *pacer) reset() { p.cur = 0 }
