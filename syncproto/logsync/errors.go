package logsync

import (
	"errors"
	"fmt"
)

// Decoding errors. DecodeOperation wraps exactly one of them, so each rejection rule can be
// told apart with errors.Is.
var (
	// ErrMalformed: not a well-formed CBOR header of the expected shape (not an array,
	// truncated, an element of the wrong type or length). Also matches codec.ErrMalformed
	// when the CBOR itself is broken.
	ErrMalformed = errors.New("logsync: malformed header")
	// ErrNonCanonical: well-formed CBOR that is not in core deterministic encoding. The
	// signature and the operation id cover the exact bytes, so only one encoding is valid.
	// Also matches codec.ErrNonCanonical.
	ErrNonCanonical = errors.New("logsync: non-canonical header encoding")
	// ErrTrailingBytes: bytes after the header's CBOR item. Also matches
	// codec.ErrTrailingBytes.
	ErrTrailingBytes = errors.New("logsync: trailing bytes after header")
	// ErrFieldCount: the header array has a number of elements no v1 header can have.
	ErrFieldCount = errors.New("logsync: wrong header field count")
	// ErrVersion: a header version other than 1.
	ErrVersion = errors.New("logsync: unsupported header version")
	// ErrPayloadMismatch: payload size and payload hash disagree within the header (a hash
	// with size 0, or no hash with size > 0).
	ErrPayloadMismatch = errors.New("logsync: payload size and hash inconsistent")
	// ErrSeqBacklink: seq num and backlink disagree (a backlink at seq 0, or none above 0).
	ErrSeqBacklink = errors.New("logsync: seq num and backlink inconsistent")
	// ErrSignature: the signature does not verify against the header's public key.
	ErrSignature = errors.New("logsync: invalid signature")
	// ErrBodyMismatch: the body's length or blake3 hash differs from the header's claim.
	ErrBodyMismatch = errors.New("logsync: body does not match header")
)

// Store errors.
var (
	// ErrMissingPredecessor: the operation is ahead of its log (seq beyond the next expected
	// one), so its backlink cannot be checked yet. Ingest may hold it until the gap fills.
	ErrMissingPredecessor = errors.New("logsync: operation ahead of its log")
	// ErrBrokenChain: the operation can never extend its log: it forks it (another
	// operation already holds that seq num, or its backlink names something other than the
	// log's latest operation) or it is already stored in a different log.
	ErrBrokenChain = errors.New("logsync: operation breaks its log's chain")
	// ErrMissingBody: an operation with a payload was given to a store without its body.
	ErrMissingBody = errors.New("logsync: operation without its body")
	// ErrCorrupt: stored bytes that do not parse; the database was damaged outside lfnet.
	ErrCorrupt = errors.New("logsync: corrupt store entry")
	// ErrStoreFormat: the database holds a BoltStore of another format version; FormatError
	// says which.
	ErrStoreFormat = errors.New("logsync: store of another format")
)

// FormatError reports a BoltStore database written in a format this version does not
// read. It matches ErrStoreFormat with errors.Is.
type FormatError struct {
	Found, Want uint64
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("logsync: store format %d, this version reads format %d only", e.Found, e.Want)
}

// Is makes FormatError match ErrStoreFormat.
func (e *FormatError) Is(target error) bool { return target == ErrStoreFormat }

// ChainError explains why an operation does not extend its log. It matches
// ErrMissingPredecessor or ErrBrokenChain with errors.Is.
type ChainError struct {
	Log     LogRef
	SeqNum  uint64 // seq num of the rejected operation
	Height  uint64 // height of the log when the operation was rejected
	Reason  string
	missing bool
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("logsync: log %s: operation at seq %d, log height %d: %s",
		e.Log, e.SeqNum, e.Height, e.Reason)
}

// Is makes ChainError match the sentinel for its kind.
func (e *ChainError) Is(target error) bool {
	if e.missing {
		return target == ErrMissingPredecessor
	}
	return target == ErrBrokenChain
}

// BatchError reports which entry of an InsertBatch call was rejected. Nothing of the batch
// was written. It unwraps to the entry's error.
type BatchError struct {
	Index int
	Err   error
}

func (e *BatchError) Error() string {
	return fmt.Sprintf("logsync: batch entry %d: %v", e.Index, e.Err)
}

// Unwrap returns the rejected entry's error.
func (e *BatchError) Unwrap() error { return e.Err }
