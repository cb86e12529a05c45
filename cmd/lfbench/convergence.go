package main

// The convergence scenario measures log sync at scale: --nodes (50 and 100) real lfnet
// nodes in this process, each holding --topics (1, then 10) topics with live LogSync,
// joined through bootstrap addresses and discovery. Every node publishes operations of
// --payload bytes at a steady rate (--rate operations per second over the whole network,
// spread evenly over nodes and topics) for --duration; each operation is timed from its
// publication until the last other node holds it (the receiver's ItemReceived event).
//
//	(a) convergence latency p99 per operation; target at 100 nodes: < 2 s
//	(b) convergence latency p50 (no target)
//	(c) stream bytes sent by all nodes per delivered operation, as a factor of the payload;
//	    target at 50 nodes with 1 KiB operations: < 3x
//	(d) share of (operation, node) deliveries done by the deadline; target 100%
//	(e) time from the last publication until every node holds every operation (no target)
//
// Bytes are counted from the first publication until convergence, over every protocol
// (sync, membership, discovery, gossip), since all of them are what an application pays;
// the per-protocol split is in the figure's details.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lfnet/lfnet"
	"github.com/lfnet/lfnet/internal/benchkit"
	"github.com/lfnet/lfnet/syncproto"
	"github.com/lfnet/lfnet/syncproto/logsync"
	"github.com/lfnet/lfnet/topics"
)

func init() {
	register(scenario{
		name:    "convergence",
		summary: "log sync at scale: 50 and 100 nodes on 1 and 10 topics publishing steadily; convergence p50/p99 per operation, wire bytes per delivered operation",
		setup:   setupConvergence,
	})
}

// Targets of the issue.
const (
	convergenceBound       = 2 * time.Second // (a) p99 at convergenceJudgedNodes
	convergenceJudgedNodes = 100
	overheadBound          = 3.0 // (c) at overheadJudgedNodes with overheadJudgedPayload
	overheadJudgedNodes    = 50
	overheadJudgedPayload  = 1 << 10
)

type convergenceOptions struct {
	nodes, topics string
	payload       byteSize
	rate          float64
	duration      time.Duration
	deadline      time.Duration
	walkStep      time.Duration
	formTimeout   time.Duration
	settle        time.Duration
	seed          uint64
}

func setupConvergence(fs *flag.FlagSet) runFunc {
	o := &convergenceOptions{payload: 1 << 10}
	fs.StringVar(&o.nodes, "nodes", "50,100", "comma-separated node counts, one run each (times each --topics)")
	fs.StringVar(&o.topics, "topics", "1,10", "comma-separated topic counts; every node holds every topic")
	fs.Var(&o.payload, "payload", "operation body size; accepts KiB, MiB")
	fs.Float64Var(&o.rate, "rate", 10, "operations per second published by the whole network")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "how long the nodes publish")
	fs.DurationVar(&o.deadline, "deadline", time.Minute, "how long after the last publication to wait for convergence")
	fs.DurationVar(&o.walkStep, "walk-step", 0, "discovery step interval (0: lfnet's default, 10 s)")
	fs.DurationVar(&o.formTimeout, "form-timeout", 5*time.Minute, "how long the overlays may take to form")
	fs.DurationVar(&o.settle, "settle", 5*time.Second, "before timing, wait (within --form-timeout) until no overlay neighbour changed for this long; 0 skips")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the publication phases")
	return o.run
}

func positiveList(flagName, s string) ([]int, error) {
	v, err := intList(s)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flagName, err)
	}
	return v, nil
}

func (o *convergenceOptions) run(ctx context.Context, e *env) error {
	nodeCounts, err := positiveList("nodes", o.nodes)
	if err != nil {
		return err
	}
	topicCounts, err := positiveList("topics", o.topics)
	if err != nil {
		return err
	}
	if o.rate <= 0 || o.duration <= 0 || o.deadline <= 0 || int(o.payload) < benchkit.StampSize {
		return fmt.Errorf("--rate, --duration and --deadline must be positive and --payload at least %d", benchkit.StampSize)
	}
	e.report.Config["nodes"], e.report.Config["topics"], e.report.Config["payload_bytes"] = nodeCounts, topicCounts, int64(o.payload)
	e.report.Config["rate_ops_per_s"], e.report.Config["duration"], e.report.Config["deadline"] = o.rate, o.duration.String(), o.deadline.String()
	e.report.Config["walk_step"] = o.walkStep.String()
	for _, n := range nodeCounts {
		for _, t := range topicCounts {
			if err := o.runOne(ctx, e, n, t); err != nil {
				return fmt.Errorf("%d nodes, %d topics: %w", n, t, err)
			}
		}
	}
	return nil
}

// opKey identifies an operation of the run: topic, author node and sequence number.
type opKey struct {
	topic uint32
	key   uint32 // benchkit.Stamp.Key
}

// convergenceRecorder tracks, per operation, how many other nodes hold it and when the
// last one got it.
type convergenceRecorder struct {
	mu              sync.Mutex
	holders         map[opKey]int
	last            map[opKey]time.Time
	dups            int
	lagged          uint64
	total           int            // deliveries recorded
	sessions        atomic.Int64   // SessionStarted events
	neighborChanges atomic.Int64   // NeighborUp and NeighborDown events of all overlays
	failures        map[string]int // SessionFailed events by errorClass
}

func newConvergenceRecorder() *convergenceRecorder {
	return &convergenceRecorder{holders: map[opKey]int{}, last: map[opKey]time.Time{}, failures: map[string]int{}}
}

func (r *convergenceRecorder) record(ev syncproto.Event) {
	switch ev.Kind {
	case syncproto.Lagged:
		r.mu.Lock()
		r.lagged += ev.Dropped
		r.mu.Unlock()
		return
	case syncproto.SessionStarted:
		r.sessions.Add(1)
		return
	case syncproto.SessionFailed:
		r.mu.Lock()
		r.failures[errorClass(ev.Err)]++
		r.mu.Unlock()
		return
	case syncproto.ItemReceived:
	default:
		return
	}
	entry, ok := ev.Item.(logsync.Entry)
	if !ok {
		return
	}
	s, err := benchkit.ReadStamp(entry.Op.Body)
	if err != nil {
		return // not one of ours
	}
	k := opKey{topic: s.Round, key: s.Key()}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.holders[k]++
	r.total++
	if ev.Time.After(r.last[k]) {
		r.last[k] = ev.Time
	}
}

var peerIDPattern = regexp.MustCompile(`12D3Koo[1-9A-HJ-NP-Za-km-z]+`)

// errorClass is an error's text without peer ids, so that failures can be counted by kind.
func errorClass(err error) string {
	if err == nil {
		return "<nil>"
	}
	return peerIDPattern.ReplaceAllString(err.Error(), "<peer>")
}

// failureSummary lists the session failures by kind, most frequent first.
func (r *convergenceRecorder) failureSummary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var lines []string
	for class, n := range r.failures {
		lines = append(lines, fmt.Sprintf("%6d  %s", n, class))
	}
	slices.Sort(lines)
	slices.Reverse(lines)
	return strings.Join(lines, "\n")
}

// liveStats sums the live broadcast trees of every handle.
func liveStats(logs [][]*lfnet.LogSync) logsync.LiveStats {
	var sum logsync.LiveStats
	for _, ls := range logs {
		for _, l := range ls {
			st := l.LiveStats()
			sum.Sessions += st.Sessions
			sum.Authors += st.Authors
			sum.LazyLinks += st.LazyLinks
			sum.Missing += st.Missing
			sum.Pruned += st.Pruned
			sum.Grafted += st.Grafted
			sum.Unannounced += st.Unannounced
		}
	}
	return sum
}

func (r *convergenceRecorder) deliveries() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}

// result returns, for the operations published, each one's time to reach all others
// (only those that did), how many deliveries happened, and when the last one did.
func (r *convergenceRecorder) result(published map[opKey]time.Time, others int) (lat []time.Duration, delivered int, lastAt time.Time, lagged uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, at := range published {
		h := min(r.holders[k], others)
		delivered += h
		if h == others {
			lat = append(lat, r.last[k].Sub(at))
			if r.last[k].After(lastAt) {
				lastAt = r.last[k]
			}
		}
	}
	return lat, delivered, lastAt, r.lagged
}

func (o *convergenceOptions) runOne(ctx context.Context, e *env, nodeCount, topicCount int) (err error) {
	tag := fmt.Sprintf("%d nodes, %d topic", nodeCount, topicCount)
	if topicCount > 1 {
		tag += "s"
	}
	e.logf("%s: starting nodes", tag)
	startAt := time.Now()
	wire := &wireCounter{}
	gauges := make([]neighbourGauge, nodeCount)
	nodes, err := startNodes(ctx, nodeCount, wire, o.walkStep, func(i int) []lfnet.Option {
		g, opt := newNeighbourGauge()
		gauges[i] = g
		return []lfnet.Option{opt}
	})
	defer func() {
		if cerr := closeAll(nodes); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close nodes: %w", cerr))
		}
	}()
	if err != nil {
		return err
	}
	e.logf("%s: %d nodes started in %.1f s", tag, len(nodes), time.Since(startAt).Seconds())
	rooms := make([]topics.Topic, topicCount)
	for i := range rooms {
		rooms[i] = topics.FromString(fmt.Sprintf("lfbench convergence %d/%d", i, topicCount))
	}
	rec := newConvergenceRecorder()
	logs := make([][]*lfnet.LogSync, nodeCount)
	readCtx, stopReading := context.WithCancel(context.Background())
	var readers sync.WaitGroup
	defer func() {
		stopReading()
		readers.Wait()
		// The nodes close first, each leaving all its overlays at once; closing a thousand
		// handles one by one would leave the overlays one by one, each waiting for its
		// neighbours' acknowledgements (up to lfnet's 2 s leave timeout).
		if cerr := closeAll(nodes); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close nodes: %w", cerr))
		}
		nodes = nil
		for _, ls := range logs {
			for _, l := range ls {
				_ = l.Close()
			}
		}
	}()
	for _, n := range nodes {
		w := n.WatchNeighbors()
		readers.Add(1)
		go func() {
			defer readers.Done()
			defer w.Close()
			for {
				if _, _, err := w.Next(readCtx); err != nil {
					return
				}
				rec.neighborChanges.Add(1)
			}
		}()
	}
	for i, n := range nodes {
		for _, room := range rooms {
			l, err := n.LogSync(ctx, room, true)
			if err != nil {
				return fmt.Errorf("node %d: %w", i, err)
			}
			logs[i] = append(logs[i], l)
			sub, err := l.Subscribe()
			if err != nil {
				return fmt.Errorf("node %d: %w", i, err)
			}
			readers.Add(1)
			go func() {
				defer readers.Done()
				defer sub.Close()
				for {
					ev, err := sub.Next(readCtx)
					if err != nil {
						return
					}
					rec.record(ev)
				}
			}()
		}
	}

	formStart := time.Now()
	lastReport := formStart
	err = pollUntil(ctx, o.formTimeout, 100*time.Millisecond, "overlays forming", func() (bool, error) {
		ready := 0
		for _, g := range gauges {
			nb, err := g.neighbours()
			if err != nil {
				return false, err
			}
			if nb >= topicCount {
				ready++
			}
		}
		if time.Since(lastReport) >= 30*time.Second {
			lastReport = time.Now()
			e.logf("%s: %d of %d nodes have at least %d overlay neighbours after %.0f s", tag, ready, nodeCount, topicCount, time.Since(formStart).Seconds())
		}
		return ready == nodeCount, nil
	})
	if err != nil {
		return err
	}
	// A warm-up operation per topic proves each overlay reaches every node before timing.
	for t := range rooms {
		if _, err := logs[0][t].Publish(ctx, benchkit.Message(uint32(1000+t), 0, 0, int(o.payload))); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	warm := topicCount * (nodeCount - 1)
	if err := pollUntil(ctx, o.formTimeout, 50*time.Millisecond, "warm-up operations reaching every node", func() (bool, error) {
		return rec.deliveries() >= warm, nil
	}); err != nil {
		return err
	}
	e.logf("%s: overlays formed and warm-up synced in %.1f s", tag, time.Since(formStart).Seconds())
	// Every node having neighbours is not a settled overlay: with 10 topics, joins were
	// still rippling through the views (2,573 neighbour changes in a 22 s timed phase at
	// 100 nodes). The figures are about the steady state, so timing starts once the views
	// stopped changing; the changes during the timed phase are reported with the figures.
	if o.settle > 0 {
		settleStart, lastChange, changes := time.Now(), time.Now(), rec.neighborChanges.Load()
		err := pollUntil(ctx, max(o.formTimeout-time.Since(formStart), o.settle), 100*time.Millisecond, "overlays settling", func() (bool, error) {
			if c := rec.neighborChanges.Load(); c != changes {
				changes, lastChange = c, time.Now()
			}
			return time.Since(lastChange) >= o.settle, nil
		})
		switch {
		case err != nil && ctx.Err() != nil:
			return err
		case err != nil:
			e.note("%s: the overlays did not settle (a neighbour change in every %v) within --form-timeout; timing anyway", tag, o.settle)
		default:
			e.logf("%s: overlays settled (no neighbour change for %v) after %.1f s more", tag, o.settle, time.Since(settleStart).Seconds())
		}
	}

	// Steady publication: node i publishes every period, from a random phase, cycling over
	// the topics; the network as a whole publishes at --rate.
	period := time.Duration(float64(nodeCount) / o.rate * float64(time.Second))
	rng := rand.New(rand.NewPCG(o.seed, uint64(nodeCount*1000+topicCount)))
	var (
		pubMu     sync.Mutex
		published = map[opKey]time.Time{}
		pubErr    error
	)
	stopCPU, err := e.prof.startCPU(fmt.Sprintf("n%d-t%d", nodeCount, topicCount))
	if err != nil {
		return err
	}
	if err := e.prof.writeHeap(fmt.Sprintf("n%d-t%d-start", nodeCount, topicCount)); err != nil {
		return err
	}
	wireBefore, totalBefore := wire.snapshot(), wire.total.Load()
	treeBefore, sessionsBefore, changesBefore := liveStats(logs), rec.sessions.Load(), rec.neighborChanges.Load()
	cpu0, cpuOK := benchkit.ProcessCPU()
	start := time.Now()
	var pubs sync.WaitGroup
	for i := range nodes {
		phase := time.Duration(rng.Int64N(int64(period)))
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			for seq := 0; ; seq++ {
				at := phase + time.Duration(seq)*period
				if at >= o.duration {
					return
				}
				select {
				case <-time.After(time.Until(start.Add(at))): // pacing the workload
				case <-ctx.Done():
					return
				}
				t := (i + seq) % topicCount
				body := benchkit.Message(uint32(t), uint16(i), uint16(seq), int(o.payload))
				s, _ := benchkit.ReadStamp(body)
				pubMu.Lock()
				published[opKey{topic: uint32(t), key: s.Key()}] = s.Sent
				pubMu.Unlock()
				if _, err := logs[i][t].Publish(ctx, body); err != nil {
					pubMu.Lock()
					pubErr = errors.Join(pubErr, fmt.Errorf("node %d publish: %w", i, err))
					pubMu.Unlock()
					return
				}
			}
		}()
	}
	pubs.Wait()
	lastPublish := time.Now()
	if pubErr != nil {
		return errors.Join(pubErr, stopCPU())
	}
	expected := len(published) * (nodeCount - 1)
	convErr := pollUntil(ctx, o.deadline, 10*time.Millisecond, "convergence", func() (bool, error) {
		return rec.deliveries() >= warm+expected, nil
	})
	elapsed := time.Since(start)
	cpu1, _ := benchkit.ProcessCPU()
	wireAfter, totalAfter := wire.snapshot(), wire.total.Load()
	treeAfter, sessionsAfter, changesAfter := liveStats(logs), rec.sessions.Load(), rec.neighborChanges.Load()
	if err := stopCPU(); err != nil {
		return err
	}
	if err := e.prof.writeHeap(fmt.Sprintf("n%d-t%d-end", nodeCount, topicCount)); err != nil {
		return err
	}
	if convErr != nil && ctx.Err() != nil {
		return convErr
	}

	lat, delivered, lastAt, lagged := rec.result(published, nodeCount-1)
	wireBytes := float64(totalAfter - totalBefore)
	details := diffBytes(wireBefore, wireAfter)
	details["wire_bytes_total"] = wireBytes
	details["operations"] = float64(len(published))
	details["deliveries"] = float64(delivered)
	details["seconds"] = elapsed.Seconds()
	details["sessions_started"] = float64(sessionsAfter - sessionsBefore)
	details["neighbor_changes"] = float64(changesAfter - changesBefore)
	details["live_duplicates_pruned"] = float64(treeAfter.Pruned - treeBefore.Pruned)
	details["live_grafts"] = float64(treeAfter.Grafted - treeBefore.Grafted)
	details["live_links_end"] = float64(treeAfter.Sessions)
	details["live_lazy_author_links_end"] = float64(treeAfter.LazyLinks)
	if cpuOK {
		details["cpu_seconds"] = (cpu1 - cpu0).Seconds()
	}
	if sum := rec.failureSummary(); sum != "" {
		e.note("%s: session failures since the nodes started, by kind:\n%s", tag, sum)
	}
	if lagged > 0 {
		e.note("%s: subscribers missed %d events (Lagged); deliveries may be undercounted", tag, lagged)
	}
	p99, p50 := benchkit.Percentile(lat, 0.99), benchkit.Percentile(lat, 0.50)
	e.add(Figure{ID: "a", Name: "convergence p99 per operation", Transport: tag, Unit: "ms",
		Measured: ms(p99), Limit: ms(convergenceBound), LimitName: "issue", Target: 1,
		Informational: nodeCount != convergenceJudgedNodes,
		Details:       map[string]float64{"converged_operations": float64(len(lat)), "max_ms": ms(benchkit.Percentile(lat, 1))}})
	e.add(Figure{ID: "b", Name: "convergence p50 per operation", Transport: tag, Unit: "ms", Measured: ms(p50), Informational: true})
	perDelivery := 0.0
	if delivered > 0 {
		perDelivery = wireBytes / float64(delivered)
	}
	details["wire_bytes_per_delivery"] = perDelivery
	e.add(Figure{ID: "c", Name: fmt.Sprintf("wire bytes per delivered %s operation / payload", human(int64(o.payload))), Transport: tag, Unit: "x",
		Measured: perDelivery / float64(o.payload), Limit: overheadBound, LimitName: "issue", Target: 1,
		Informational: nodeCount != overheadJudgedNodes || o.payload != overheadJudgedPayload, Details: details})
	e.add(Figure{ID: "d", Name: "deliveries done", Transport: tag, Unit: "%",
		Measured: 100 * float64(delivered) / float64(max(expected, 1)), Limit: 100, LimitName: "every node holds every operation", Target: 1, AtLeast: true,
		Details: map[string]float64{"expected": float64(expected), "delivered": float64(delivered)}})
	if len(lat) == len(published) {
		e.add(Figure{ID: "e", Name: "last publication to full convergence", Transport: tag, Unit: "ms",
			Measured: ms(max(0, lastAt.Sub(lastPublish))), Informational: true})
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
