package membership

import (
	"fmt"
	"time"
)

// ActionKind says what an Action asks the embedder to do.
type ActionKind uint8

// Action kinds. The embedder (driver or simulator) performs them in order.
const (
	// ActionSend: deliver Msg to Peer. If delivery fails the way a TCP send fails, feed
	// PeerDown(Peer) back.
	ActionSend ActionKind = iota + 1
	// ActionConnect: the core is about to talk to Peer, which may not be connected yet;
	// Data is the peer's data as last seen (in the driver, its signed peer record, whose
	// addresses make it dialable).
	ActionConnect
	// ActionDisconnect: Peer left the active view; the link may be released.
	ActionDisconnect
	// ActionNeighborUp: Peer entered the active view. Data is its peer data.
	ActionNeighborUp
	// ActionNeighborDown: Peer left the active view.
	ActionNeighborDown
	// ActionSetTimer: call HandleTimer(Timer) once After has elapsed. Timers cannot be
	// cancelled; the core ignores timers that no longer apply.
	ActionSetTimer
	// ActionNeedContacts: the node cannot fill its active view from its passive view (both
	// may be empty). The embedder should find nodes of the topic (address book, discovery)
	// and call Join with them. Emitted on becoming isolated and again on every shuffle tick
	// while the condition lasts.
	ActionNeedContacts
)

// String returns the kind's name.
func (k ActionKind) String() string {
	switch k {
	case ActionSend:
		return "Send"
	case ActionConnect:
		return "Connect"
	case ActionDisconnect:
		return "Disconnect"
	case ActionNeighborUp:
		return "NeighborUp"
	case ActionNeighborDown:
		return "NeighborDown"
	case ActionSetTimer:
		return "SetTimer"
	case ActionNeedContacts:
		return "NeedContacts"
	}
	return fmt.Sprintf("ActionKind(%d)", uint8(k))
}

// Action is one output of the state machine. Only the fields named by Kind are set.
type Action[P ID] struct {
	Kind  ActionKind
	Peer  P
	Msg   Message
	Data  []byte
	Timer Timer[P]
	After time.Duration
}

// TimerKind distinguishes the core's timers.
type TimerKind uint8

// Timer kinds.
const (
	// TimerShuffle drives the periodic shuffle and view maintenance.
	TimerShuffle TimerKind = iota + 1
	// TimerNeighbor expires a Neighbor request sent to Peer.
	TimerNeighbor
)

// Timer identifies one timer set by ActionSetTimer; hand it back unchanged to HandleTimer.
type Timer[P ID] struct {
	Kind TimerKind
	Peer P
	Seq  uint64
}
