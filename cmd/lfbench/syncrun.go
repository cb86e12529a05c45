package main

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.etcd.io/bbolt"

	"github.com/lfnet/lfnet/internal/benchkit"
	"github.com/lfnet/lfnet/syncproto"
	"github.com/lfnet/lfnet/syncproto/logsync"
	"github.com/lfnet/lfnet/topics"
)

// source is the sender's log of a workload, generated once and synced from over each
// transport.
type source struct {
	store     logsync.Store
	db        *bbolt.DB // nil for a MemStore
	path      string    // "" for a MemStore
	topic     topics.Topic
	log       logsync.LogRef
	ops       int
	bodyBytes uint64
	wireBytes uint64 // header + body bytes
	last      logsync.Hash
	sample    *logsync.Operation // an operation with a backlink, for the verify-rate loops
	genTime   time.Duration
}

func (s *source) close() error {
	err := s.store.Close()
	if s.db != nil {
		err = errors.Join(err, s.db.Close())
	}
	if s.path != "" {
		if rmErr := os.Remove(s.path); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
			err = errors.Join(err, rmErr)
		}
	}
	return err
}

// openStore opens a store of kind mem or bolt. A bolt store gets a database opened here
// (with the options OpenBoltStore uses), so that the run can read bbolt's write statistics.
func openStore(kind, path string) (*source, error) {
	if kind == "mem" {
		return &source{store: logsync.NewMemStore()}, nil
	}
	db, err := bbolt.Open(path, 0o600, logsync.BoltOptions())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	store, err := logsync.NewBoltStore(db)
	if err != nil {
		return nil, errors.Join(err, db.Close(), os.Remove(path))
	}
	return &source{store: store, db: db, path: path}, nil
}

// txStats returns bbolt's cumulative write statistics, or zero for a MemStore.
func (s *source) txStats() bbolt.TxStats {
	if s.db == nil {
		return bbolt.TxStats{}
	}
	return s.db.Stats().TxStats
}

// generateSource signs w's log and stores it, signing in one goroutine while the previous
// batch is being written so that both cores help.
func generateSource(ctx context.Context, e *env, w workload, path string) (_ *source, err error) {
	src, err := openStore(w.store, path)
	if err != nil {
		return nil, err
	}
	store := src.store
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, errors.Join(err, src.close())
	}
	src.topic, src.log, src.ops = topics.Random(), logsync.LogRef{Author: logsync.PublicKeyOf(key)}, w.ops
	defer func() {
		if err != nil {
			err = errors.Join(err, src.close())
		}
	}()
	if err := store.Associate(ctx, src.topic, src.log.Author, src.log.LogID); err != nil {
		return nil, err
	}
	e.logf("(%s) generating %d operations with %d-byte bodies into a %s store", w.id, w.ops, w.body, w.store)
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []logsync.Entry, 2)
	signed := make(chan error, 1)
	go func() { signed <- signChain(gctx, key, w, batches) }()
	start, lastLog := time.Now(), time.Now()
	stored := 0
	var insertErr error
	for batch := range batches {
		if insertErr != nil {
			continue // drain so that the signer can finish
		}
		if _, err := store.InsertBatch(ctx, batch); err != nil {
			insertErr = fmt.Errorf("store batch: %w", err)
			cancel()
			continue
		}
		for _, en := range batch {
			src.bodyBytes += uint64(len(en.Op.Body))
			src.wireBytes += uint64(len(en.Op.Body) + len(en.Op.HeaderBytes()))
			if src.sample == nil && en.Op.Header.SeqNum > 0 {
				src.sample = en.Op
			}
		}
		src.last = batch[len(batch)-1].Op.Hash()
		stored += len(batch)
		if time.Since(lastLog) >= progressPeriod {
			lastLog = time.Now()
			e.logf("(%s) generated %d/%d operations (%.0f ops/s)", w.id, stored, w.ops, float64(stored)/time.Since(start).Seconds())
		}
	}
	if err := errors.Join(insertErr, <-signed); err != nil {
		return nil, err
	}
	if src.sample == nil {
		// A one-operation log: its first operation verifies just as well.
		op, _, err := store.Latest(ctx, src.log)
		if err != nil {
			return nil, err
		}
		src.sample = op
	}
	src.genTime = time.Since(start)
	e.logf("(%s) generated %d operations in %.1f s", w.id, stored, src.genTime.Seconds())
	return src, nil
}

// signChain signs w.ops chained operations and sends them in batches; it closes out.
func signChain(ctx context.Context, key ed25519.PrivateKey, w workload, out chan<- []logsync.Entry) error {
	defer close(out)
	// Bodies are random so that nothing on the path (encryption, hashing) gets an easy time;
	// each operation gets its own copy with its index in front, as real bodies differ.
	template := make([]byte, w.body)
	rng := rand.New(rand.NewChaCha8([32]byte{'l', 'f', 'b', 'e', 'n', 'c', 'h'}))
	for i := 0; i+8 <= len(template); i += 8 {
		binary.LittleEndian.PutUint64(template[i:], rng.Uint64())
	}
	ts := uint64(time.Now().UnixMicro())
	var prev *logsync.Operation
	batch := make([]logsync.Entry, 0, genBatchOps)
	size := 0
	for i := range w.ops {
		body := slices.Clone(template)
		if len(body) >= 8 {
			binary.BigEndian.PutUint64(body, uint64(i))
		}
		op, err := logsync.NewOperation(key, prev, body, nil, ts+uint64(i))
		if err != nil {
			return err
		}
		prev = op
		batch = append(batch, logsync.Entry{Op: op})
		size += len(body) + len(op.HeaderBytes())
		if len(batch) >= genBatchOps || size >= genBatchBytes || i == w.ops-1 {
			select {
			case out <- batch:
			case <-ctx.Done():
				return ctx.Err()
			}
			batch, size = make([]logsync.Entry, 0, genBatchOps), 0
		}
	}
	return nil
}

// syncHooks adapt one sync run to a figure.
type syncHooks struct {
	// beforeSync runs on the connected hosts before the timed sync.
	beforeSync func(ctx context.Context, from, to host.Host) error
	// sampleHeap samples the heap during the timed sync.
	sampleHeap bool
}

type syncResult struct {
	elapsed    time.Duration
	cpu        time.Duration
	cpuOK      bool
	conn       string            // the connection's remote address, proving the transport
	received   syncproto.Metrics // the receiver's SyncFinished metrics
	lagged     uint64            // events the receiver's subscriber missed
	heap       *heapStats
	genSeconds float64
	load       string // /proc/loadavg when the sync started
	inserts    insertStats
	bolt       bbolt.TxStats // the receiver's bbolt writes during the sync (zero for mem)
	wireBytes  uint64        // header + body bytes synced
	faults     uint64        // minor page faults during the sync
}

// syncOnce syncs src into a fresh store over transport tr and times it.
func (o *syncOptions) syncOnce(ctx context.Context, e *env, src *source, w workload, tr, work string, hooks syncHooks) (res syncResult, err error) {
	res.genSeconds, res.wireBytes = src.genTime.Seconds(), src.wireBytes
	dst, err := openStore(w.store, filepath.Join(work, fmt.Sprintf("%s-%s-dest.db", w.id, tr)))
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, dst.close()) }()
	dstStore := dst.store
	// bbolt adds a transaction's statistics only after its commit is visible, so they are
	// read once both nodes have stopped (this runs after their deferred closes).
	var tx0 bbolt.TxStats
	defer func() {
		tx1 := dst.txStats()
		res.bolt = tx1.Sub(&tx0)
	}()

	from, err := startNode(tr, src.store, src.topic)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, from.close()) }()
	timed := &timedStore{Store: dstStore}
	to, err := startNode(tr, timed, src.topic)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, to.close()) }()
	if res.conn, err = connect(ctx, from.h, to.h, tr); err != nil {
		return res, err
	}
	if hooks.beforeSync != nil {
		if err := hooks.beforeSync(ctx, from.h, to.h); err != nil {
			return res, err
		}
	}

	name := w.id + "-" + tr
	// The preparation's garbage is not the sync's to collect, and a heap profile shows the
	// state as of the last GC.
	runtime.GC()
	if err := e.prof.writeHeap(name + "-start"); err != nil {
		return res, err
	}
	var sampler *heapSampler
	if hooks.sampleHeap {
		sampler = startHeapSampler(heapSample, e.prof != nil)
	}
	stopCPU, err := e.prof.startCPU(name)
	if err != nil {
		return res, err
	}
	e.logf("(%s) syncing %d operations over %s", w.id, w.ops, tr)
	res.load = loadAvg()
	tx0 = dst.txStats()
	faults0, faultsOK := minorFaults()
	cpu0, cpuOK := benchkit.ProcessCPU()
	start := time.Now()
	from.tp.NeighborUp(to.h.ID())
	to.tp.NeighborUp(from.h.ID())
	waitErr := waitComplete(ctx, e, w, src, dstStore, from, to, o.timeout)
	res.elapsed = time.Since(start)
	cpu1, _ := benchkit.ProcessCPU()
	res.cpu, res.cpuOK = cpu1-cpu0, cpuOK
	if faults1, ok := minorFaults(); ok && faultsOK {
		res.faults = faults1 - faults0
	}
	err = stopCPU()
	if sampler != nil {
		st := sampler.stop()
		res.heap = &st
		err = errors.Join(err, e.prof.writeRaw(name+"-peak", "heap", st.peakProfile))
	}
	err = errors.Join(waitErr, err, e.prof.writeHeap(name+"-end"))
	if err != nil {
		return res, err
	}
	latest, found, err := dstStore.Latest(ctx, src.log)
	if err != nil {
		return res, err
	}
	if !found || latest.Hash() != src.last {
		return res, errors.New("receiver's latest operation differs from the sender's")
	}
	res.received, res.lagged = to.stats()
	res.inserts = timed.stats()
	return res, nil
}

// waitComplete polls the receiver's height until it holds the whole log, failing fast when
// a session fails.
func waitComplete(ctx context.Context, e *env, w workload, src *source, dst logsync.Store, from, to *benchNode, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(heightPoll)
	defer tick.Stop()
	refs := []logsync.LogRef{src.log}
	start, lastLog := time.Now(), time.Now()
	var height uint64
	for {
		heights, err := dst.Heights(ctx, refs)
		if err != nil {
			return fmt.Errorf("receiver heights: %w", err)
		}
		height = heights[src.log]
		if height >= uint64(src.ops) {
			return nil
		}
		select {
		case err := <-from.failed:
			return fmt.Errorf("sender's session failed: %w", err)
		case err := <-to.failed:
			return fmt.Errorf("receiver's session failed: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("sync incomplete after %s: receiver holds %d of %d operations", timeout, height, src.ops)
		case <-tick.C:
		}
		if time.Since(lastLog) >= progressPeriod {
			lastLog = time.Now()
			e.logf("(%s) receiver holds %d/%d operations (%.0f ops/s)", w.id, height, src.ops, float64(height)/time.Since(start).Seconds())
		}
	}
}

// benchNode is one side of a sync run: a host with the sync service and the topic open.
type benchNode struct {
	h       host.Host
	svc     *syncproto.Service
	tp      *syncproto.Topic
	failed  chan error // the first session failure
	drained chan struct{}

	mu       sync.Mutex
	finished syncproto.Metrics
	lagged   uint64
}

func newHost(transport string) (host.Host, error) {
	addr := "/ip4/127.0.0.1/tcp/0"
	if transport == "quic" {
		addr = "/ip4/127.0.0.1/udp/0/quic-v1"
	}
	h, err := libp2p.New(libp2p.ListenAddrStrings(addr), libp2p.DisableRelay(), libp2p.DisableMetrics())
	if err != nil {
		return nil, fmt.Errorf("libp2p host: %w", err)
	}
	return h, nil
}

func startNode(transport string, store logsync.Store, topic topics.Topic) (*benchNode, error) {
	h, err := newHost(transport)
	if err != nil {
		return nil, err
	}
	n := &benchNode{h: h, failed: make(chan error, 1), drained: make(chan struct{})}
	n.svc = syncproto.NewService(h, syncProto)
	// Defaults as a node runs them; a failure aborts the run rather than waiting for a retry.
	n.tp, err = n.svc.Open(topic, logsync.NewManager(store, topic), syncproto.DefaultCoordinatorConfig())
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open topic: %w", err), n.svc.Close(), h.Close())
	}
	go n.drain(n.tp.Subscribe())
	return n, nil
}

// drain consumes the node's events as an application would, keeping what the run reports.
func (n *benchNode) drain(sub *syncproto.Subscription) {
	defer close(n.drained)
	defer sub.Close()
	for {
		ev, err := sub.Next(context.Background())
		if err != nil {
			return // the topic closed
		}
		switch ev.Kind {
		case syncproto.SessionFailed:
			select {
			case n.failed <- ev.Err:
			default:
			}
		case syncproto.SyncFinished:
			n.mu.Lock()
			if ev.Metrics.ItemsReceived > 0 {
				n.finished = ev.Metrics
			}
			n.mu.Unlock()
		case syncproto.Lagged:
			n.mu.Lock()
			n.lagged += ev.Dropped
			n.mu.Unlock()
		}
	}
}

func (n *benchNode) stats() (syncproto.Metrics, uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.finished, n.lagged
}

func (n *benchNode) close() error {
	err := n.svc.Close()
	<-n.drained
	if hErr := n.h.Close(); hErr != nil {
		err = errors.Join(err, fmt.Errorf("close host: %w", hErr))
	}
	return err
}

// connect dials to from from and checks that the connection uses the wanted transport.
func connect(ctx context.Context, from, to host.Host, transport string) (string, error) {
	if err := from.Connect(ctx, peer.AddrInfo{ID: to.ID(), Addrs: to.Addrs()}); err != nil {
		return "", fmt.Errorf("connect: %w", err)
	}
	conns := from.Network().ConnsToPeer(to.ID())
	if len(conns) == 0 {
		return "", errors.New("connect: no connection after dialing")
	}
	addr := conns[0].RemoteMultiaddr().String()
	marker := "/tcp/"
	if transport == "quic" {
		marker = "/quic-v1"
	}
	if !strings.Contains(addr, marker) {
		return "", fmt.Errorf("connect: connection %s is not %s", addr, transport)
	}
	return addr, nil
}
