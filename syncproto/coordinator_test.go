package syncproto

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

func newTestCoordinator(self peer.ID, live bool) *Coordinator {
	cfg := DefaultCoordinatorConfig()
	cfg.Live = live
	var n uint64
	return NewCoordinator(self, cfg, rand.New(rand.NewPCG(1, 2)), func() uint64 { n++; return n })
}

func kinds(as []Action) []ActionKind {
	out := make([]ActionKind, len(as))
	for i, a := range as {
		out[i] = a.Kind
	}
	return out
}

func onlyAction(t *testing.T, as []Action, k ActionKind) Action {
	t.Helper()
	if len(as) != 1 || as[0].Kind != k {
		t.Fatalf("actions %v, want exactly one %v", kinds(as), k)
	}
	return as[0]
}

func TestNeighborUpStartsOneSession(t *testing.T) {
	c := newTestCoordinator("a", false)
	c.NeighborUp("b")
	a := onlyAction(t, c.Actions(), StartSession)
	if a.Peer != "b" || a.SessionID == 0 {
		t.Fatalf("bad start action %+v", a)
	}
	c.NeighborUp("b")
	if as := c.Actions(); len(as) != 0 {
		t.Fatalf("second NeighborUp produced %v", kinds(as))
	}
	c.NeighborDown("b")
	if got := onlyAction(t, c.Actions(), CancelSession); got.SessionID != a.SessionID {
		t.Fatalf("cancelled %d, want %d", got.SessionID, a.SessionID)
	}
	if c.Sessions() != 0 {
		t.Fatal("session left after NeighborDown")
	}
}

func TestTieBreakLowerIDWins(t *testing.T) {
	// "a" < "b": a keeps its own initiation and rejects b's; b drops its own for a's.
	lo, hi := newTestCoordinator("a", false), newTestCoordinator("b", false)
	lo.NeighborUp("b")
	hi.NeighborUp("a")
	loStart := onlyAction(t, lo.Actions(), StartSession)
	hiStart := onlyAction(t, hi.Actions(), StartSession)

	if id := lo.Incoming("b"); id != 0 {
		t.Fatalf("lower node accepted the higher node's simultaneous initiation (%d)", id)
	}
	if as := lo.Actions(); len(as) != 0 {
		t.Fatalf("rejecting produced %v", kinds(as))
	}
	id := hi.Incoming("a")
	if id == 0 {
		t.Fatal("higher node rejected the lower node's initiation")
	}
	if got := onlyAction(t, hi.Actions(), CancelSession); got.SessionID != hiStart.SessionID {
		t.Fatalf("higher node cancelled %d, want its own %d", got.SessionID, hiStart.SessionID)
	}
	// The loser's own session reports failure later: ignored, no retry scheduled.
	hi.SessionEnded("a", hiStart.SessionID, true)
	if as := hi.Actions(); len(as) != 0 {
		t.Fatalf("outcome of the replaced session produced %v", kinds(as))
	}
	if lo.Sessions() != 1 || hi.Sessions() != 1 || loStart.SessionID == 0 {
		t.Fatalf("sessions lo=%d hi=%d, want one each", lo.Sessions(), hi.Sessions())
	}
}

func TestFailureBacksOffExponentiallyWithCap(t *testing.T) {
	c := newTestCoordinator("a", true)
	c.NeighborUp("b")
	id := onlyAction(t, c.Actions(), StartSession).SessionID
	cfg := DefaultCoordinatorConfig()
	want := cfg.RetryBase
	for i := 0; i < 8; i++ {
		c.SessionEnded("b", id, true)
		tm := onlyAction(t, c.Actions(), SetTimer)
		if tm.After < want/2 || tm.After >= want {
			t.Fatalf("retry %d after %v, want in [%v, %v)", i+1, tm.After, want/2, want)
		}
		want = min(want*2, cfg.RetryMax)
		c.Timer("b", tm.Gen)
		id = onlyAction(t, c.Actions(), StartSession).SessionID
	}
	// Success resets the backoff.
	c.SessionEnded("b", id, false)
	tm := onlyAction(t, c.Actions(), SetTimer)
	if tm.After >= cfg.RetryBase {
		t.Fatalf("after success, retry in %v, want < %v", tm.After, cfg.RetryBase)
	}
}

func TestResyncWithoutLiveMode(t *testing.T) {
	c := newTestCoordinator("a", false)
	c.NeighborUp("b")
	id := onlyAction(t, c.Actions(), StartSession).SessionID
	c.SessionEnded("b", id, false)
	tm := onlyAction(t, c.Actions(), SetTimer)
	if tm.After < 30*time.Second || tm.After >= time.Minute {
		t.Fatalf("resync after %v, want within [30s, 1m)", tm.After)
	}
	c.Timer("b", tm.Gen)
	onlyAction(t, c.Actions(), StartSession)
}

func TestStaleTimerIgnored(t *testing.T) {
	c := newTestCoordinator("a", false)
	c.NeighborUp("b")
	id := onlyAction(t, c.Actions(), StartSession).SessionID
	c.SessionEnded("b", id, true)
	old := onlyAction(t, c.Actions(), SetTimer)
	c.NeighborDown("b")
	c.Actions()
	c.NeighborUp("b")
	onlyAction(t, c.Actions(), StartSession)
	c.Timer("b", old.Gen)
	if as := c.Actions(); len(as) != 0 {
		t.Fatalf("stale timer produced %v", kinds(as))
	}
}

func TestIncomingFromNonNeighborIsNotKeptAlive(t *testing.T) {
	c := newTestCoordinator("a", false)
	id := c.Incoming("z")
	if id == 0 {
		t.Fatal("rejected a session from a node that is not (yet) a neighbour")
	}
	c.SessionEnded("z", id, true)
	if as := c.Actions(); len(as) != 0 {
		t.Fatalf("retry scheduled for a non-neighbour: %v", kinds(as))
	}
	if c.Sessions() != 0 {
		t.Fatal("session state left behind")
	}
}

func TestRemoteRestartReplacesAcceptedSession(t *testing.T) {
	c := newTestCoordinator("b", false)
	first := c.Incoming("a")
	second := c.Incoming("a")
	if second == 0 || second == first {
		t.Fatalf("second incoming from a restarted remote: %d (first %d)", second, first)
	}
	if got := onlyAction(t, c.Actions(), CancelSession); got.SessionID != first {
		t.Fatalf("cancelled %d, want %d", got.SessionID, first)
	}
}

func TestProbeRunsOnceWithoutRetries(t *testing.T) {
	c := newTestCoordinator("a", false)
	c.Probe("far")
	id := onlyAction(t, c.Actions(), StartSession).SessionID
	c.Probe("far")
	if as := c.Actions(); len(as) != 0 {
		t.Fatalf("second probe during a session produced %v", kinds(as))
	}
	c.SessionEnded("far", id, true)
	if as := c.Actions(); len(as) != 0 {
		t.Fatalf("failed probe scheduled %v", kinds(as))
	}
	// A probed node that becomes a neighbour is synced like any other.
	c.NeighborUp("far")
	onlyAction(t, c.Actions(), StartSession)
}

// A probe's session is marked so that it ends once in sync; if the probed node became a
// neighbour meanwhile, the session that stays open follows at once.
func TestProbeSessionIsOneOffAndNeighbourSessionFollows(t *testing.T) {
	c := newTestCoordinator("a", true)
	c.Probe("far")
	probe := onlyAction(t, c.Actions(), StartSession)
	if !probe.Probe {
		t.Fatal("probe session not marked as a probe")
	}
	c.NeighborUp("far")
	if as := c.Actions(); len(as) != 0 {
		t.Fatalf("NeighborUp during the probe produced %v", kinds(as))
	}
	c.SessionEnded("far", probe.SessionID, false)
	next := onlyAction(t, c.Actions(), StartSession)
	if next.Probe || next.SessionID == probe.SessionID {
		t.Fatalf("after the probe: %+v", next)
	}
	c.NeighborUp("near")
	if a := onlyAction(t, c.Actions(), StartSession); a.Probe {
		t.Fatal("neighbour session marked as a probe")
	}
}
