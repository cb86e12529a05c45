package main

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"

	"github.com/lfnet/lfnet/internal/benchkit"
	"github.com/lfnet/lfnet/syncproto/logsync"
)

// This file measures the limits figures are judged against: raw stream throughput, the
// ed25519 verification rate and the disk's synced write rate.

// rawResult is one raw stream measurement.
type rawResult struct {
	bytes   int64
	elapsed time.Duration
	cpu     time.Duration
	cpuOK   bool
}

// rawThroughput writes total bytes in writes of writeSize over one plain stream from from to
// to, whose reader discards them and then acknowledges the count; the clock runs from the
// first write to the acknowledgement.
func rawThroughput(ctx context.Context, from, to host.Host, total int64, writeSize int) (rawResult, error) {
	var (
		once    sync.Once
		done    = make(chan struct{})
		got     int64
		readErr error
	)
	to.SetStreamHandler(rawProto, func(s network.Stream) {
		first := false
		once.Do(func() { first = true })
		if !first {
			_ = s.Reset()
			return
		}
		defer close(done)
		// A read buffer as large as the writes, so that the reader is not the bottleneck.
		buf := make([]byte, writeSize)
		for {
			n, err := s.Read(buf)
			got += int64(n)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				readErr = err
				_ = s.Reset()
				return
			}
		}
		var ack [8]byte
		binary.BigEndian.PutUint64(ack[:], uint64(got))
		if _, err := s.Write(ack[:]); err != nil {
			readErr = err
			_ = s.Reset()
			return
		}
		readErr = s.Close()
	})
	defer to.RemoveStreamHandler(rawProto)

	s, err := from.NewStream(ctx, to.ID(), rawProto)
	if err != nil {
		return rawResult{}, fmt.Errorf("raw stream: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	buf := make([]byte, writeSize)
	rng := rand.New(rand.NewChaCha8([32]byte{'r', 'a', 'w'}))
	for i := 0; i+8 <= len(buf); i += 8 {
		binary.LittleEndian.PutUint64(buf[i:], rng.Uint64())
	}
	cpu0, cpuOK := benchkit.ProcessCPU()
	start := time.Now()
	for sent := int64(0); sent < total; {
		n := int(min(int64(writeSize), total-sent))
		if _, err := s.Write(buf[:n]); err != nil {
			_ = s.Reset()
			return rawResult{}, fmt.Errorf("raw stream write: %w", err)
		}
		sent += int64(n)
	}
	if err := s.CloseWrite(); err != nil {
		_ = s.Reset()
		return rawResult{}, fmt.Errorf("raw stream close write: %w", err)
	}
	var ack [8]byte
	if _, err := io.ReadFull(s, ack[:]); err != nil {
		_ = s.Reset()
		return rawResult{}, fmt.Errorf("raw stream ack: %w", err)
	}
	res := rawResult{bytes: total, elapsed: time.Since(start)}
	cpu1, _ := benchkit.ProcessCPU()
	res.cpu, res.cpuOK = cpu1-cpu0, cpuOK
	closeErr := s.Close()
	select {
	case <-done:
	case <-ctx.Done():
		return res, ctx.Err()
	}
	if err := errors.Join(readErr, closeErr); err != nil {
		return res, fmt.Errorf("raw stream: %w", err)
	}
	if n := int64(binary.BigEndian.Uint64(ack[:])); n != total || got != total {
		return res, fmt.Errorf("raw stream: reader got %d bytes (acknowledged %d), want %d", got, n, total)
	}
	return res, nil
}

// rateResult is how often something ran: per wall-clock second, and per second of the
// measuring thread's own CPU time (0 where unknown), which other processes on a shared
// machine do not distort.
type rateResult struct {
	wall, cpu float64
}

// verifyRate measures how many ed25519 signatures of op's header one goroutine verifies
// per second, over d.
func verifyRate(op *logsync.Operation, d time.Duration) (rateResult, error) {
	verify, err := verifier(op)
	if err != nil {
		return rateResult{}, err
	}
	return rate(d, verify)
}

// parallelVerifyRate runs verifyRate's loop on GOMAXPROCS goroutines at once: what the
// cores really deliver together (hyperthreads and other load make it less than
// GOMAXPROCS times the single-core rate).
func parallelVerifyRate(op *logsync.Operation, d time.Duration) (float64, error) {
	verify, err := verifier(op)
	if err != nil {
		return 0, err
	}
	procs := runtime.GOMAXPROCS(0)
	rates := make([]rateResult, procs)
	errs := make([]error, procs)
	var wg sync.WaitGroup
	for i := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rates[i], errs[i] = rate(d, verify)
		}()
	}
	wg.Wait()
	total := 0.0
	for i := range procs {
		if errs[i] != nil {
			return 0, errs[i]
		}
		total += rates[i].wall
	}
	return total, nil
}

func verifier(op *logsync.Operation) (func() bool, error) {
	msg := op.Header.SigningBytes()
	pub, sig := ed25519.PublicKey(op.Header.PublicKey[:]), op.Header.Signature[:]
	if !ed25519.Verify(pub, msg, sig) {
		return nil, errors.New("verify rate: sample operation does not verify")
	}
	return func() bool { return ed25519.Verify(pub, msg, sig) }, nil
}

// decodeRate is verifyRate for the whole of logsync.DecodeOperation (parsing, signature,
// body hash, id): the per-operation work the receiver cannot avoid.
func decodeRate(op *logsync.Operation, d time.Duration) (rateResult, error) {
	header, body := op.HeaderBytes(), op.Body
	return rate(d, func() bool {
		_, err := logsync.DecodeOperation(header, body)
		return err == nil
	})
}

// rate runs fn for d on one OS thread and returns how often it ran.
func rate(d time.Duration, fn func() bool) (rateResult, error) {
	const round = 16 // amortises the clock reads
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu0, cpuOK := benchkit.ThreadCPU()
	n := 0
	start := time.Now()
	for {
		for range round {
			if !fn() {
				return rateResult{}, errors.New("rate: operation failed")
			}
		}
		n += round
		if el := time.Since(start); el >= d {
			r := rateResult{wall: float64(n) / el.Seconds()}
			if cpu1, _ := benchkit.ThreadCPU(); cpuOK && cpu1 > cpu0 {
				r.cpu = float64(n) / (cpu1 - cpu0).Seconds()
			}
			return r, nil
		}
	}
}

// diskSyncChunk is the size of diskSyncRate's writes: a store transaction of large bodies
// (logsync's storeBatchBytes).
const diskSyncChunk = 16 * mib

// diskSyncRate writes total bytes to a file in dir in writes of chunk bytes, each followed
// by an fsync as a store commit does, and returns the rate in MB/s.
func diskSyncRate(dir string, total, chunk int) (rate float64, err error) {
	f, err := os.CreateTemp(dir, "disk-rate-")
	if err != nil {
		return 0, fmt.Errorf("disk rate: %w", err)
	}
	defer func() {
		err = errors.Join(err, f.Close(), os.Remove(f.Name()))
	}()
	buf := make([]byte, chunk)
	rng := rand.New(rand.NewChaCha8([32]byte{'d', 'i', 's', 'k'}))
	for i := 0; i+8 <= len(buf); i += 8 {
		binary.LittleEndian.PutUint64(buf[i:], rng.Uint64())
	}
	start := time.Now()
	for written := 0; written < total; written += chunk {
		if _, err := f.Write(buf); err != nil {
			return 0, fmt.Errorf("disk rate: %w", err)
		}
		if err := f.Sync(); err != nil {
			return 0, fmt.Errorf("disk rate: %w", err)
		}
	}
	return float64(total) / 1e6 / time.Since(start).Seconds(), nil
}
