package codec

import "errors"

// Sentinel errors; every error returned by this package wraps exactly one of them.
var (
	// ErrFrameTooLarge: a frame's length prefix (or an outgoing message) exceeds the limit.
	ErrFrameTooLarge = errors.New("codec: frame too large")
	// ErrTruncated: the stream ended inside a length prefix or a frame body.
	ErrTruncated = errors.New("codec: truncated frame")
	// ErrMalformed: bytes that are not a single well-formed CBOR item of the expected shape,
	// or an invalid length prefix.
	ErrMalformed = errors.New("codec: malformed message")
	// ErrNonCanonical: well-formed CBOR that is not in core deterministic encoding.
	ErrNonCanonical = errors.New("codec: non-canonical encoding")
	// ErrTrailingBytes: bytes left over after the one CBOR item of a frame or message.
	ErrTrailingBytes = errors.New("codec: trailing bytes")
	// ErrUnknownKind: a tagged message whose kind the receiver does not know.
	ErrUnknownKind = errors.New("codec: unknown message kind")
)
