package discovery

import (
	"errors"
	"fmt"

	"github.com/lfnet/lfnet/codec"
)

// Message kinds (codec.Tagged).
const (
	kindHello   = 1 // initiator: salt
	kindOffer   = 2 // acceptor: salt and tokens of all its topics
	kindMatch   = 3 // initiator: tokens of the common topics
	kindRecords = 4 // both: signed peer records, tagged with common-topic tokens
)

// Protocol limits; a peer that exceeds one fails the session.
const (
	// MaxTopicsOffered bounds the tokens of one Offer (and so the topics a node announces).
	MaxTopicsOffered = 1024
	// MaxRecords bounds the records of one Records message.
	MaxRecords = 48
	// maxRecordSize bounds one signed peer record envelope.
	maxRecordSize = 1024
	// sampleSize is how many untagged known nodes a session shares to keep walks going.
	sampleSize = 8
)

// ErrProtocol: the remote broke the discovery protocol.
var ErrProtocol = errors.New("discovery: protocol violation")

type helloMsg struct {
	_    struct{} `cbor:",toarray"`
	Salt []byte
}

type offerMsg struct {
	_      struct{} `cbor:",toarray"`
	Salt   []byte
	Tokens [][]byte
}

type matchMsg struct {
	_      struct{} `cbor:",toarray"`
	Tokens [][]byte
}

type recordEntry struct {
	_      struct{} `cbor:",toarray"`
	Record []byte   // marshalled signed peer record envelope
	Tokens [][]byte // the sender's tokens of the common topics this node shares
}

type recordsMsg struct {
	_       struct{} `cbor:",toarray"`
	Records []recordEntry
}

func checkTokens(ts [][]byte, max int) ([]Token, error) {
	if len(ts) > max {
		return nil, fmt.Errorf("%w: %d tokens, limit %d", ErrProtocol, len(ts), max)
	}
	out := make([]Token, len(ts))
	for i, t := range ts {
		if len(t) != tokenSize {
			return nil, fmt.Errorf("%w: token of %d bytes", ErrProtocol, len(t))
		}
		out[i] = Token(t)
	}
	return out, nil
}

// decodeMessage strictly decodes a frame of the wanted kind and checks its limits.
func decodeMessage(frame []byte, want uint64) (any, error) {
	t, err := codec.UnmarshalTagged(frame)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	if t.Kind != want {
		return nil, fmt.Errorf("%w: %w: kind %d, want %d", ErrProtocol, codec.ErrUnknownKind, t.Kind, want)
	}
	switch want {
	case kindHello:
		var m helloMsg
		if err := codec.Unmarshal(t.Body, &m); err != nil {
			return nil, fmt.Errorf("%w: hello: %w", ErrProtocol, err)
		}
		if len(m.Salt) != saltSize {
			return nil, fmt.Errorf("%w: salt of %d bytes", ErrProtocol, len(m.Salt))
		}
		return m, nil
	case kindOffer:
		var m offerMsg
		if err := codec.Unmarshal(t.Body, &m); err != nil {
			return nil, fmt.Errorf("%w: offer: %w", ErrProtocol, err)
		}
		if len(m.Salt) != saltSize {
			return nil, fmt.Errorf("%w: salt of %d bytes", ErrProtocol, len(m.Salt))
		}
		if _, err := checkTokens(m.Tokens, MaxTopicsOffered); err != nil {
			return nil, err
		}
		return m, nil
	case kindMatch:
		var m matchMsg
		if err := codec.Unmarshal(t.Body, &m); err != nil {
			return nil, fmt.Errorf("%w: match: %w", ErrProtocol, err)
		}
		if _, err := checkTokens(m.Tokens, MaxTopicsOffered); err != nil {
			return nil, err
		}
		return m, nil
	case kindRecords:
		var m recordsMsg
		if err := codec.Unmarshal(t.Body, &m); err != nil {
			return nil, fmt.Errorf("%w: records: %w", ErrProtocol, err)
		}
		if len(m.Records) > MaxRecords {
			return nil, fmt.Errorf("%w: %d records, limit %d", ErrProtocol, len(m.Records), MaxRecords)
		}
		for _, r := range m.Records {
			if len(r.Record) == 0 || len(r.Record) > maxRecordSize {
				return nil, fmt.Errorf("%w: record of %d bytes", ErrProtocol, len(r.Record))
			}
			if _, err := checkTokens(r.Tokens, MaxTopicsOffered); err != nil {
				return nil, err
			}
		}
		return m, nil
	}
	return nil, fmt.Errorf("%w: %w %d", ErrProtocol, codec.ErrUnknownKind, want)
}
