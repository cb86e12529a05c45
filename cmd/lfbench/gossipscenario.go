package main

// The gossip scenario compares lfnet gossip with plain GossipSub on the same hosts at the
// same time, as topics/gossip's BenchmarkGossip50 does, but through whole lfnet nodes: --nodes
// (50) lfnet.Node instances joined through bootstrap and discovery, each gossiping on one
// topic within its HyParView active view; on the same hosts, stock go-libp2p-pubsub
// GossipSub with default options on another topic, every pair of hosts connected. Each
// round every node publishes --per-node (10) messages of --payload (256) bytes at random
// moments over --window (20 s), the same schedule in both systems.
//
//	round "steady": no churn.
//	round "20% churn": during the window --churn (20%) of the nodes leave (lfnet.Node.Close,
//	which also ends their plain GossipSub) and as many fresh nodes join (new identities,
//	bootstrapping from a random node that stays, connected to every host for plain
//	GossipSub). Only messages between nodes that stay count; the others still publish.
//
// Per round:
//
//	(a) lfnet latency p99 against plain GossipSub's p99 in the same round; target < 1.5x
//	(b) lfnet latency p50 against plain GossipSub's p50 (no target)
//	(c) lfnet delivery ratio; target 100% without churn, and at least plain GossipSub's
//	    ratio under churn
//	(d) plain GossipSub's delivery ratio (no target)

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/lfnet/lfnet"
	"github.com/lfnet/lfnet/internal/benchkit"
	"github.com/lfnet/lfnet/topics"
	"github.com/lfnet/lfnet/topics/gossip"
)

func init() {
	register(scenario{
		name:    "gossip",
		summary: "gossip delivery and latency p50/p99 of 50 lfnet nodes vs plain GossipSub on the same hosts in the same run, steady and under 20% churn",
		setup:   setupGossip,
	})
}

// Targets of the gossip issue.
const (
	gossipP99Share = 1.5 // lfnet p99 / plain GossipSub p99
)

type gossipOptions struct {
	nodes       int
	perNode     int
	payload     byteSize
	window      time.Duration
	deadline    time.Duration
	churn       float64
	rounds      string
	walkStep    time.Duration
	formTimeout time.Duration
	seed        uint64
}

func setupGossip(fs *flag.FlagSet) runFunc {
	o := &gossipOptions{payload: 256}
	fs.IntVar(&o.nodes, "nodes", 50, "nodes in each system (the same hosts)")
	fs.IntVar(&o.perNode, "per-node", 10, "messages each node publishes per round")
	fs.Var(&o.payload, "payload", "message size; accepts KiB")
	fs.DurationVar(&o.window, "window", 20*time.Second, "publications are spread over this window")
	fs.DurationVar(&o.deadline, "deadline", 30*time.Second, "how long after the window deliveries may still arrive")
	fs.Float64Var(&o.churn, "churn", 0.2, "share of the nodes that leave (and are replaced by as many joining) in the churn round")
	fs.StringVar(&o.rounds, "rounds", "steady,churn", "rounds to run: steady, churn or both")
	fs.DurationVar(&o.walkStep, "walk-step", 0, "discovery step interval (0: lfnet's default, 10 s)")
	fs.DurationVar(&o.formTimeout, "form-timeout", 5*time.Minute, "how long the overlays and meshes may take to form")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the schedules and of who churns")
	return o.run
}

const plainTopic = "lfbench plain gossipsub"

// Warm-up messages use rounds from warmUpRound on, apart from the measured rounds; each
// attempt waits warmUpWait for its message to reach every node.
const (
	warmUpRound = 1 << 20
	warmUpWait  = 5 * time.Second
)

// gossipSlot is one node of the run, in both systems.
type gossipSlot struct {
	node   *lfnet.Node
	handle *gossip.Handle
	plain  *pubsub.Topic
	stop   context.CancelFunc // ends the plain router and both readers
	done   sync.WaitGroup     // the readers
	stable bool               // stays for the whole run
	gone   bool
}

// gossipNet is the running network: slots in order of joining; slot i is node i in the
// recorders and the messages.
type gossipNet struct {
	o     *gossipOptions
	room  topics.Topic
	lfRec *benchkit.Recorder
	plRec *benchkit.Recorder

	mu    sync.Mutex
	slots []*gossipSlot
	// warmUps lists, per warm-up, how many messages it took until one reached every node.
	warmUps []int
}

func (o *gossipOptions) run(ctx context.Context, e *env) (err error) {
	var steady, churn bool
	for _, r := range splitList(o.rounds) {
		switch r {
		case "steady":
			steady = true
		case "churn":
			churn = true
		default:
			return fmt.Errorf("--rounds %q: want steady, churn or both", o.rounds)
		}
	}
	if o.nodes < 3 || o.perNode < 1 || o.window <= 0 || o.deadline <= 0 || o.churn < 0 || o.churn >= 1 || int(o.payload) < benchkit.StampSize {
		return fmt.Errorf("want --nodes >= 3, --per-node >= 1, positive --window and --deadline, 0 <= --churn < 1, --payload >= %d", benchkit.StampSize)
	}
	churners := int(o.churn*float64(o.nodes) + 0.5)
	e.report.Config["nodes"], e.report.Config["per_node"], e.report.Config["payload_bytes"] = o.nodes, o.perNode, int64(o.payload)
	e.report.Config["window"], e.report.Config["churn_nodes"], e.report.Config["walk_step"] = o.window.String(), churners, o.walkStep.String()

	capacity := o.nodes + churners
	g := &gossipNet{o: o, room: topics.FromString("lfbench gossip room"),
		lfRec: benchkit.NewRecorder(capacity), plRec: benchkit.NewRecorder(capacity)}
	defer func() { err = errors.Join(err, g.close()) }()

	e.logf("starting %d nodes", o.nodes)
	formStart := time.Now()
	for i := range o.nodes {
		var boot []string
		if i > 0 {
			boot = []string{bootAddr(g.slots[(i-1)/2].node)}
		}
		if _, err := g.join(ctx, boot); err != nil {
			return err
		}
	}
	hosts := g.hosts()
	connectCtx, cancel := context.WithTimeout(ctx, o.formTimeout)
	err = benchkit.ConnectAll(connectCtx, hosts)
	cancel()
	if err != nil {
		return fmt.Errorf("connect the plain GossipSub hosts: %w", err)
	}
	if err := g.waitFormed(ctx); err != nil {
		return err
	}
	e.logf("overlays and meshes formed in %.1f s (warm-up messages sent: %d)", time.Since(formStart).Seconds(), g.warmUps[0])

	rng := rand.New(rand.NewPCG(o.seed, 7))
	round := uint32(0)
	if steady {
		round++
		if err := g.round(ctx, e, round, "steady", rng, 0, !churn); err != nil {
			return err
		}
	}
	if churn {
		round++
		if err := g.round(ctx, e, round, fmt.Sprintf("%.0f%% churn", 100*o.churn), rng, churners, true); err != nil {
			return err
		}
	}
	e.note("warm-up messages sent until one reached every node, per warm-up: %v", g.warmUps)
	return nil
}

// join starts one node in both systems and returns its slot index.
func (g *gossipNet) join(ctx context.Context, boot []string) (int, error) {
	n, err := lfnet.New(ctx, nodeOptions(nil, g.o.walkStep, boot...)...)
	if err != nil {
		return 0, fmt.Errorf("start node: %w", err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	s := &gossipSlot{node: n, stop: stop}
	g.mu.Lock()
	idx := len(g.slots)
	g.slots = append(g.slots, s)
	g.mu.Unlock()
	if s.handle, err = n.Gossip(ctx, g.room); err != nil {
		return idx, fmt.Errorf("node %d gossip: %w", idx, err)
	}
	h := n.Host().Libp2p()
	ps, err := pubsub.NewGossipSub(runCtx, h)
	if err != nil {
		return idx, fmt.Errorf("node %d plain gossipsub: %w", idx, err)
	}
	if s.plain, err = ps.Join(plainTopic); err != nil {
		return idx, fmt.Errorf("node %d plain gossipsub join: %w", idx, err)
	}
	psub, err := s.plain.Subscribe()
	if err != nil {
		return idx, fmt.Errorf("node %d plain gossipsub subscribe: %w", idx, err)
	}
	sub := s.handle.Subscribe()
	self := h.ID()
	s.done.Add(2)
	go func() {
		defer s.done.Done()
		defer sub.Close()
		for {
			m, err := sub.Next(runCtx)
			if err != nil {
				return
			}
			g.lfRec.Record(idx, m.Data, m.ReceivedAt)
		}
	}()
	go func() {
		defer s.done.Done()
		defer psub.Cancel()
		for {
			m, err := psub.Next(runCtx)
			if err != nil {
				return
			}
			now := time.Now()
			if m.GetFrom() != self {
				g.plRec.Record(idx, m.Data, now)
			}
		}
	}()
	return idx, nil
}

// leave takes slot i out of both systems.
func (g *gossipNet) leave(i int) error {
	g.mu.Lock()
	s := g.slots[i]
	s.gone = true
	g.mu.Unlock()
	var errs []error
	if s.handle != nil {
		errs = append(errs, s.handle.Close())
	}
	errs = append(errs, s.node.Close())
	if s.stop != nil {
		s.stop()
	}
	s.done.Wait()
	return errors.Join(errs...)
}

func (g *gossipNet) close() error {
	g.mu.Lock()
	var live []int
	for i, s := range g.slots {
		if !s.gone {
			live = append(live, i)
		}
	}
	g.mu.Unlock()
	errs := make([]error, len(live))
	var wg sync.WaitGroup
	for k, i := range live {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[k] = g.leave(i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// hosts returns the libp2p hosts of the live slots.
func (g *gossipNet) hosts() []host.Host {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []host.Host
	for _, s := range g.slots {
		if !s.gone {
			out = append(out, s.node.Host().Libp2p())
		}
	}
	return out
}

// waitFormed waits until the lfnet meshes form one connected graph over the live slots
// and every plain GossipSub instance sees every other node subscribed, then proves both
// with a warm-up message from the first live node that must reach every other.
func (g *gossipNet) waitFormed(ctx context.Context) error {
	err := pollUntil(ctx, g.o.formTimeout, 100*time.Millisecond, "gossip meshes forming", func() (bool, error) {
		g.mu.Lock()
		defer g.mu.Unlock()
		index := map[peer.ID]int{}
		live := 0
		for i, s := range g.slots {
			if !s.gone {
				index[s.node.ID()] = i
				live++
			}
		}
		for _, s := range g.slots {
			if !s.gone && len(s.plain.ListPeers()) < live-1 {
				return false, nil
			}
		}
		first := -1
		for i, s := range g.slots {
			if !s.gone {
				first = i
				break
			}
		}
		seen := map[int]bool{first: true}
		queue := []int{first}
		for len(queue) > 0 {
			i := queue[0]
			queue = queue[1:]
			for _, p := range g.slots[i].handle.MeshPeers() {
				if j, ok := index[p]; ok && !seen[j] {
					seen[j] = true
					queue = append(queue, j)
				}
			}
		}
		return len(seen) == live, nil
	})
	if err != nil {
		return err
	}
	return g.warmUp(ctx)
}

// warmUp sends a message per system from the first live slot until one reaches every
// other live slot in both systems, each attempt in its own round (from warmUpRound on),
// waiting warmUpWait for it. A gossip message sent while meshes still change can be lost
// for good (gossip does not store), so the scenario waits for a message that makes it.
func (g *gossipNet) warmUp(ctx context.Context) error {
	g.mu.Lock()
	first, live := -1, 0
	for i, s := range g.slots {
		if !s.gone {
			live++
			if first < 0 {
				first = i
			}
		}
	}
	s := g.slots[first]
	g.mu.Unlock()
	deadline := time.Now().Add(g.o.formTimeout)
	for attempt := uint32(0); ; attempt++ {
		round := warmUpRound + attempt
		g.lfRec.Reset(round, nil)
		g.plRec.Reset(round, nil)
		msg := benchkit.Message(round, uint16(first), 0, int(g.o.payload))
		if err := s.handle.Publish(ctx, msg); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		if err := s.plain.Publish(ctx, msg); err != nil {
			return fmt.Errorf("warm-up plain: %w", err)
		}
		err := pollUntil(ctx, warmUpWait, 20*time.Millisecond, "warm-up", func() (bool, error) {
			return g.lfRec.Count() >= live-1 && g.plRec.Count() >= live-1, nil
		})
		if err == nil {
			g.warmUps = append(g.warmUps, int(attempt)+1)
			return nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("no warm-up message reached every node in %d attempts (last: lfnet %d, plain %d of %d): %w",
				attempt+1, g.lfRec.Count(), g.plRec.Count(), live-1, err)
		}
	}
}

// churnEvent is one node leaving and a fresh one joining at the same moment.
type churnEvent struct {
	at   time.Duration
	slot int
}

// round runs one measured round; last says no round follows it.
func (g *gossipNet) round(ctx context.Context, e *env, round uint32, tag string, rng *rand.Rand, churners int, last bool) error {
	g.mu.Lock()
	var live []int
	for i, s := range g.slots {
		s.stable = !s.gone
		if !s.gone {
			live = append(live, i)
		}
	}
	// Who leaves, and when: spread over the first 70% of the window so that the network
	// has churned well before the last messages are sent.
	var events []churnEvent
	for _, k := range rng.Perm(len(live))[:churners] {
		g.slots[live[k]].stable = false
		at := time.Duration(float64(g.o.window) * (0.05 + 0.65*rng.Float64()))
		events = append(events, churnEvent{at: at, slot: live[k]})
	}
	var stableIDs []int
	for _, i := range live {
		if g.slots[i].stable {
			stableIDs = append(stableIDs, i)
		}
	}
	stable := make([]bool, len(g.slots)+churners)
	for _, i := range stableIDs {
		stable[i] = true
	}
	g.mu.Unlock()
	slices.SortFunc(events, func(a, b churnEvent) int { return int(a.at - b.at) })
	schedule := benchkit.NewSchedule(rng, len(g.slots)+churners, g.o.perNode, g.o.window)
	counted := func(node int, s benchkit.Stamp) bool {
		return node < len(stable) && int(s.Node) < len(stable) && stable[node] && stable[s.Node]
	}
	g.lfRec.Reset(round, counted)
	g.plRec.Reset(round, counted)

	name := "round" + fmt.Sprint(round)
	stopCPU, err := e.prof.startCPU(name)
	if err != nil {
		return err
	}
	start := time.Now()
	var (
		wg     sync.WaitGroup
		errMu  sync.Mutex
		runErr error
	)
	fail := func(err error) {
		errMu.Lock()
		runErr = errors.Join(runErr, err)
		errMu.Unlock()
	}
	// publishFrom publishes slot i's scheduled messages that fall in [from, until).
	publishFrom := func(i int, from, until time.Duration) {
		defer wg.Done()
		g.mu.Lock()
		s := g.slots[i]
		g.mu.Unlock()
		for seq, at := range schedule[i] {
			if at < from {
				continue
			}
			if at >= until {
				return
			}
			select {
			case <-time.After(time.Until(start.Add(at))): // pacing the workload
			case <-ctx.Done():
				return
			}
			msg := benchkit.Message(round, uint16(i), uint16(seq), int(g.o.payload))
			if err := s.handle.Publish(ctx, msg); err != nil && stable[i] {
				fail(fmt.Errorf("node %d publish: %w", i, err))
			}
			if err := s.plain.Publish(ctx, msg); err != nil && stable[i] {
				fail(fmt.Errorf("node %d plain publish: %w", i, err))
			}
		}
	}
	leaving := map[int]time.Duration{}
	for _, ev := range events {
		leaving[ev.slot] = ev.at
	}
	for _, i := range live {
		until := g.o.window
		if at, ok := leaving[i]; ok {
			until = at
		}
		wg.Add(1)
		go publishFrom(i, 0, until)
	}
	// Churn: at each event one node leaves and a fresh one joins, bootstrapping from a
	// random node that stays; it publishes those of its scheduled messages that fall after
	// it joined.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, ev := range events {
			select {
			case <-time.After(time.Until(start.Add(ev.at))):
			case <-ctx.Done():
				return
			}
			if err := g.leave(ev.slot); err != nil {
				fail(fmt.Errorf("node %d leave: %w", ev.slot, err))
			}
			boot := bootAddr(g.slots[stableIDs[rng.IntN(len(stableIDs))]].node)
			idx, err := g.join(ctx, []string{boot})
			if err != nil {
				fail(err)
				return
			}
			g.mu.Lock()
			h := g.slots[idx].node.Host().Libp2p()
			g.mu.Unlock()
			connectCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
			if err := benchkit.ConnectTo(connectCtx, h, g.hosts()); err != nil {
				e.logf("%s: joining node %d: %v", tag, idx, err)
			}
			cancel()
			wg.Add(1)
			go publishFrom(idx, time.Since(start), g.o.window)
		}
	}()
	wg.Wait()
	if runErr != nil {
		return errors.Join(runErr, stopCPU())
	}

	// Every message a stable node published must reach every other stable node.
	expected := len(stableIDs) * (len(stableIDs) - 1) * g.o.perNode
	_ = pollUntil(ctx, g.o.deadline, 10*time.Millisecond, "deliveries", func() (bool, error) {
		return g.lfRec.Count() >= expected && g.plRec.Count() >= expected, nil
	})
	if err := stopCPU(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	lf, pl := g.lfRec.Result(expected), g.plRec.Result(expected)
	if lf.Duplicates > 0 || pl.Duplicates > 0 {
		e.note("%s: duplicate deliveries: lfnet %d, plain %d", tag, lf.Duplicates, pl.Duplicates)
	}
	details := map[string]float64{"expected": float64(expected), "lfnet_received": float64(lf.Received),
		"plain_received": float64(pl.Received), "stable_nodes": float64(len(stableIDs)), "churned_nodes": float64(churners)}
	e.add(Figure{ID: "a", Name: "lfnet latency p99", Transport: tag, Unit: "ms",
		Measured: ms(lf.Percentile(0.99)), Limit: ms(pl.Percentile(0.99)), LimitName: "plain GossipSub p99", LimitMeasured: true,
		Target: gossipP99Share, Details: details})
	e.add(Figure{ID: "b", Name: "lfnet latency p50", Transport: tag, Unit: "ms",
		Measured: ms(lf.Percentile(0.50)), Limit: ms(pl.Percentile(0.50)), LimitName: "plain GossipSub p50", LimitMeasured: true,
		Informational: true})
	delivery := Figure{ID: "c", Name: "lfnet delivery ratio", Transport: tag, Unit: "%",
		Measured: 100 * lf.Ratio(), Limit: 100, LimitName: "every message to every node", Target: 1, AtLeast: true}
	if churners > 0 {
		delivery.Limit, delivery.LimitName, delivery.LimitMeasured = 100*pl.Ratio(), "plain GossipSub", true
	}
	e.add(delivery)
	e.add(Figure{ID: "d", Name: "plain GossipSub delivery ratio", Transport: tag, Unit: "%",
		Measured: 100 * pl.Ratio(), Informational: true})
	if churners > 0 && !last {
		// The next round starts from a settled network again.
		return g.waitFormed(ctx)
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
