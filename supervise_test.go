package lfnet

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/lfnet/lfnet/topics"
)

// recordingHandler keeps the messages of every log record.
type recordingHandler struct {
	mu   sync.Mutex
	msgs []string
}

func (r *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (r *recordingHandler) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.msgs = append(r.msgs, rec.Message)
	r.mu.Unlock()
	return nil
}
func (r *recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recordingHandler) WithGroup(string) slog.Handler      { return r }

func (r *recordingHandler) saw(prefix string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.msgs {
		if strings.HasPrefix(m, prefix) {
			return true
		}
	}
	return false
}

func TestHandlerPanicIsRecoveredAndNodeKeepsSyncing(t *testing.T) {
	logs := &recordingHandler{}
	a := newTestNode(t, WithLogger(slog.New(logs)))
	pid := a.host.ProtocolID("discovery", "1")
	a.guarded.mu.Lock()
	original := *a.guarded.services[pid].handler.Load()
	a.guarded.mu.Unlock()
	var injected atomic.Bool
	a.guarded.SetStreamHandler(pid, func(s network.Stream) {
		if injected.CompareAndSwap(false, true) {
			panic("injected fault")
		}
		original(s)
	})

	room := topics.Random()
	la, err := a.LogSync(context.Background(), room, true)
	if err != nil {
		t.Fatal(err)
	}
	defer la.Close()
	if _, err := la.Publish(context.Background(), []byte("survived")); err != nil {
		t.Fatal(err)
	}
	b := newTestNode(t, bootstrapFrom(a)) // b's first discovery session hits the fault
	lb, err := b.LogSync(context.Background(), room, true)
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	waitOps(t, b, lb, 1)

	if !injected.Load() || a.guarded.panics.Load() != 1 {
		t.Fatalf("fault injected=%t, panics recovered=%d", injected.Load(), a.guarded.panics.Load())
	}
	deadline := time.Now().Add(30 * time.Second)
	for !logs.saw("subsystem stopped with an error; restarting") {
		if time.Now().After(deadline) {
			t.Fatal("the supervisor did not restart the handler's service")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !logs.saw("protocol handler panicked") {
		t.Fatal("the panic was not logged")
	}
}
