package logsync

import (
	"errors"
	"fmt"

	"github.com/lfnet/lfnet/codec"
)

// Log sync wire messages, each a codec.Tagged frame. A session, in each direction:
//
//	Have, PreSync, (Op Chunk*)*, Done            catch-up
//	(Live Chunk* | Announce | Graft | Prune)*     live mode, until the stream closes
//
// Bodies travel in chunks so that an operation of any permitted size fits the sync frame
// limit: Op and Live carry the header and the first part of the body, Chunk frames the rest.
//
// Live mode spreads new operations with Plumtree (internal/plumtree), a tree per author: in
// full (Live) along the links of the author's spanning tree, and only as ids (Announce)
// along the others. Graft asks for announced operations that did not arrive and puts the
// link in their author's tree; Prune, sent for a duplicate, names the authors whose trees
// the link leaves.
const (
	kindHave     = 1
	kindPreSync  = 2
	kindOp       = 3
	kindChunk    = 4
	kindDone     = 5
	kindLive     = 6
	kindAnnounce = 7
	kindGraft    = 8
	kindPrune    = 9
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
	// maxFrameIDs bounds the operation ids of one Announce or Graft.
	maxFrameIDs = 1024
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

// idsMsg is an Announce (operations the sender holds), a Graft (operations the sender asks
// for) or a Prune (authors whose operations the sender no longer wants pushed). The ids are
// 32 bytes: operation hashes or authors' public keys.
type idsMsg struct {
	_   struct{} `cbor:",toarray"`
	IDs [][]byte
}

// hashes returns the ids of an Announce or Graft, which checkMessage has sized.
func (m idsMsg) hashes() []Hash {
	out := make([]Hash, len(m.IDs))
	for i, id := range m.IDs {
		out[i] = Hash(id)
	}
	return out
}

// authors returns the ids of a Prune.
func (m idsMsg) authors() []PublicKey {
	out := make([]PublicKey, len(m.IDs))
	for i, id := range m.IDs {
		out[i] = PublicKey(id)
	}
	return out
}

// decodeMessage strictly decodes one frame into its message value. Op, Live and Chunk
// frames, which carry nearly all of a sync's bytes, are read by hand and their byte strings
// alias frame (valid until the frame's buffer is reused); other kinds go through the
// reflection codec. Both paths accept exactly the same frames (FuzzDecodeSyncMessage).
func decodeMessage(frame []byte) (kind uint64, msg any, err error) {
	sc := codec.NewScanner(frame)
	if sc.ArrayHead(2) == nil {
		kind, err := sc.Uint()
		if err == nil && (kind == kindOp || kind == kindLive || kind == kindChunk) {
			msg, err := scanDataMessage(sc, kind)
			if err != nil {
				return 0, nil, fmt.Errorf("%w: %s: %w", ErrProtocol, kindName(kind), err)
			}
			if err := checkMessage(msg); err != nil {
				return 0, nil, err
			}
			return kind, msg, nil
		}
	}
	return decodeGeneric(frame)
}

// scanDataMessage reads the body of an Op, Live or Chunk frame after its kind.
func scanDataMessage(sc *codec.Scanner, kind uint64) (any, error) {
	var msg any
	if kind == kindChunk {
		if err := sc.ArrayHead(1); err != nil {
			return nil, err
		}
		data, err := sc.Bytes()
		if err != nil {
			return nil, err
		}
		msg = chunkMsg{Data: data}
	} else {
		var m opMsg
		var err error
		if err = sc.ArrayHead(4); err != nil {
			return nil, err
		}
		if m.LogID, err = sc.Uint(); err != nil {
			return nil, err
		}
		if m.Header, err = sc.Bytes(); err != nil {
			return nil, err
		}
		if m.BodySize, err = sc.Uint(); err != nil {
			return nil, err
		}
		if m.Body, err = sc.Bytes(); err != nil {
			return nil, err
		}
		msg = m
	}
	return msg, sc.End()
}

func kindName(kind uint64) string {
	switch kind {
	case kindOp, kindLive:
		return "op"
	case kindChunk:
		return "chunk"
	case kindAnnounce:
		return "announce"
	case kindGraft:
		return "graft"
	case kindPrune:
		return "prune"
	}
	return fmt.Sprint("kind ", kind)
}

// decodeGeneric decodes any kind of frame with the reflection codec (codec.Unmarshal's
// strict rules). It is the reference the hand-read kinds are tested against.
func decodeGeneric(frame []byte) (kind uint64, msg any, err error) {
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
		msg = m
	case kindChunk:
		var m chunkMsg
		if err := codec.Unmarshal(t.Body, &m); err != nil {
			return 0, nil, fmt.Errorf("%w: chunk: %w", ErrProtocol, err)
		}
		msg = m
	case kindDone:
		var m doneMsg
		if err := codec.Unmarshal(t.Body, &m); err != nil {
			return 0, nil, fmt.Errorf("%w: done: %w", ErrProtocol, err)
		}
		msg = m
	case kindAnnounce, kindGraft, kindPrune:
		var m idsMsg
		if err := codec.Unmarshal(t.Body, &m); err != nil {
			return 0, nil, fmt.Errorf("%w: ids: %w", ErrProtocol, err)
		}
		if len(m.IDs) == 0 {
			return 0, nil, fmt.Errorf("%w: %s without ids", ErrProtocol, kindName(t.Kind))
		}
		msg = m
	default:
		return 0, nil, fmt.Errorf("%w: %w %d", ErrProtocol, codec.ErrUnknownKind, t.Kind)
	}
	if err := checkMessage(msg); err != nil {
		return 0, nil, err
	}
	return t.Kind, msg, nil
}

// checkMessage applies the protocol limits to a decoded message.
func checkMessage(msg any) error {
	switch m := msg.(type) {
	case haveMsg:
		if len(m.Logs) > maxHaveEntries {
			return fmt.Errorf("%w: have lists %d logs", ErrProtocol, len(m.Logs))
		}
		for _, e := range m.Logs {
			if len(e.Author) != len(PublicKey{}) || e.Height == 0 {
				return fmt.Errorf("%w: have entry with %d-byte author, height %d", ErrProtocol, len(e.Author), e.Height)
			}
		}
	case opMsg:
		if len(m.Header) > MaxHeaderSize || uint64(len(m.Body)) > m.BodySize || len(m.Body) > chunkSize {
			return fmt.Errorf("%w: op with %d-byte header, %d of %d body bytes", ErrProtocol, len(m.Header), len(m.Body), m.BodySize)
		}
	case chunkMsg:
		if len(m.Data) == 0 || len(m.Data) > chunkSize {
			return fmt.Errorf("%w: chunk of %d bytes", ErrProtocol, len(m.Data))
		}
	case idsMsg:
		if len(m.IDs) > maxFrameIDs {
			return fmt.Errorf("%w: %d ids in one frame", ErrProtocol, len(m.IDs))
		}
		for _, id := range m.IDs {
			if len(id) != len(Hash{}) {
				return fmt.Errorf("%w: %d-byte operation id", ErrProtocol, len(id))
			}
		}
	}
	return nil
}

func encodeMessage(kind uint64, msg any) ([]byte, error) {
	return codec.MarshalTagged(kind, msg)
}

// appendOpMsg appends the frame of an Op or Live message; it is the encoding
// encodeMessage(kind, opMsg{...}) produces, written without reflection or copies beyond
// dst.
func appendOpMsg(dst []byte, kind, logID uint64, header []byte, bodySize uint64, first []byte) []byte {
	dst = codec.AppendArrayHead(dst, 2)
	dst = codec.AppendUint(dst, kind)
	dst = codec.AppendArrayHead(dst, 4)
	dst = codec.AppendUint(dst, logID)
	dst = codec.AppendBytes(dst, header)
	dst = codec.AppendUint(dst, bodySize)
	return codec.AppendBytes(dst, first)
}

// appendChunkMsg appends the frame of a Chunk message, as appendOpMsg does for Op.
func appendChunkMsg(dst, data []byte) []byte {
	dst = codec.AppendArrayHead(dst, 2)
	dst = codec.AppendUint(dst, kindChunk)
	dst = codec.AppendArrayHead(dst, 1)
	return codec.AppendBytes(dst, data)
}
