package logsync

import (
	"context"
	"errors"
	"fmt"

	"github.com/lfnet/lfnet/topics"
)

// LogRef names a log: an author and an application-chosen log id. Log ids are uint64 (the
// p2panda default); applications with other ids map them to uint64.
type LogRef struct {
	Author PublicKey
	LogID  uint64
}

// String returns a short form for logs and errors.
func (r LogRef) String() string {
	return fmt.Sprintf("%x/%d", r.Author[:4], r.LogID)
}

// Entry is one operation to insert, with the id of the log it belongs to (the author is the
// operation's own public key).
type Entry struct {
	Op    *Operation
	LogID uint64
}

// Heights, ranges and pruning are expressed in heights. An operation's height is its seq
// num + 1, and a log's height is the height of its latest operation, i.e. how many
// operations were ever appended to it (pruning does not lower it). An empty log has height
// 0. So a peer at height h lacks exactly the operations at heights (h, H] of a log at height
// H, which is what Range and RangeSize take.

// LogStore keeps append-only logs of verified operations.
//
// Every insert checks the chain: an operation goes into log (its author, logID) only if its
// seq num is the log's height (0 for an empty log) and, above 0, its backlink is the hash of
// the log's latest operation. Operations already stored are accepted again without effect.
// The log's latest operation is never pruned, so a log can always be extended.
//
// Implementations are safe for concurrent use.
type LogStore interface {
	// Insert appends op to the log (op's author, logID). It reports whether op was new.
	// An operation ahead of its log fails with ErrMissingPredecessor, one that forks the
	// log or is already stored in another log with ErrBrokenChain (both as *ChainError), an
	// operation with a payload but no body with ErrMissingBody. An operation at or below
	// a pruned prefix is ignored (false, nil): its history was deliberately dropped.
	// Nothing is written when an error is returned.
	Insert(ctx context.Context, op *Operation, logID uint64) (inserted bool, err error)
	// InsertBatch inserts entries in order, in one transaction; later entries may extend
	// logs that earlier ones extend. It is all or nothing: on error nothing is written and
	// the error is a *BatchError naming the first rejected entry. inserted[i] reports
	// whether entries[i] was new.
	InsertBatch(ctx context.Context, entries []Entry) (inserted []bool, err error)
	// Has reports whether the operation with this id is stored.
	Has(ctx context.Context, id Hash) (bool, error)
	// Get returns the stored operation with this id, body included.
	Get(ctx context.Context, id Hash) (op *Operation, found bool, err error)
	// Heights returns the height of each given log that is not empty.
	Heights(ctx context.Context, logs []LogRef) (map[LogRef]uint64, error)
	// Latest returns the log's latest operation, or found == false for an empty log.
	Latest(ctx context.Context, log LogRef) (op *Operation, found bool, err error)
	// Range calls fn, in seq order, for each stored operation of the log at heights
	// (after, until], i.e. with after <= seq num < until. It streams: only a bounded chunk
	// of operations is held at a time, and no lock or transaction is held while fn runs, so
	// fn may use the store. The walk is not a snapshot: operations pruned meanwhile are
	// skipped. An error from fn stops the walk and is returned.
	Range(ctx context.Context, log LogRef, after, until uint64, fn func(*Operation) error) error
	// RangeSize returns how many operations Range would visit and their total size
	// (header plus body bytes).
	RangeSize(ctx context.Context, log LogRef, after, until uint64) (count, bytes uint64, err error)
	// DeletePrefix prunes the log's operations at heights up to until (seq num < until),
	// always keeping the latest one. It returns how many operations it deleted. The log's
	// height does not change.
	DeletePrefix(ctx context.Context, log LogRef, until uint64) (deleted uint64, err error)
}

// TopicStore maps topics to the logs that hold their data.
type TopicStore interface {
	// Associate records that log (author, logID) belongs to topic. Repeating it is harmless.
	Associate(ctx context.Context, topic topics.Topic, author PublicKey, logID uint64) error
	// Resolve returns the logs of a topic: for each author, its log ids in ascending order.
	// An unknown topic gives an empty map.
	Resolve(ctx context.Context, topic topics.Topic) (map[PublicKey][]uint64, error)
}

// Store is a LogStore and a TopicStore that can be closed.
type Store interface {
	LogStore
	TopicStore
	// Close releases the store's resources.
	Close() error
}

// Range chunks bound the memory a walk holds and how long a read transaction stays open.
const (
	rangeChunkOps   = 256
	rangeChunkBytes = 4 << 20
)

// logHead is what a store remembers about a log besides its operations: enough to check
// the chain even after its prefix is pruned.
type logHead struct {
	height     uint64 // latest seq num + 1
	latest     Hash
	firstStart uint64 // seq num of the oldest operation still stored
}

// checkAppend decides whether op can extend a log whose head is head (nil for an empty
// log). It does not look for op among stored operations; callers check that first.
func checkAppend(log LogRef, head *logHead, op *Operation) (ignore bool, err error) {
	seq := op.Header.SeqNum
	var height uint64
	if head != nil {
		height = head.height
	}
	chainErr := func(missing bool, reason string) error {
		return &ChainError{Log: log, SeqNum: seq, Height: height, Reason: reason, missing: missing}
	}
	switch {
	case seq > height:
		return false, chainErr(true, fmt.Sprintf("previous operation (seq %d) not stored", seq-1))
	case seq == height:
		if seq > 0 && *op.Header.Backlink != head.latest {
			return false, chainErr(false, fmt.Sprintf("backlink %s is not the latest operation %s", op.Header.Backlink, head.latest))
		}
		return false, nil
	case seq < head.firstStart:
		return true, nil
	default:
		return false, chainErr(false, "another operation holds this seq num")
	}
}

// checkInsertable rejects operations no store should hold whatever the log's state.
func checkInsertable(op *Operation) error {
	if op == nil || len(op.headerBytes) == 0 {
		// Only NewOperation and DecodeOperation produce verified operations.
		return fmt.Errorf("%w: operation not made by NewOperation or DecodeOperation", ErrMalformed)
	}
	if op.Header.PayloadSize > 0 && op.Body == nil {
		return fmt.Errorf("%w: operation %s", ErrMissingBody, op.hash)
	}
	return nil
}

func alreadyIn(log, stored LogRef, op *Operation) error {
	if log == stored {
		return nil
	}
	return &ChainError{Log: log, SeqNum: op.Header.SeqNum, Reason: fmt.Sprintf("operation %s already stored in log %s", op.hash, stored)}
}

// unwrapBatch turns the error of a one-entry batch back into the entry's own error.
func unwrapBatch(err error) error {
	var be *BatchError
	if errors.As(err, &be) {
		return be.Err
	}
	return err
}
