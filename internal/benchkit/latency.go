package benchkit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// StampSize is the length of the header Stamp writes at the start of a benchmark message.
const StampSize = 16

// Stamp is what a benchmark message carries so that its receiver can tell which round,
// author and sequence number it is and how long it travelled: the send time is taken from
// the message, so latency needs no shared state between sender and receiver.
type Stamp struct {
	Round uint32
	Node  uint16
	Seq   uint16
	Sent  time.Time
}

// Key identifies a message within its round.
func (s Stamp) Key() uint32 { return uint32(s.Node)<<16 | uint32(s.Seq) }

// Message returns a message of size bytes (at least StampSize) starting with the stamp,
// with Sent set to now.
func Message(round uint32, node, seq uint16, size int) []byte {
	m := make([]byte, max(size, StampSize))
	binary.BigEndian.PutUint32(m[0:], round)
	binary.BigEndian.PutUint16(m[4:], node)
	binary.BigEndian.PutUint16(m[6:], seq)
	binary.BigEndian.PutUint64(m[8:], uint64(time.Now().UnixNano()))
	return m
}

// ErrShort: a message is too short to carry a stamp.
var ErrShort = errors.New("benchkit: message shorter than a stamp")

// ReadStamp reads the stamp at the start of m.
func ReadStamp(m []byte) (Stamp, error) {
	if len(m) < StampSize {
		return Stamp{}, fmt.Errorf("%w: %d bytes", ErrShort, len(m))
	}
	return Stamp{
		Round: binary.BigEndian.Uint32(m),
		Node:  binary.BigEndian.Uint16(m[4:]),
		Seq:   binary.BigEndian.Uint16(m[6:]),
		Sent:  time.Unix(0, int64(binary.BigEndian.Uint64(m[8:]))),
	}, nil
}

// Schedule is when each node publishes each of its messages, as sorted offsets into a
// window: Schedule[node][seq].
type Schedule [][]time.Duration

// NewSchedule spreads perNode messages of each of nodes nodes uniformly at random over
// window.
func NewSchedule(rng *rand.Rand, nodes, perNode int, window time.Duration) Schedule {
	s := make(Schedule, nodes)
	for i := range s {
		s[i] = make([]time.Duration, perNode)
		for j := range s[i] {
			s[i][j] = time.Duration(rng.Int64N(int64(window)))
		}
		slices.Sort(s[i])
	}
	return s
}

// Percentile returns the p-quantile (0 <= p <= 1) of ds by the nearest-rank rule, 0 for
// none. ds is not modified.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// Result is one system's deliveries over one or more rounds.
type Result struct {
	Latencies          []time.Duration
	Received, Expected int
	Duplicates         int
}

// Add merges o into r.
func (r *Result) Add(o Result) {
	r.Latencies = append(r.Latencies, o.Latencies...)
	r.Received += o.Received
	r.Expected += o.Expected
	r.Duplicates += o.Duplicates
}

// Percentile is Percentile over r's latencies.
func (r *Result) Percentile(p float64) time.Duration { return Percentile(r.Latencies, p) }

// Ratio is the share of expected deliveries that happened.
func (r *Result) Ratio() float64 {
	if r.Expected == 0 {
		return 0
	}
	return float64(r.Received) / float64(r.Expected)
}

// Recorder collects one round's deliveries at every node of one system: the first
// delivery of each message at each node counts, later ones are duplicates.
type Recorder struct {
	mu        sync.Mutex
	round     uint32
	seen      []map[uint32]bool // per receiving node: Stamp.Key
	latencies []time.Duration
	counted   func(node int, s Stamp) bool
	dups      int
}

// NewRecorder returns a recorder for nodes receiving nodes.
func NewRecorder(nodes int) *Recorder {
	return &Recorder{seen: make([]map[uint32]bool, nodes)}
}

// Reset starts round, forgetting the previous round's deliveries. counted, if not nil,
// says which deliveries count (the others are ignored), e.g. only those to nodes that
// stayed in the network.
func (r *Recorder) Reset(round uint32, counted func(node int, s Stamp) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.round, r.counted = round, counted
	for i := range r.seen {
		r.seen[i] = map[uint32]bool{}
	}
	r.latencies = r.latencies[:0]
	r.dups = 0
}

// Record notes that node received data at at; messages of other rounds and ones without a
// stamp are ignored.
func (r *Recorder) Record(node int, data []byte, at time.Time) {
	s, err := ReadStamp(data)
	if err != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.Round != r.round || (r.counted != nil && !r.counted(node, s)) {
		return
	}
	if r.seen[node][s.Key()] {
		r.dups++
		return
	}
	r.seen[node][s.Key()] = true
	r.latencies = append(r.latencies, at.Sub(s.Sent))
}

// Count returns how many deliveries of the round were recorded.
func (r *Recorder) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.latencies)
}

// Result returns the round's deliveries against expected.
func (r *Recorder) Result(expected int) Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Result{Latencies: slices.Clone(r.latencies), Received: len(r.latencies), Expected: expected, Duplicates: r.dups}
}
