package lfnet

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/thejerf/suture/v4"
)

// guardedHost is the libp2p host as lfnet's subsystems see it: every stream handler they
// register runs behind a recover, so that a bug triggered by one peer resets that peer's
// stream instead of taking the node down. Each handler is owned by a supervised service
// that a panic restarts, re-registering the handler.
type guardedHost struct {
	host.Host
	sup    *suture.Supervisor
	log    *slog.Logger
	panics atomic.Uint64

	mu       sync.Mutex
	services map[protocol.ID]*handlerService
}

func newGuardedHost(h host.Host, sup *suture.Supervisor, log *slog.Logger) *guardedHost {
	return &guardedHost{Host: h, sup: sup, log: log, services: make(map[protocol.ID]*handlerService)}
}

// SetStreamHandler registers handler behind a recover and puts it under supervision.
func (g *guardedHost) SetStreamHandler(pid protocol.ID, handler network.StreamHandler) {
	g.mu.Lock()
	defer g.mu.Unlock()
	svc, ok := g.services[pid]
	if !ok {
		svc = &handlerService{g: g, pid: pid, panicked: make(chan any, 1)}
		g.services[pid] = svc
		svc.token = g.sup.Add(svc)
	}
	svc.handler.Store(&handler)
	svc.register()
}

// RemoveStreamHandler unregisters the handler and ends its supervision.
func (g *guardedHost) RemoveStreamHandler(pid protocol.ID) {
	g.mu.Lock()
	svc, ok := g.services[pid]
	delete(g.services, pid)
	g.mu.Unlock()
	if ok {
		svc.removed.Store(true)
	}
	g.Host.RemoveStreamHandler(pid)
	if ok {
		// The supervisor may already be stopping; then the service ends with it.
		_ = g.sup.RemoveAndWait(svc.token, removeTimeout)
	}
}

// handlerService supervises one protocol's stream handler.
type handlerService struct {
	g        *guardedHost
	pid      protocol.ID
	handler  atomic.Pointer[network.StreamHandler]
	panicked chan any
	token    suture.ServiceToken
	removed  atomic.Bool // once set, a (re)start must not register the handler again
}

// removeTimeout bounds how long unregistering waits for the handler's service to stop.
const removeTimeout = 5 * time.Second

func (s *handlerService) String() string { return "handler " + string(s.pid) }

func (s *handlerService) register() {
	if s.removed.Load() {
		return
	}
	s.g.Host.SetStreamHandler(s.pid, s.guarded)
}

func (s *handlerService) guarded(st network.Stream) {
	defer func() {
		if r := recover(); r != nil {
			s.g.panics.Add(1)
			s.g.log.Error("protocol handler panicked; stream reset", "protocol", s.pid,
				"peer", st.Conn().RemotePeer(), "panic", r, "stack", string(debug.Stack()))
			_ = st.Reset()
			select {
			case s.panicked <- r:
			default: // a restart is already pending
			}
		}
	}()
	(*s.handler.Load())(st)
}

// Serve (re)registers the handler and waits; a panic in the handler ends it with an error,
// and the supervisor starts it again after its backoff.
func (s *handlerService) Serve(ctx context.Context) error {
	s.register()
	select {
	case <-ctx.Done():
		return nil
	case r := <-s.panicked:
		return fmt.Errorf("handler for %s panicked: %v", s.pid, r)
	}
}

// supervisorSpec logs the supervisor's decisions through slog.
func supervisorSpec(log *slog.Logger) suture.Spec {
	return suture.Spec{
		EventHook: func(e suture.Event) {
			switch ev := e.(type) {
			case suture.EventServicePanic:
				log.Error("subsystem panicked; restarting", "service", ev.ServiceName, "panic", ev.PanicMsg)
			case suture.EventServiceTerminate:
				log.Warn("subsystem stopped with an error; restarting", "service", ev.ServiceName, "err", ev.Err)
			case suture.EventBackoff:
				log.Warn("subsystem failing repeatedly; backing off", "supervisor", ev.SupervisorName)
			}
		},
	}
}

// loopService runs one of the node's own long-lived loops under supervision: a panic in it
// is logged and the loop starts again.
type loopService struct {
	name string
	run  func(ctx context.Context)
}

func (l loopService) String() string { return l.name }

func (l loopService) Serve(ctx context.Context) error {
	l.run(ctx)
	if ctx.Err() != nil {
		return suture.ErrDoNotRestart
	}
	return fmt.Errorf("%s returned before the node closed", l.name)
}
