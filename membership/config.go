package membership

import (
	"fmt"
	"time"
)

// Config holds HyParView's sizes and timers. The zero value is not usable; start from
// DefaultConfig and change what you need.
type Config struct {
	// ActiveSize is the number of neighbours a node keeps open links to (fanout + 1 in the
	// paper's terms). Broadcast layers flood over these links.
	ActiveSize int
	// PassiveSize is the number of known-alive-recently peers kept as replacements.
	PassiveSize int
	// ActiveRandomWalkLength (ARWL) is the initial ttl of a ForwardJoin walk.
	ActiveRandomWalkLength int
	// PassiveRandomWalkLength (PRWL) is the ttl at which a ForwardJoin walk also inserts the
	// joining node into the passive view of the node it passes.
	PassiveRandomWalkLength int
	// ShuffleInterval is the mean time between two shuffles started by this node.
	ShuffleInterval time.Duration
	// ShuffleJitter spreads shuffles uniformly over ShuffleInterval ± ShuffleJitter so that
	// nodes started together do not shuffle in lock step.
	ShuffleJitter time.Duration
	// ShuffleActive and ShufflePassive are how many active and passive entries a shuffle
	// request carries (besides the origin itself).
	ShuffleActive  int
	ShufflePassive int
	// ShuffleTTL is the length of the random walk a shuffle request takes.
	ShuffleTTL int
	// UrgentReplacement sends the Neighbor requests that replace a failed neighbour with
	// high priority. The paper uses high priority only when the active view is empty; but
	// after many nodes crash at once, the passive peers asked are themselves "full" of
	// neighbours that are dead but not yet detected, so they refuse low-priority requests and
	// the survivors stay cut off. A forced accept costs the receiver one random neighbour,
	// which is dead with the probability that anything failed. This deviation is on by
	// default (see BENCHMARKS-membership.md for the measured difference); set it to false
	// for the paper's behaviour.
	UrgentReplacement bool
	// NeighborTimeout bounds how long a Neighbor request (passive view promotion) may stay
	// unanswered before the next passive peer is tried.
	NeighborTimeout time.Duration
}

// DefaultConfig returns the defaults of DESIGN.md section 4, which are the paper's
// parameters for 10,000 nodes.
func DefaultConfig() Config {
	return Config{
		ActiveSize:              5,
		PassiveSize:             30,
		ActiveRandomWalkLength:  6,
		PassiveRandomWalkLength: 3,
		ShuffleInterval:         60 * time.Second,
		ShuffleJitter:           15 * time.Second,
		ShuffleActive:           3,
		ShufflePassive:          4,
		ShuffleTTL:              6,
		NeighborTimeout:         500 * time.Millisecond,
		UrgentReplacement:       true,
	}
}

// Upper bounds on configuration values; they also bound what a peer can make us do
// (a ttl from the network is clamped to our own configured ttl).
const (
	maxViewSize = 1024
	maxTTL      = 64
)

// Validate reports the first configuration value that is out of range.
func (c Config) Validate() error {
	switch {
	case c.ActiveSize < 1 || c.ActiveSize > maxViewSize:
		return fmt.Errorf("%w: ActiveSize %d not in [1, %d]", ErrInvalidConfig, c.ActiveSize, maxViewSize)
	case c.PassiveSize < 0 || c.PassiveSize > maxViewSize:
		return fmt.Errorf("%w: PassiveSize %d not in [0, %d]", ErrInvalidConfig, c.PassiveSize, maxViewSize)
	case c.ActiveRandomWalkLength < 0 || c.ActiveRandomWalkLength > maxTTL:
		return fmt.Errorf("%w: ActiveRandomWalkLength %d not in [0, %d]", ErrInvalidConfig, c.ActiveRandomWalkLength, maxTTL)
	case c.PassiveRandomWalkLength < 0 || c.PassiveRandomWalkLength > c.ActiveRandomWalkLength:
		return fmt.Errorf("%w: PassiveRandomWalkLength %d not in [0, ActiveRandomWalkLength]", ErrInvalidConfig, c.PassiveRandomWalkLength)
	case c.ShuffleInterval <= 0:
		return fmt.Errorf("%w: ShuffleInterval must be positive", ErrInvalidConfig)
	case c.ShuffleJitter < 0 || c.ShuffleJitter >= c.ShuffleInterval:
		return fmt.Errorf("%w: ShuffleJitter must be in [0, ShuffleInterval)", ErrInvalidConfig)
	case c.ShuffleActive < 0 || c.ShuffleActive > maxViewSize:
		return fmt.Errorf("%w: ShuffleActive %d out of range", ErrInvalidConfig, c.ShuffleActive)
	case c.ShufflePassive < 0 || c.ShufflePassive > maxViewSize:
		return fmt.Errorf("%w: ShufflePassive %d out of range", ErrInvalidConfig, c.ShufflePassive)
	case c.ShuffleTTL < 1 || c.ShuffleTTL > maxTTL:
		return fmt.Errorf("%w: ShuffleTTL %d not in [1, %d]", ErrInvalidConfig, c.ShuffleTTL, maxTTL)
	case c.NeighborTimeout <= 0:
		return fmt.Errorf("%w: NeighborTimeout must be positive", ErrInvalidConfig)
	}
	return nil
}
