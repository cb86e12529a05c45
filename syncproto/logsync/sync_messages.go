package logsync

import (
	"errors"
	"fmt"

	"github.com/lfnet/lfnet/codec"
)

// Log sync wire messages, each a codec.Tagged frame. A session, in each direction:
//
//	Have, PreSync, (Op Chunk*)*, Done            catch-up
//	(Live Chunk*)*                                live mode, until the stream closes
//
// Bodies travel in chunks so that an operation of any permitted size fits the sync frame
// limit: Op and Live carry the header and the first part of the body, Chunk frames the rest.
const (
	kindHave    = 1
	kindPreSync = 2
	kindOp      = 3
	kindChunk   = 4
	kindDone    = 5
	kindLive    = 6
)

// Protocol limits. A peer that exceeds one fails the session with ErrProtocol.
const (
	// MaxHeaderSize bounds one operation header (extensions included).
	MaxHeaderSize = 64 << 10
	// DefaultMaxBodySize bounds one operation body; receivers hold a body in memory to
	// verify its hash.
	DefaultMaxBodySize = 16 << 20
	// chunkSize is the body bytes per frame, far enough below codec.MaxFrameSync for a
	// maximal header to fit beside it.
	chunkSize = 512 << 10
	// maxHaveEntries bounds the logs one Have may announce (it must fit one frame anyway).
	maxHaveEntries = 1 << 16
)

// ErrProtocol: the remote broke the log sync protocol (wrong message order, a limit
// exceeded, more data than announced).
var ErrProtocol = errors.New("logsync: protocol violation")

// ErrInvalidOperation: the remote sent an operation that failed validation; it wraps the
// decoding or chain error. Nothing of it was stored.
var ErrInvalidOperation = errors.New("logsync: invalid operation from peer")

type haveEntry struct {
	_      struct{} `cbor:",toarray"`
	Author []byte
	LogID  uint64
	Height uint64
}

type haveMsg struct {
	_    struct{} `cbor:",toarray"`
	Logs []haveEntry
}

type preSyncMsg struct {
	_     struct{} `cbor:",toarray"`
	Ops   uint64
	Bytes uint64
}

// opMsg starts an operation (kindOp during catch-up, kindLive after it).
type opMsg struct {
	_        struct{} `cbor:",toarray"`
	LogID    uint64
	Header   []byte
	BodySize uint64
	Body     []byte // the first part; Chunk frames follow until BodySize bytes arrived
}

type chunkMsg struct {
	_    struct{} `cbor:",toarray"`
	Data []byte
}

type doneMsg struct {
	_ struct{} `cbor:",toarray"`
}

// decodeMessage strictly decodes one frame into its message value.
func decodeMessage(frame []byte) (kind uint64, msg any, err error) {
	t, err := codec.UnmarshalTagged(frame)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	switch t.Kind {
	case kindHave:
		var m haveMsg
		if err := codec.Unmarshal(t.Body, &m); err != nil {
			return 0, nil, fmt.Errorf("%w: have: %w", ErrProtocol, err)
		}
		if len(m.Logs) > maxHaveEntries {
			return 0, nil, fmt.Errorf("%w: have lists %d logs", ErrProtocol, len(m.Logs))
		}
		for _, e := range m.Logs {
			if len(e.Author) != len(PublicKey{}) || e.Height == 0 {
				return 0, nil, fmt.Errorf("%w: have entry with %d-byte author, height %d", ErrProtocol, len(e.Author), e.Height)
			}
		}
		msg = m
	case kindPreSync:
		var m preSyncMsg
		if err := codec.Unmarshal(t.Body, &m); err != nil {
			return 0, nil, fmt.Errorf("%w: presync: %w", ErrProtocol, err)
		}
		msg = m
	case kindOp, kindLive:
		var m opMsg
		if err := codec.Unmarshal(t.Body, &m); err != nil {
			return 0, nil, fmt.Errorf("%w: op: %w", ErrProtocol, err)
		}
		if len(m.Header) > MaxHeaderSize || uint64(len(m.Body)) > m.BodySize || len(m.Body) > chunkSize {
			return 0, nil, fmt.Errorf("%w: op with %d-byte header, %d of %d body bytes", ErrProtocol, len(m.Header), len(m.Body), m.BodySize)
		}
		msg = m
	case kindChunk:
		var m chunkMsg
		if err := codec.Unmarshal(t.Body, &m); err != nil {
			return 0, nil, fmt.Errorf("%w: chunk: %w", ErrProtocol, err)
		}
		if len(m.Data) == 0 || len(m.Data) > chunkSize {
			return 0, nil, fmt.Errorf("%w: chunk of %d bytes", ErrProtocol, len(m.Data))
		}
		msg = m
	case kindDone:
		var m doneMsg
		if err := codec.Unmarshal(t.Body, &m); err != nil {
			return 0, nil, fmt.Errorf("%w: done: %w", ErrProtocol, err)
		}
		msg = m
	default:
		return 0, nil, fmt.Errorf("%w: %w %d", ErrProtocol, codec.ErrUnknownKind, t.Kind)
	}
	return t.Kind, msg, nil
}

func encodeMessage(kind uint64, msg any) ([]byte, error) {
	return codec.MarshalTagged(kind, msg)
}
