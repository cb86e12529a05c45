package logsync

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

func TestMemStoreConformance(t *testing.T) {
	runStoreConformance(t, func(t *testing.T) Store { return NewMemStore() })
}

func TestBoltStoreConformance(t *testing.T) {
	runStoreConformance(t, func(t *testing.T) Store { return openBolt(t, filepath.Join(t.TempDir(), "store.db")) })
}

func openBolt(t testing.TB, path string) *BoltStore {
	t.Helper()
	s, err := OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestBoltStorePersists(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "store.db")
	ops := chain(t, keyA, nil, 8, "a")
	s, err := OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	insertAll(t, s, 1, ops[:6])
	if _, err := s.DeletePrefix(ctx, logA1, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.Associate(ctx, [32]byte{1}, authorA, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openBolt(t, path)
	if h, _ := heightOf(t, s, logA1); h != 6 {
		t.Fatalf("height after reopen %d, want 6", h)
	}
	wantSeqs(t, collect(t, s, logA1, 0, 10), 2, 3, 4, 5)
	if r, _ := s.Resolve(ctx, [32]byte{1}); len(r[authorA]) != 1 {
		t.Fatalf("topic association lost: %v", r)
	}
	// The pruned prefix and the chain's head survive the restart.
	if inserted, err := s.Insert(ctx, ops[1], 1); inserted || err != nil {
		t.Fatalf("pruned op after reopen: %t, %v", inserted, err)
	}
	insertAll(t, s, 1, ops[6:])
}

// The node shares one bbolt file between subsystems: the store must keep to its own
// buckets and leave the database open on Close.
func TestBoltStoreSharedDB(t *testing.T) {
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "node.db"), 0o600, &bbolt.Options{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	other := []byte("addressbook")
	err = db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket(other)
		if err != nil {
			return err
		}
		return b.Put([]byte("peer"), []byte("addr"))
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewBoltStore(db)
	if err != nil {
		t.Fatal(err)
	}
	insertAll(t, s, 1, chain(t, keyA, nil, 3, "a"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	err = db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(other).Get([]byte("peer")); string(v) != "addr" {
			return fmt.Errorf("other bucket changed: %q", v)
		}
		return tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
			if string(name) != string(other) && !strings.HasPrefix(string(name), "logsync/") {
				return fmt.Errorf("unexpected bucket %q", name)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatalf("database after store Close: %v", err)
	}
	// A second store on the same database sees the data.
	s2, err := NewBoltStore(db)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := heightOf(t, s2, logA1); h != 3 {
		t.Fatalf("height %d, want 3", h)
	}
}

// Crash safety: a child process inserts in a loop, is SIGKILLed mid-loop, and the store
// must reopen consistent. Each round continues the logs the previous round left, so
// recovery is also checked to leave chains that can be extended.

const crashChildEnv = "LFNET_LOGSYNC_CRASH_CHILD_DB"

// crashLogs are the logs the child writes: two authors, two log ids each.
var crashLogs = []LogRef{logA1, logA2, logB1, logB2}

func TestBoltStoreCrashSafety(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crash.db")
	rounds := 5
	if os.Getenv("LFNET_LONG") != "" {
		rounds = 40
	}
	for round := range rounds {
		acked := runCrashChild(t, path, 10+5*round)
		heights := verifyCrashStore(t, path)
		// Whatever the child saw committed before the kill is on disk.
		for i, log := range crashLogs {
			if heights[log] < acked[i] {
				t.Fatalf("round %d: log %s height %d after the kill, child had committed %d", round, log, heights[log], acked[i])
			}
		}
		t.Logf("round %d: killed after commits up to heights %v; reopened with heights %v", round, acked, heights)
	}
}

// runCrashChild starts the child writer and kills it, after it reported `commits` commits,
// as it starts writing a large batch. It returns the log heights of the last
// commit the child reported.
func runCrashChild(t *testing.T, path string, commits int) (acked []uint64) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBoltCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Only a safety net against a hung child; the kill below normally comes much sooner.
	watchdog := time.AfterFunc(2*time.Minute, func() { _ = cmd.Process.Kill() })
	defer watchdog.Stop()
	lines := bufio.NewScanner(stdout)
	seen := 0
	for lines.Scan() {
		fields := strings.Fields(lines.Text())
		// The child announces each large batch just before writing it: killing right then
		// lands inside bbolt's write and fsync of about a megabyte.
		if seen >= commits && len(fields) == 3 && fields[0] == "begin" && fields[2] == "batch" {
			break
		}
		if len(fields) != 2+len(crashLogs) || fields[0] != "commit" {
			continue
		}
		seen++
		acked = acked[:0]
		for _, f := range fields[2:] {
			h, err := strconv.ParseUint(f, 10, 64)
			if err != nil {
				t.Fatalf("child line %q: %v", lines.Text(), err)
			}
			acked = append(acked, h)
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatalf("kill child: %v", err)
	}
	_, _ = io.Copy(io.Discard, stdout)
	waitErr := cmd.Wait()
	if seen < commits {
		t.Fatalf("child stopped after %d commits (%v); stderr:\n%s", seen, waitErr, stderr.String())
	}
	var exitErr *exec.ExitError
	if !errors.As(waitErr, &exitErr) || exitErr.ExitCode() != -1 {
		t.Fatalf("child was not killed by the signal: %v; stderr:\n%s", waitErr, stderr.String())
	}
	return acked
}

func verifyCrashStore(t *testing.T, path string) map[LogRef]uint64 {
	t.Helper()
	ctx := context.Background()
	s, err := OpenBoltStore(path)
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer s.Close()
	err = s.db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("bbolt consistency check: %v", err)
	}
	heights, err := s.Heights(ctx, crashLogs)
	if err != nil {
		t.Fatal(err)
	}
	if len(heights) == 0 {
		t.Fatal("no log survived the crash")
	}
	var total uint64
	for _, log := range crashLogs {
		height := heights[log]
		var prev *Operation
		var count uint64
		err := s.Range(ctx, log, 0, height, func(op *Operation) error {
			if op.Header.PublicKey != log.Author {
				return fmt.Errorf("operation by %s in log %s", op.Header.PublicKey, log)
			}
			if prev != nil && (op.Header.SeqNum != prev.Header.SeqNum+1 || *op.Header.Backlink != prev.Hash()) {
				return fmt.Errorf("chain broken at seq %d", op.Header.SeqNum)
			}
			dec, err := DecodeOperation(op.HeaderBytes(), nonNil(op.Body))
			if err != nil {
				return fmt.Errorf("seq %d does not decode: %w", op.Header.SeqNum, err)
			}
			if dec.Hash() != op.Hash() {
				return fmt.Errorf("seq %d stored under the wrong id", op.Header.SeqNum)
			}
			if got, ok, err := s.Get(ctx, op.Hash()); !ok || err != nil || got.Header.SeqNum != op.Header.SeqNum {
				return fmt.Errorf("seq %d not found by hash: %w", op.Header.SeqNum, err)
			}
			prev = op
			count++
			return nil
		})
		if err != nil {
			t.Fatalf("log %s: %v", log, err)
		}
		if height == 0 {
			continue
		}
		if prev == nil || prev.Header.SeqNum != height-1 {
			t.Fatalf("log %s: height %d but last stored seq %v", log, height, prev)
		}
		latest, ok, err := s.Latest(ctx, log)
		if !ok || err != nil || latest.Hash() != prev.Hash() {
			t.Fatalf("log %s: Latest is not the last operation: %t, %v", log, ok, err)
		}
		if n, _, _ := s.RangeSize(ctx, log, 0, height); n != count {
			t.Fatalf("log %s: RangeSize %d, Range visited %d", log, n, count)
		}
		total += count
	}
	// No index entry without its operation and none missing.
	err = s.db.View(func(tx *bbolt.Tx) error {
		if e, h := uint64(tx.Bucket(bucketEntries).Stats().KeyN), indexedIDs(t, tx); e != total || h != total {
			return fmt.Errorf("%d entries and %d hash index entries, %d operations in logs", e, h, total)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return heights
}

// TestBoltCrashChild is the child process of TestBoltStoreCrashSafety; it does nothing in
// a normal test run. It writes until killed, printing a line after every commit.
func TestBoltCrashChild(t *testing.T) {
	path := os.Getenv(crashChildEnv)
	if path == "" {
		t.Skip("helper process for TestBoltStoreCrashSafety")
	}
	ctx := context.Background()
	s, err := OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	latest := make(map[LogRef]*Operation)
	for _, log := range crashLogs {
		op, ok, err := s.Latest(ctx, log)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			latest[log] = op
		}
	}
	next := func(log LogRef, size int) *Operation {
		priv := keyA
		if log.Author == authorB {
			priv = keyB
		}
		prev := latest[log]
		seq := uint64(0)
		if prev != nil {
			seq = prev.Header.SeqNum + 1
		}
		op, err := NewOperation(priv, prev, bodyPattern(size), nil, seq)
		if err != nil {
			t.Fatal(err)
		}
		latest[log] = op
		return op
	}
	for i := 0; ; i++ {
		log := crashLogs[i%len(crashLogs)]
		switch i % 3 {
		case 0: // a large batch across all logs, some with big bodies
			var batch []Entry
			for j := range 40 {
				l := crashLogs[j%len(crashLogs)]
				batch = append(batch, Entry{Op: next(l, (j%5)*17_000), LogID: l.LogID})
			}
			fmt.Printf("begin %d batch\n", i)
			if _, err := s.InsertBatch(ctx, batch); err != nil {
				t.Fatal(err)
			}
		case 1:
			if _, err := s.Insert(ctx, next(log, 100), log.LogID); err != nil {
				t.Fatal(err)
			}
		case 2:
			if h, _ := heightOf(t, s, log); h > 50 {
				if _, err := s.DeletePrefix(ctx, log, h-30); err != nil {
					t.Fatal(err)
				}
			}
		}
		line := fmt.Sprintf("commit %d", i)
		for _, l := range crashLogs {
			var h uint64
			if op := latest[l]; op != nil {
				h = op.Header.SeqNum + 1
			}
			line += fmt.Sprintf(" %d", h)
		}
		fmt.Println(line)
	}
}

// A received operation read straight into the entry layout stores the same bytes as one
// encoded on insert.
func TestEntryBufferMatchesEncodeEntry(t *testing.T) {
	for _, size := range []int{0, 1, 300, 200 << 10, bodyChunk, bodyChunk + 1, 1 << 20} {
		op, err := NewOperation(keyA, nil, bodyPattern(size), nil, 1)
		if err != nil {
			t.Fatal(err)
		}
		want := encodeEntry(op)
		hb := op.HeaderBytes()
		buf, prefix := newEntryBuffer(len(hb), uint64(len(op.Body)))
		copy(buf[prefix:], hb)
		buf = append(buf, op.Body...)
		got, err := decodeOwned(buf[prefix:prefix+len(hb):prefix+len(hb)], buf[prefix+len(hb):])
		if err != nil {
			t.Fatal(err)
		}
		copy(buf, got.hash[:])
		got.entry = buf
		if !bytes.Equal(encodeEntry(got), want) {
			t.Fatalf("body of %d bytes: entry layout differs from encodeEntry", size)
		}
	}
}

// indexedIDs counts the ids in the hash index's runs, checking each run's recorded size.
func indexedIDs(t *testing.T, tx *bbolt.Tx) uint64 {
	t.Helper()
	var total uint64
	sizes := tx.Bucket(bucketHashRunSizes)
	err := tx.Bucket(bucketHashRuns).ForEachBucket(func(k []byte) error {
		n := uint64(tx.Bucket(bucketHashRuns).Bucket(k).Stats().KeyN)
		if v := sizes.Get(k); v == nil || binary.BigEndian.Uint64(v) != n {
			return fmt.Errorf("run %x holds %d ids, its size says %x", k, n, v)
		}
		total += n
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return total
}

// TestBoltChunkedBodiesLeaveNothingBehind: pruning a log removes the chunks of its large
// bodies along with their entries.
func TestBoltChunkedBodiesLeaveNothingBehind(t *testing.T) {
	ctx := context.Background()
	s := openBolt(t, filepath.Join(t.TempDir(), "s.db"))
	var ops []*Operation
	var prev *Operation
	for i := range 4 {
		op, err := NewOperation(keyA, prev, bodyPattern(600<<10+i), nil, uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		ops, prev = append(ops, op), op
	}
	insertAll(t, s, 1, ops)
	chunks := func() int {
		var n int
		if err := s.db.View(func(tx *bbolt.Tx) error {
			n = tx.Bucket(bucketBodies).Stats().KeyN
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := chunks(); n != 4*3 {
		t.Fatalf("%d chunks for 4 bodies of 600 KiB, want 12", n)
	}
	if _, err := s.DeletePrefix(ctx, logA1, 3); err != nil {
		t.Fatal(err)
	}
	if n := chunks(); n != 3 {
		t.Fatalf("%d chunks after pruning 3 of 4 bodies, want 3", n)
	}
}
