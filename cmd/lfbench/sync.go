package main

// The sync scenario measures, in one run, the three figures of the sync issue:
//
//	(a) initial sync of --ops (100,000) operations with --body (100) byte bodies from one
//	    node to a fresh one, in ops/s, against the ed25519 verification limit measured in
//	    the same run: one goroutine's ed25519.Verify rate x GOMAXPROCS. Target: >= 80%.
//	(b) sync of --large (500) operations with --large-body (1 MiB) bodies, in MB/s of body
//	    bytes (1 MB = 10^6 bytes), against raw libp2p stream throughput over the same two
//	    hosts: --raw-bytes (256 MiB) written in --raw-write (1 MiB) writes, the reader
//	    discarding. Target: >= 60%.
//	(c) peak heap while syncing --heap-ops (1,000,000) operations of --body bytes between
//	    two bbolt stores. Target: under 256 MiB.
//
// Both nodes are libp2p hosts on 127.0.0.1 in this process, connected over --transport
// (tcp, quic or both, one full set of figures per transport), so every figure covers
// sender and receiver together, sharing the same cores. The sender's log is generated and
// stored before anything is timed; timing starts when both coordinators are told the other
// is a neighbour and stops when the receiver's store holds the whole log.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/lfnet/lfnet/syncproto/logsync"
)

func init() {
	register(scenario{
		name:    "sync",
		summary: "log sync: (a) initial sync ops/s vs the ed25519 verify limit, (b) 1 MiB-body sync MB/s vs raw stream MB/s, (c) peak heap syncing 1M operations",
		setup:   setupSync,
	})
}

// The targets.
const (
	targetVerifyShare = 0.80      // (a) share of the verification limit
	targetRawShare    = 0.60      // (b) share of raw stream throughput
	heapBound         = 256 * mib // (c) peak heap
)

const (
	syncProto = protocol.ID("/lfbench/sync/1")
	rawProto  = protocol.ID("/lfbench/raw/1")

	// heightPoll is how often the receiver's store is asked whether the sync is complete;
	// it bounds the timing error.
	heightPoll     = 5 * time.Millisecond
	heapSample     = 10 * time.Millisecond
	progressPeriod = 10 * time.Second

	// Generation batches: one store transaction each.
	genBatchOps   = 4096
	genBatchBytes = 16 * mib
)

type syncOptions struct {
	ops        int
	body       byteSize
	large      int
	largeBody  byteSize
	heapOps    int
	rawBytes   byteSize
	rawWrite   byteSize
	transport  string
	store      string
	figures    string
	verifyTime time.Duration
	timeout    time.Duration
	dir        string
}

func setupSync(fs *flag.FlagSet) runFunc {
	o := &syncOptions{body: 100, largeBody: mib, rawBytes: 256 * mib, rawWrite: mib}
	fs.IntVar(&o.ops, "ops", 100_000, "(a) operations in the initial sync")
	fs.Var(&o.body, "body", "body size of the small operations of (a) and (c); accepts KiB, MiB")
	fs.IntVar(&o.large, "large", 500, "(b) operations with large bodies")
	fs.Var(&o.largeBody, "large-body", "(b) body size")
	fs.IntVar(&o.heapOps, "heap-ops", 1_000_000, "(c) operations synced while the heap is sampled")
	fs.Var(&o.rawBytes, "raw-bytes", "(b) bytes sent over the raw libp2p stream")
	fs.Var(&o.rawWrite, "raw-write", "(b) size of each write on the raw stream")
	fs.StringVar(&o.transport, "transport", "tcp", "libp2p transport between the two nodes: tcp, quic or both")
	fs.StringVar(&o.store, "store", "bolt", "store of both nodes in (a) and (b): bolt or mem; (c) always uses bolt")
	fs.StringVar(&o.figures, "figures", "a,b,c", "which figures to measure, comma-separated")
	fs.DurationVar(&o.verifyTime, "verify-time", time.Second, "how long each measurement of the single-core ed25519 verify rate runs")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up on one sync after this long")
	fs.StringVar(&o.dir, "dir", "", "directory for the bbolt files (default: the system temp directory)")
	return o.run
}

// workload is one figure's data set.
type workload struct {
	id    string // a, b, c
	name  string
	ops   int
	body  int
	store string // bolt or mem, both nodes
}

func (o *syncOptions) parse() (transports []string, loads []workload, err error) {
	switch o.transport {
	case "tcp", "quic":
		transports = []string{o.transport}
	case "both":
		transports = []string{"tcp", "quic"}
	default:
		return nil, nil, fmt.Errorf("--transport %q: want tcp, quic or both", o.transport)
	}
	if o.store != "bolt" && o.store != "mem" {
		return nil, nil, fmt.Errorf("--store %q: want bolt or mem", o.store)
	}
	want := map[string]bool{}
	for _, f := range strings.Split(o.figures, ",") {
		f = strings.TrimSpace(f)
		if f != "a" && f != "b" && f != "c" {
			return nil, nil, fmt.Errorf("--figures: unknown figure %q (want a, b, c)", f)
		}
		want[f] = true
	}
	if o.body > logsync.DefaultMaxBodySize || o.largeBody > logsync.DefaultMaxBodySize {
		return nil, nil, fmt.Errorf("bodies are limited to %d bytes by the receiver", logsync.DefaultMaxBodySize)
	}
	all := []workload{
		{id: "a", name: fmt.Sprintf("initial sync %d × %s", o.ops, human(int64(o.body))), ops: o.ops, body: int(o.body), store: o.store},
		{id: "b", name: fmt.Sprintf("sync %d × %s", o.large, human(int64(o.largeBody))), ops: o.large, body: int(o.largeBody), store: o.store},
		{id: "c", name: fmt.Sprintf("peak heap syncing %d × %s", o.heapOps, human(int64(o.body))), ops: o.heapOps, body: int(o.body), store: "bolt"},
	}
	for _, w := range all {
		if !want[w.id] {
			continue
		}
		if w.ops < 1 {
			return nil, nil, fmt.Errorf("figure (%s) needs at least one operation", w.id)
		}
		loads = append(loads, w)
	}
	if want["b"] && (o.rawBytes < 1 || o.rawWrite < 1) {
		return nil, nil, errors.New("--raw-bytes and --raw-write must be positive")
	}
	if o.verifyTime <= 0 || o.timeout <= 0 {
		return nil, nil, errors.New("--verify-time and --timeout must be positive")
	}
	return transports, loads, nil
}

func (o *syncOptions) run(ctx context.Context, e *env) (err error) {
	transports, loads, err := o.parse()
	if err != nil {
		return err
	}
	e.report.Config = map[string]any{
		"ops": o.ops, "body_bytes": int64(o.body), "large": o.large, "large_body_bytes": int64(o.largeBody),
		"heap_ops": o.heapOps, "raw_bytes": int64(o.rawBytes), "raw_write_bytes": int64(o.rawWrite),
		"transports": transports, "store_ab": o.store, "store_c": "bolt", "figures": o.figures,
		"verify_time": o.verifyTime.String(),
	}
	work, err := os.MkdirTemp(o.dir, "lfbench-sync-")
	if err != nil {
		return fmt.Errorf("work directory: %w", err)
	}
	defer func() {
		if rmErr := os.RemoveAll(work); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("remove work directory: %w", rmErr))
		}
	}()
	e.note("both nodes run in this process on 127.0.0.1 and share its %d cores (GOMAXPROCS); every figure covers sender and receiver together", runtime.GOMAXPROCS(0))
	e.note("(a) limit = single-core ed25519.Verify rate x GOMAXPROCS, mean of one measurement right before and one right after the sync")
	e.note("(b) MB = 10^6 bytes; sync MB/s counts body bytes; raw = one libp2p stream on the same hosts, %s in %s writes, reader discarding", &o.rawBytes, &o.rawWrite)
	e.note("(c) measured = peak of %s (live + unswept heap objects) sampled every %s, both nodes; bbolt's memory map is not heap", metricHeapObjects, heapSample)
	for _, w := range loads {
		if err := o.runWorkload(ctx, e, work, w, transports); err != nil {
			return err
		}
	}
	return nil
}

// runWorkload generates w's log once and measures it over each transport, each time into a
// fresh receiver.
func (o *syncOptions) runWorkload(ctx context.Context, e *env, work string, w workload, transports []string) (err error) {
	src, err := generateSource(ctx, e, w, filepath.Join(work, w.id+"-source.db"))
	if err != nil {
		return fmt.Errorf("(%s) generate: %w", w.id, err)
	}
	defer func() { err = errors.Join(err, src.close()) }()
	for _, tr := range transports {
		var f Figure
		var err error
		switch w.id {
		case "a":
			f, err = o.measureInitial(ctx, e, src, w, tr, work)
		case "b":
			f, err = o.measureLarge(ctx, e, src, w, tr, work)
		case "c":
			f, err = o.measureHeap(ctx, e, src, w, tr, work)
		}
		if err != nil {
			return fmt.Errorf("(%s) over %s: %w", w.id, tr, err)
		}
		e.add(f)
	}
	return nil
}

func (o *syncOptions) measureInitial(ctx context.Context, e *env, src *source, w workload, tr, work string) (Figure, error) {
	before, err := verifyRate(src.sample, o.verifyTime)
	if err != nil {
		return Figure{}, err
	}
	res, err := o.syncOnce(ctx, e, src, w, tr, work, syncHooks{})
	if err != nil {
		return Figure{}, err
	}
	after, err := verifyRate(src.sample, o.verifyTime)
	if err != nil {
		return Figure{}, err
	}
	parallel, err := parallelVerifyRate(src.sample, o.verifyTime)
	if err != nil {
		return Figure{}, err
	}
	decode, err := decodeRate(src.sample, o.verifyTime)
	if err != nil {
		return Figure{}, err
	}
	procs := float64(runtime.GOMAXPROCS(0))
	single := (before.wall + after.wall) / 2
	f := o.baseFigure(w, tr, res)
	f.Unit = "ops/s"
	f.Measured = float64(w.ops) / res.elapsed.Seconds()
	f.Limit, f.LimitName, f.LimitMeasured = single*procs, "verify limit", true
	f.Target, f.AtLeast = targetVerifyShare, true
	f.Details["verify_single_core_before_ops_s"] = before.wall
	f.Details["verify_single_core_after_ops_s"] = after.wall
	f.Details["verify_parallel_ops_s"] = parallel
	f.Details["decode_single_core_ops_s"] = decode.wall
	f.Diagnosis = fmt.Sprintf("%.1f s wall; verify measured %.0f and %.0f/s single-core, %.0f/s on all %d cores together", res.elapsed.Seconds(), before.wall, after.wall, parallel, int(procs))
	verifyCPU := (before.cpu + after.cpu) / 2
	if res.cpuOK && before.cpu > 0 && after.cpu > 0 {
		// What the sync would reach if it had every core to itself and kept them busy: its
		// operations per CPU-second against verifications per CPU-second.
		cpuPerOp := res.cpu.Seconds() / float64(w.ops)
		bound := 1 / (cpuPerOp * verifyCPU)
		f.Details["verify_cpu_us"] = 1e6 / verifyCPU
		f.Details["decode_cpu_us"] = 1e6 / decode.cpu
		f.Details["sync_cpu_us_per_op"] = cpuPerOp * 1e6
		f.Details["cpu_bound_ratio"] = bound
		f.Diagnosis += fmt.Sprintf("; %.1f s CPU = %.2f of %d cores busy; %.0f µs CPU per op (both nodes) vs %.0f µs per verify, %.0f µs per DecodeOperation: CPU-bound ratio %.0f%%",
			res.cpu.Seconds(), res.cpu.Seconds()/res.elapsed.Seconds(), int(procs), cpuPerOp*1e6, 1e6/verifyCPU, 1e6/decode.cpu, bound*100)
	}
	f.Diagnosis += insertNote(res)
	return f, nil
}

func (o *syncOptions) measureLarge(ctx context.Context, e *env, src *source, w workload, tr, work string) (Figure, error) {
	var raw rawResult
	hooks := syncHooks{beforeSync: func(ctx context.Context, from, to host.Host) error {
		e.logf("(b) raw stream over %s: %s in %s writes", tr, &o.rawBytes, &o.rawWrite)
		var err error
		raw, err = rawThroughput(ctx, from, to, int64(o.rawBytes), int(o.rawWrite))
		return err
	}}
	res, err := o.syncOnce(ctx, e, src, w, tr, work, hooks)
	if err != nil {
		return Figure{}, err
	}
	var disk float64
	if w.store == "bolt" {
		// The receiver's store must get every byte to disk, so the disk's synced write rate
		// bounds this figure whatever the protocol does. It is measured over the synced
		// volume: a small sample fits the disk's write cache and overstates the rate (64 MiB
		// measured 770-1010 MB/s on a disk that sustains 320-410 MB/s over 512 MiB).
		sample := min(max(int(src.bodyBytes), 8*mib), 1024*mib)
		if disk, err = diskSyncRate(work, sample, diskSyncChunk); err != nil {
			return Figure{}, err
		}
	}
	f := o.baseFigure(w, tr, res)
	f.Unit = "MB/s"
	f.Measured = float64(src.bodyBytes) / 1e6 / res.elapsed.Seconds()
	f.Limit, f.LimitName, f.LimitMeasured = float64(raw.bytes)/1e6/raw.elapsed.Seconds(), "raw stream", true
	f.Target, f.AtLeast = targetRawShare, true
	f.Details["sync_wire_mb_s"] = float64(src.wireBytes) / 1e6 / res.elapsed.Seconds()
	f.Details["raw_seconds"] = raw.elapsed.Seconds()
	f.Details["raw_bytes"] = float64(raw.bytes)
	f.Diagnosis = fmt.Sprintf("sync %.1f s for %.0f MB; raw %.1f s for %.0f MB", res.elapsed.Seconds(), float64(src.bodyBytes)/1e6, raw.elapsed.Seconds(), float64(raw.bytes)/1e6)
	if disk > 0 {
		f.Details["disk_sync_write_mb_s"] = disk
		f.Details["sync_disk_share"] = f.Measured / disk
		f.Diagnosis += fmt.Sprintf("; this disk takes %.0f MB/s of fsynced %d MiB writes of the same volume: sync reached %.0f%% of it", disk, diskSyncChunk/mib, f.Measured/disk*100)
	}
	if raw.cpuOK && res.cpuOK && raw.cpu > 0 && res.cpu > 0 {
		syncNsPerByte := float64(res.cpu.Nanoseconds()) / float64(src.bodyBytes)
		rawNsPerByte := float64(raw.cpu.Nanoseconds()) / float64(raw.bytes)
		f.Details["raw_cpu_seconds"] = raw.cpu.Seconds()
		f.Details["sync_cpu_ns_per_byte"] = syncNsPerByte
		f.Details["raw_cpu_ns_per_byte"] = rawNsPerByte
		f.Details["cpu_bound_ratio"] = rawNsPerByte / syncNsPerByte
		f.Diagnosis += fmt.Sprintf("; cores busy: sync %.2f, raw %.2f; CPU per byte: sync %.2f ns, raw %.2f ns: CPU-bound ratio %.0f%%",
			res.cpu.Seconds()/res.elapsed.Seconds(), raw.cpu.Seconds()/raw.elapsed.Seconds(), syncNsPerByte, rawNsPerByte, rawNsPerByte/syncNsPerByte*100)
	}
	f.Diagnosis += insertNote(res)
	return f, nil
}

func (o *syncOptions) measureHeap(ctx context.Context, e *env, src *source, w workload, tr, work string) (Figure, error) {
	res, err := o.syncOnce(ctx, e, src, w, tr, work, syncHooks{sampleHeap: true})
	if err != nil {
		return Figure{}, err
	}
	h := res.heap
	f := o.baseFigure(w, tr, res)
	f.Unit = "MiB"
	f.Measured = mibOf(h.PeakObjects)
	f.Limit, f.LimitName, f.LimitMeasured = mibOf(heapBound), "bound", false
	f.Target, f.AtLeast = 1, false
	delta := h.PeakObjects - min(h.PeakObjects, h.BaselineObjects)
	f.Details["heap_baseline_mib"] = mibOf(h.BaselineObjects)
	f.Details["heap_peak_over_baseline_mib"] = mibOf(delta)
	f.Details["heap_live_baseline_mib"] = mibOf(h.BaselineLive)
	f.Details["heap_live_peak_mib"] = mibOf(h.PeakLive)
	f.Details["go_total_baseline_mib"] = mibOf(h.BaselineTotal)
	f.Details["go_total_peak_mib"] = mibOf(h.PeakTotal)
	f.Details["gc_cycles"] = float64(h.GCCycles)
	f.Details["heap_samples"] = float64(h.Samples)
	f.Details["sync_ops_s"] = float64(w.ops) / res.elapsed.Seconds()
	f.Diagnosis = fmt.Sprintf("baseline %.1f MiB, peak %.1f MiB (+%.1f MiB) over %d samples; live heap after GC peaked at %.1f MiB; memory mapped by the Go runtime %.1f MiB before, %.1f MiB at most; %d GCs; synced at %.0f ops/s in %.1f s",
		mibOf(h.BaselineObjects), mibOf(h.PeakObjects), mibOf(delta), h.Samples, mibOf(h.PeakLive), mibOf(h.BaselineTotal), mibOf(h.PeakTotal), h.GCCycles, float64(w.ops)/res.elapsed.Seconds(), res.elapsed.Seconds())
	f.Diagnosis += insertNote(res)
	return f, nil
}

// baseFigure fills what every figure reports about its sync run.
func (o *syncOptions) baseFigure(w workload, tr string, res syncResult) Figure {
	f := Figure{
		ID: w.id, Name: w.name, Transport: tr, Store: w.store,
		Details: map[string]float64{
			"seconds":         res.elapsed.Seconds(),
			"ops":             float64(w.ops),
			"items_received":  float64(res.received.ItemsReceived),
			"bytes_received":  float64(res.received.BytesReceived),
			"events_lagged":   float64(res.lagged),
			"source_gen_secs": res.genSeconds,
		},
		Info: map[string]string{"connection": res.conn, "load_at_start": res.load},
	}
	if res.faults > 0 {
		f.Details["minor_page_faults"] = float64(res.faults)
	}
	if res.cpuOK {
		f.Details["cpu_seconds"] = res.cpu.Seconds()
		f.Details["cpu_cores_busy"] = res.cpu.Seconds() / res.elapsed.Seconds()
	}
	if in := res.inserts; in.batches > 0 {
		f.Details["receiver_insert_batches"] = float64(in.batches)
		f.Details["receiver_insert_seconds"] = in.total.Seconds()
		f.Details["receiver_insert_longest_ms"] = float64(in.longest.Microseconds()) / 1e3
	}
	if b := res.bolt; b.GetPageAlloc() > 0 {
		f.Details["receiver_bolt_page_bytes"] = float64(b.GetPageAlloc())
		f.Details["receiver_bolt_writes"] = float64(b.GetWrite())
		f.Details["receiver_bolt_write_seconds"] = b.GetWriteTime().Seconds()
	}
	return f
}

// insertNote sums up the receiver's store inserts for a diagnosis.
func insertNote(res syncResult) string {
	in := res.inserts
	if in.batches == 0 {
		return ""
	}
	note := fmt.Sprintf("; receiver stored %d batches (%.0f ops each) taking %.1f s = %.0f%% of the sync, longest %.0f ms",
		in.batches, float64(in.ops)/float64(in.batches), in.total.Seconds(), in.total.Seconds()/res.elapsed.Seconds()*100, float64(in.longest.Microseconds())/1e3)
	if b := res.bolt; b.GetPageAlloc() > 0 {
		note += fmt.Sprintf("; bbolt dirtied %.0f MiB of pages (%.1f× the %.0f MiB synced) and spent %.1f s writing and fsyncing them",
			mibOf(uint64(b.GetPageAlloc())), float64(b.GetPageAlloc())/float64(res.wireBytes), mibOf(res.wireBytes), b.GetWriteTime().Seconds())
	}
	return note
}
