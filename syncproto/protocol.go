package syncproto

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/lfnet/lfnet/topics"
)

// SessionInfo describes one session as the coordinator hands it to a Manager.
type SessionInfo struct {
	ID        uint64 // unique within the node's Service
	Topic     topics.Topic
	Remote    peer.ID
	Initiator bool // this node opened the stream
	// Live: stay connected after catching up and exchange new data as it appears. It is
	// false for a probe of a node that is not a neighbour (Coordinator.Probe). The two sides
	// decide it separately: a live side whose remote closes its writing side after catching
	// up ends the session normally, and a side that is not live ignores live data that
	// arrives before the remote notices.
	Live bool
}

// Conn is the framed message channel of one session. One goroutine may read while another
// writes; ReadFrame returns io.EOF once the remote has closed its writing side.
//
// Writes are buffered, so that many small frames share one transport write: WriteFrame may
// return before its frame is sent, and frames reach the remote on Flush, on CloseWrite, or
// when the buffer fills. A protocol must Flush before it waits for something the remote
// can only send after seeing what was written (a request before its reply), and when it
// has nothing more to send for now (the end of a batch, a live update).
type Conn interface {
	// ReadFrame returns the next frame; the slice is valid until the next call.
	ReadFrame() ([]byte, error)
	// WriteFrame queues one frame; it does not keep the slice.
	WriteFrame([]byte) error
	// Flush sends every frame written so far.
	Flush() error
	// CloseWrite flushes, then tells the remote that no more frames follow; reading stays
	// possible.
	CloseWrite() error
	// Reset aborts the session in both directions: blocked reads and writes return errors.
	Reset() error
}

// Protocol runs one two-party session of a data type. Run returns nil once both sides are
// done (or, in live mode, when ctx ends the session normally), and an error when the session
// failed; it must not leave goroutines behind. Run reports progress through emit, which never
// blocks.
type Protocol interface {
	Run(ctx context.Context, conn Conn, emit func(Event)) error
}

// Manager creates sessions of one data type. A Manager that supports live mode keeps track
// of its own live sessions (they are created here) so that it can push new local data to
// each of them; the coordinator only decides when sessions start and stop.
type Manager interface {
	NewSession(info SessionInfo) (Protocol, error)
}

// ManagerFunc adapts a function to the Manager interface.
type ManagerFunc func(info SessionInfo) (Protocol, error)

// NewSession calls f.
func (f ManagerFunc) NewSession(info SessionInfo) (Protocol, error) { return f(info) }

// EventKind says what an Event reports.
type EventKind uint8

// The session life cycle, in the order a subscriber sees it.
const (
	SessionStarted  EventKind = iota + 1 // handshake done, protocol starting
	SyncStarted                          // both sides know what they will exchange (Expected)
	ItemReceived                         // one unit of data arrived and was stored (Item)
	SyncFinished                         // catch-up complete (Metrics)
	LiveModeStarted                      // session stays open for new data
	SessionEnded                         // closed normally
	SessionFailed                        // closed with Err
	Lagged                               // the subscriber missed Dropped events
)

var eventKindNames = [...]string{"", "SessionStarted", "SyncStarted", "ItemReceived", "SyncFinished", "LiveModeStarted", "SessionEnded", "SessionFailed", "Lagged"}

func (k EventKind) String() string {
	if int(k) < len(eventKindNames) && k > 0 {
		return eventKindNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", k)
}

// Metrics counts a session's traffic in data-type units ("items": operations for logsync)
// and payload bytes, in each direction.
type Metrics struct {
	ItemsSent, ItemsReceived uint64
	BytesSent, BytesReceived uint64
}

// Event reports a step of a session on a topic.
type Event struct {
	Kind      EventKind
	Topic     topics.Topic
	Remote    peer.ID
	SessionID uint64
	Initiator bool
	Live      bool
	// Expected holds, on SyncStarted, what each side announced it will send.
	Expected Metrics
	// Metrics holds what actually crossed the session so far.
	Metrics Metrics
	// Item is the data-type value of ItemReceived (for logsync, a logsync.Entry).
	Item any
	// ItemBytes is about how much memory Item holds (for logsync, the operation's header
	// and body). Subscriptions bound their unread events by it as well as by count, so a
	// lagging subscriber holds at most EventBufferBytes of items (see Topic.Subscribe).
	ItemBytes int
	// Err is the cause of SessionFailed.
	Err error
	// Dropped counts the events this subscriber missed (Lagged only).
	Dropped uint64
	Time    time.Time
}

// Errors of the sync layer; session failures wrap them.
var (
	// ErrRejected: the remote refused the session (it does not hold the topic, or a
	// simultaneous session between the same two nodes won the tie-break).
	ErrRejected = errors.New("syncproto: session rejected")
	// ErrHandshake: the handshake was malformed, timed out or failed authentication.
	ErrHandshake = errors.New("syncproto: handshake failed")
	// ErrClosed: the service or topic was closed.
	ErrClosed = errors.New("syncproto: closed")
	// ErrTopicExists: the topic is already registered with the service.
	ErrTopicExists = errors.New("syncproto: topic already registered")
)
