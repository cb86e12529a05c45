package logsync

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lfnet/lfnet/syncproto"
)

// The ingest pipeline of one session has three stages that run at the same time:
//
//	reader (session.receive) -> verification (a pool of workers) -> store (ingester.run)
//
// The reader cuts received operations into verification batches and queues them in order;
// workers decode and verify the queued batches' operations in parallel; the store stage
// takes verified batches in queue order and writes as many of them as are ready in one
// transaction. So while one transaction commits (bbolt: two fdatasyncs), verification of the
// following batches continues, and the longer commits take the larger the next one gets
// (group commit). Nothing is stored before it is verified and everything before it is
// stored, and ItemReceived is emitted only after the operation's transaction committed.
const (
	// verifyBatchOps and verifyBatchBytes bound a verification batch; the reader submits one
	// when it reaches either, at Done, and after every live operation.
	verifyBatchOps   = 256
	verifyBatchBytes = 1 << 20
	// verifyJobOps is how many operations a worker verifies per job: small enough to share a
	// batch among the cores, large enough that taking a job costs nothing next to it.
	verifyJobOps = 32
	// inflightOps and inflightBytes bound what a session holds between reading an operation
	// and storing it (verified or not); the reader waits while they are reached. They must
	// leave room for a full store transaction plus the batches verified during its commit.
	inflightOps   = 16384
	inflightBytes = 48 << 20
	// ingestQueue bounds the queued batches; the in-flight budget is what normally binds.
	ingestQueue = 1024
	// storeBatchOps and storeBatchBytes bound one store transaction. Large transactions
	// amortise the commit's fsyncs, but bbolt holds every page a transaction dirties (and
	// its node) in memory until the commit. When the hash index was one random-key B-tree,
	// a transaction dirtied about one index page per operation, and 16384 took the peak heap
	// of a 1M-operation sync to 280-320 MiB. The index is now written as sorted runs
	// (hashindex.go); with 4096 that sync peaked at about 100 MiB (BENCHMARKS.md, Sync).
	storeBatchOps   = 4096
	storeBatchBytes = 16 << 20
	// storeMaxDelay bounds how long a catch-up operation waits for its transaction to fill
	// up, so that a slow sender's operations still reach the store (and the application)
	// steadily. Live operations are stored as soon as they are verified.
	storeMaxDelay = 500 * time.Millisecond
)

// inflight is the reader's budget of operations and bytes not yet stored.
type inflight struct {
	mu         sync.Mutex
	ops, bytes int
	freed      chan struct{} // closed and replaced whenever something is released
}

// acquire waits until ops and bytes fit the budget. When nothing is in flight it always
// succeeds, so that a single operation larger than the byte budget still passes.
func (f *inflight) acquire(ctx context.Context, stop <-chan struct{}, ops, bytes int) error {
	for {
		f.mu.Lock()
		if f.ops == 0 || (f.ops+ops <= inflightOps && f.bytes+bytes <= inflightBytes) {
			f.ops += ops
			f.bytes += bytes
			f.mu.Unlock()
			return nil
		}
		if f.freed == nil {
			f.freed = make(chan struct{})
		}
		freed := f.freed
		f.mu.Unlock()
		select {
		case <-freed:
		case <-stop:
			return errStopped
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

func (f *inflight) release(ops, bytes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops -= ops
	f.bytes -= bytes
	if f.freed != nil {
		close(f.freed)
		f.freed = nil
	}
}

// errStopped stands for the store stage's own error, which the caller reads after done.
var errStopped = errors.New("logsync: ingest stopped")

// ingestItem is one queued verification batch, or (ack != nil) a flush marker.
type ingestItem struct {
	batch   []rawOp
	entries []Entry // entries[i] is batch[i] verified
	size    int     // header plus body bytes of the batch
	live    bool    // received in live mode: store without waiting for more
	pending atomic.Int32
	done    chan struct{} // closed once every job of the batch finished

	errMu  sync.Mutex
	errIdx int
	err    error // the first invalid operation's error, by batch index

	ack chan struct{} // flush marker: closed when everything queued before it is stored
}

func (it *ingestItem) fail(i int, err error) {
	it.errMu.Lock()
	defer it.errMu.Unlock()
	if it.err == nil || i < it.errIdx {
		it.err, it.errIdx = err, i
	}
}

// verify decodes and verifies batch[from:to]; the batch's last job to finish marks it done.
func (it *ingestItem) verify(ctx context.Context, from, to int) {
	defer func() {
		if it.pending.Add(-1) == 0 {
			close(it.done)
		}
	}()
	if ctx.Err() != nil {
		it.fail(from, context.Cause(ctx))
		return
	}
	for i := from; i < to; i++ {
		r := it.batch[i]
		op, err := decodeOwned(r.header, r.body)
		if err != nil {
			it.fail(i, err)
			return
		}
		if r.entry != nil {
			copy(r.entry, op.hash[:])
			op.entry = r.entry
		}
		it.entries[i] = Entry{Op: op, LogID: r.logID}
	}
}

// verifyPool runs verification jobs on up to max goroutines. Workers start when jobs arrive
// and exit when none are left, so an idle (live) session holds no verification goroutines,
// while during catch-up the same workers keep taking jobs without a barrier per batch.
type verifyPool struct {
	mu      sync.Mutex
	jobs    []func()
	running int
	max     int
	wg      sync.WaitGroup
}

func (p *verifyPool) submit(job func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.jobs = append(p.jobs, job)
	if p.running < p.max {
		p.running++
		p.wg.Add(1)
		go p.work()
	}
}

func (p *verifyPool) work() {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		if len(p.jobs) == 0 {
			p.running--
			p.jobs = nil // let the backing array go while idle
			p.mu.Unlock()
			return
		}
		job := p.jobs[0]
		p.jobs[0] = nil
		p.jobs = p.jobs[1:]
		p.mu.Unlock()
		job()
	}
}

// ingester is the verification and store stages of one session's pipeline.
type ingester struct {
	s      *session
	ctx    context.Context
	emit   func(syncproto.Event)
	queue  chan *ingestItem
	budget inflight
	pool   verifyPool
	done   chan struct{}
	err    error // set before done closes
	close  func()
}

func newIngester(ctx context.Context, s *session, emit func(syncproto.Event)) *ingester {
	in := &ingester{
		s: s, ctx: ctx, emit: emit,
		queue: make(chan *ingestItem, ingestQueue),
		pool:  verifyPool{max: runtime.GOMAXPROCS(0)},
		done:  make(chan struct{}),
	}
	var once sync.Once
	in.close = func() {
		once.Do(func() { close(in.queue) })
		<-in.done
		in.pool.wg.Wait()
	}
	go in.run()
	return in
}

// submit queues batch for verification and storage; it blocks while the queue is full.
func (in *ingester) submit(ctx context.Context, batch []rawOp, live bool) error {
	if len(batch) == 0 {
		return nil
	}
	it := &ingestItem{batch: batch, entries: make([]Entry, len(batch)), live: live, done: make(chan struct{})}
	for _, r := range batch {
		it.size += len(r.header) + len(r.body)
	}
	jobs := (len(batch) + verifyJobOps - 1) / verifyJobOps
	it.pending.Store(int32(jobs))
	if err := in.budget.acquire(ctx, in.done, len(batch), it.size); err != nil {
		if errors.Is(err, errStopped) {
			return in.err
		}
		return err
	}
	// Queued before its jobs start, so the queue's bound also bounds the work in flight.
	if err := in.enqueue(ctx, it); err != nil {
		return err
	}
	for from := 0; from < len(batch); from += verifyJobOps {
		to := min(from+verifyJobOps, len(batch))
		in.pool.submit(func() { it.verify(in.ctx, from, to) })
	}
	return nil
}

func (in *ingester) enqueue(ctx context.Context, it *ingestItem) error {
	select {
	case in.queue <- it:
		return nil
	case <-in.done:
		return in.err
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// flush waits until everything submitted so far is stored.
func (in *ingester) flush(ctx context.Context) error {
	ack := make(chan struct{})
	if err := in.enqueue(ctx, &ingestItem{ack: ack}); err != nil {
		return err
	}
	select {
	case <-ack:
		return nil
	case <-in.done:
		return in.err
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// run is the store stage: it takes queued batches in order, waits for their verification,
// and stores them in transactions as large as the limits allow. During catch-up it waits
// for a transaction to fill (the reader flushes at Done); a live operation is stored with
// whatever else is verified already.
func (in *ingester) run() {
	defer close(in.done)
	var carry *ingestItem // taken from the queue but not verified yet at the last commit
	fill := time.NewTimer(storeMaxDelay)
	defer fill.Stop()
	for {
		it := carry
		carry = nil
		if it == nil {
			var ok bool
			if it, ok = <-in.queue; !ok {
				return
			}
		}
		var (
			entries []Entry
			size    int
			acks    []chan struct{}
			invalid error
			closed  bool
			taken   int  // operations taken from the budget by the batches stored now
			live    bool // the batches were received in live mode (never mixed with catch-up)
		)
		fill.Reset(storeMaxDelay)
	gather:
		for it != nil {
			if it.ack != nil {
				acks = append(acks, it.ack)
				break // a flush stores what came before it now
			}
			<-it.done
			if it.err != nil {
				invalid = it.err // store the valid batches before it, then fail
				break
			}
			entries = append(entries, it.entries...)
			size += it.size
			taken += len(it.batch)
			live = it.live
			it = nil
			if len(entries) >= storeBatchOps || size >= storeBatchBytes {
				break
			}
			if !live {
				select {
				case next, ok := <-in.queue:
					if !ok {
						closed = true
						break gather
					}
					it = next
				case <-fill.C:
				}
				continue
			}
			select {
			case next, ok := <-in.queue:
				if !ok {
					closed = true
					break gather
				}
				select {
				case <-next.done:
					it = next
				default:
					if next.ack != nil {
						it = next
					} else {
						carry = next // still verifying: store what is ready meanwhile
					}
				}
			default:
			}
		}
		err := in.store(entries, live)
		if err == nil && invalid != nil {
			err = fmt.Errorf("%w from %s: %w", ErrInvalidOperation, in.s.info.Remote, invalid)
		}
		if err != nil {
			in.err = err
			in.s.cancel(err)
			for range in.queue { // drain until the reader closes the queue
			}
			return
		}
		in.budget.release(taken, size)
		for _, ack := range acks {
			close(ack)
		}
		if closed {
			return
		}
	}
}

// store writes verified entries and reports the new ones to the application.
func (in *ingester) store(entries []Entry, live bool) error {
	if len(entries) == 0 {
		return nil
	}
	for _, e := range entries {
		if in.s.info.Live {
			in.s.markSeen(e.Op.Hash())
		}
		in.s.itemsRecv.Add(1)
		in.s.bytesRecv.Add(e.Op.encodedSize())
	}
	fresh, err := in.s.m.ingest(in.ctx, entries, origin{session: in.s.info.ID, live: live})
	for _, e := range fresh {
		in.emit(syncproto.Event{Kind: syncproto.ItemReceived, Item: e, ItemBytes: int(e.Op.encodedSize()), Metrics: in.s.metrics()})
	}
	if err != nil {
		return fmt.Errorf("from %s: %w", in.s.info.Remote, err)
	}
	return nil
}
