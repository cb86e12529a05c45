package membership

import "errors"

// Sentinel errors of this package; returned errors wrap them.
var (
	// ErrInvalidConfig: a Config value is out of range.
	ErrInvalidConfig = errors.New("membership: invalid config")
	// ErrBadMessage: a message from the network is malformed or violates a limit.
	ErrBadMessage = errors.New("membership: bad message")
	// ErrClosed: the driver or overlay is closed.
	ErrClosed = errors.New("membership: closed")
	// ErrAlreadyJoined: the driver already holds an overlay for this topic.
	ErrAlreadyJoined = errors.New("membership: topic already joined")
)
