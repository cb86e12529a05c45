package discovery

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/lfnet/lfnet/topics"
)

func TestIntersectFindsExactlyTheCommonTopics(t *testing.T) {
	a, b, c, d := topics.FromString("a"), topics.FromString("b"), topics.FromString("c"), topics.FromString("d")
	saltI, saltA := newSalt(), newSalt()
	acceptor := []topics.Topic{b, c, d}
	var offered []Token
	for _, t := range acceptor {
		offered = append(offered, topicToken(t, saltI, saltA, roleAcceptor))
	}
	common := intersect([]topics.Topic{a, b, c}, offered, saltI, saltA, roleAcceptor)
	if len(common) != 2 || common[0] != b || common[1] != c {
		t.Fatalf("common = %v", common)
	}
	// Tokens of the other role never match.
	if got := intersect([]topics.Topic{a, b, c}, offered, saltI, saltA, roleInitiator); len(got) != 0 {
		t.Fatalf("role confusion: %v", got)
	}
}

func TestTokensDependOnSaltsAndRole(t *testing.T) {
	tp := topics.FromString("x")
	s1, s2 := newSalt(), newSalt()
	base := topicToken(tp, s1, s2, roleAcceptor)
	for _, other := range []Token{
		topicToken(tp, s2, s1, roleAcceptor),
		topicToken(tp, s1, s2, roleInitiator),
		topicToken(tp, s1, newSalt(), roleAcceptor),
		topicToken(topics.FromString("y"), s1, s2, roleAcceptor),
	} {
		if other == base {
			t.Fatal("token does not depend on every input")
		}
	}
}

func TestWalkerPrefersBootstrapThenFollowsResults(t *testing.T) {
	w := NewWalker("self", WalkerConfig{Walkers: 1, ResetProbability: 0, BackoffBase: time.Second, BackoffMax: 4 * time.Second}, rand.New(rand.NewPCG(1, 1)))
	now := time.Unix(0, 0)
	c := Candidates{Bootstrap: []peer.ID{"boot"}, Known: []peer.ID{"boot", "k1", "k2"}}
	if p, ok := w.Next(0, c, now); !ok || p != "boot" {
		t.Fatalf("first step %q, want the bootstrap node", p)
	}
	w.Result(0, "boot", []peer.ID{"n1", "self", "boot"}, false, now)
	if p, _ := w.Next(0, c, now); p != "n1" {
		t.Fatalf("walk did not follow the result: %q", p)
	}
}

func TestWalkerBacksOffFailingNodes(t *testing.T) {
	w := NewWalker("self", WalkerConfig{Walkers: 1, BackoffBase: time.Second, BackoffMax: 4 * time.Second}, rand.New(rand.NewPCG(1, 1)))
	now := time.Unix(0, 0)
	c := Candidates{Known: []peer.ID{"bad"}}
	wait := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}
	for _, d := range wait {
		p, ok := w.Next(0, c, now)
		if !ok || p != "bad" {
			t.Fatalf("expected to try the node at %v", now)
		}
		w.Result(0, p, nil, true, now)
		if _, ok := w.Next(0, c, now.Add(d-time.Millisecond)); ok {
			t.Fatalf("node retried before its %v backoff ended", d)
		}
		now = now.Add(d)
	}
	w.Result(0, "bad", nil, false, now)
	if w.BackedOff("bad", now) {
		t.Fatal("success did not clear the backoff")
	}
}

func TestWalkerResetsWithProbability(t *testing.T) {
	w := NewWalker("self", WalkerConfig{Walkers: 1, ResetProbability: 0.5}, rand.New(rand.NewPCG(7, 7)))
	now := time.Unix(0, 0)
	c := Candidates{Bootstrap: []peer.ID{"boot"}}
	w.Result(0, "boot", []peer.ID{"n"}, false, now)
	resets := 0
	for range 1000 {
		if p, _ := w.Next(0, c, now); p == "boot" {
			resets++
		}
	}
	if resets < 400 || resets > 600 {
		t.Fatalf("%d resets in 1000 steps at p=0.5", resets)
	}
}
