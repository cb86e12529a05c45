package logsync

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/lfnet/lfnet/internal/benchkit"
)

// Run with e.g. `go test -run xxx -bench . -benchtime 2000x ./syncproto/logsync/`. Every
// benchmark reports ops/s; BenchmarkEd25519Verify is the ceiling decode is measured
// against.

func reportOpsPerSec(b *testing.B, ops int) {
	b.ReportMetric(float64(ops)/b.Elapsed().Seconds(), "ops/s")
}

// reportCPUPerOp reports the process CPU time since start per operation, a figure that
// other processes on a shared machine disturb much less than ns/op.
func reportCPUPerOp(b *testing.B, start time.Duration, ops int) {
	if now, ok := benchkit.ProcessCPU(); ok {
		b.ReportMetric(float64(now-start)/float64(ops), "cpu-ns/op")
	}
}

const benchBodySize = 100

// benchChainCache holds one long chain shared by the store benchmarks, extended on demand,
// so that signing stays out of the timed loops.
var benchChainCache struct {
	sync.Mutex
	ops []*Operation
}

func benchChain(b *testing.B, n int) []*Operation {
	b.Helper()
	c := &benchChainCache
	c.Lock()
	defer c.Unlock()
	body := bodyPattern(benchBodySize)
	for len(c.ops) < n {
		var prev *Operation
		if len(c.ops) > 0 {
			prev = c.ops[len(c.ops)-1]
		}
		op, err := NewOperation(keyA, prev, body, nil, uint64(len(c.ops)))
		if err != nil {
			b.Fatal(err)
		}
		c.ops = append(c.ops, op)
	}
	return c.ops[:n]
}

func BenchmarkSign(b *testing.B) {
	body := bodyPattern(benchBodySize)
	prev, err := NewOperation(keyA, nil, body, nil, 1)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := NewOperation(keyA, prev, body, nil, uint64(i)); err != nil {
			b.Fatal(err)
		}
	}
	reportOpsPerSec(b, b.N)
}

// BenchmarkEd25519Verify is raw signature verification of a typical header: the upper bound
// for DecodeOperation.
func BenchmarkEd25519Verify(b *testing.B) {
	op := benchChain(b, 2)[1]
	msg := op.Header.SigningBytes()
	pub, sig := op.Header.PublicKey[:], op.Header.Signature[:]
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("verify failed")
		}
	}
	reportOpsPerSec(b, b.N)
}

func BenchmarkDecodeOperation(b *testing.B) {
	for _, size := range []int{0, benchBodySize, 70_000} {
		b.Run(fmt.Sprintf("body=%d", size), func(b *testing.B) {
			var body []byte
			if size > 0 {
				body = bodyPattern(size)
			}
			first, err := NewOperation(keyA, nil, nil, nil, 1)
			if err != nil {
				b.Fatal(err)
			}
			op, err := NewOperation(keyA, first, body, nil, 2)
			if err != nil {
				b.Fatal(err)
			}
			header := op.HeaderBytes()
			b.ReportAllocs()
			b.SetBytes(int64(len(header) + size))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := DecodeOperation(header, nonNil(body)); err != nil {
					b.Fatal(err)
				}
			}
			reportOpsPerSec(b, b.N)
		})
	}
}

// BenchmarkDecodeStored is decoding without verification, as stores do: what
// DecodeOperation costs beyond the signature and hashes.
func BenchmarkDecodeStored(b *testing.B) {
	op := benchChain(b, 2)[1]
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := decodeStored(op.hash, op.headerBytes, op.Body); err != nil {
			b.Fatal(err)
		}
	}
	reportOpsPerSec(b, b.N)
}

func BenchmarkEncodeHeader(b *testing.B) {
	op := benchChain(b, 2)[1]
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = op.Header.Encode()
	}
	reportOpsPerSec(b, b.N)
}

type benchStore struct {
	name string
	open func(b *testing.B) Store
}

var benchStores = []benchStore{
	{"mem", func(*testing.B) Store { return NewMemStore() }},
	{"bolt", func(b *testing.B) Store {
		s, err := OpenBoltStore(filepath.Join(b.TempDir(), "bench.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close() })
		return s
	}},
}

// BenchmarkStoreInsert: one operation per call (one transaction, one fsync for bolt).
func BenchmarkStoreInsert(b *testing.B) {
	for _, bs := range benchStores {
		b.Run(bs.name, func(b *testing.B) {
			ops := benchChain(b, b.N)
			s := bs.open(b)
			ctx := context.Background()
			b.ResetTimer()
			for _, op := range ops {
				if _, err := s.Insert(ctx, op, 1); err != nil {
					b.Fatal(err)
				}
			}
			reportOpsPerSec(b, b.N)
		})
	}
}

// BenchmarkStoreInsertBatch: operations inserted 4096 per call, as the ingest pipeline's
// store stage does (storeBatchOps); b.N counts operations. Run it with -benchtime 100000x
// for the store side of lfbench sync's figure (a).
func BenchmarkStoreInsertBatch(b *testing.B) {
	const batchSize = storeBatchOps
	for _, bs := range benchStores {
		b.Run(bs.name, func(b *testing.B) {
			ops := benchChain(b, b.N)
			s := bs.open(b)
			ctx := context.Background()
			entries := make([]Entry, 0, batchSize)
			b.ResetTimer()
			cpu0, _ := benchkit.ProcessCPU()
			defer func() { reportCPUPerOp(b, cpu0, b.N) }()
			for start := 0; start < len(ops); start += batchSize {
				entries = entries[:0]
				for _, op := range ops[start:min(start+batchSize, len(ops))] {
					entries = append(entries, Entry{Op: op, LogID: 1})
				}
				if _, err := s.InsertBatch(ctx, entries); err != nil {
					b.Fatal(err)
				}
			}
			reportOpsPerSec(b, b.N)
		})
	}
}

// BenchmarkStoreRange: streaming reads of a 10,000-operation log; b.N counts operations.
func BenchmarkStoreRange(b *testing.B) {
	const logLen = 10_000
	for _, bs := range benchStores {
		b.Run(bs.name, func(b *testing.B) {
			ops := benchChain(b, logLen)
			s := bs.open(b)
			ctx := context.Background()
			entries := make([]Entry, len(ops))
			for i, op := range ops {
				entries[i] = Entry{Op: op, LogID: 1}
			}
			if _, err := s.InsertBatch(ctx, entries); err != nil {
				b.Fatal(err)
			}
			log := ops[0].Log(1)
			b.ReportAllocs()
			b.ResetTimer()
			for read := 0; read < b.N; {
				err := s.Range(ctx, log, 0, logLen, func(*Operation) error {
					read++
					if read == b.N {
						return errStopRange
					}
					return nil
				})
				if err != nil && err != errStopRange {
					b.Fatal(err)
				}
			}
			reportOpsPerSec(b, b.N)
		})
	}
}

var errStopRange = fmt.Errorf("stop")
