package codec

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Hand encoding and decoding for hot messages of a fixed shape (arrays of unsigned integers
// and byte strings), where the reflection codec's allocations, copies and re-encoding check
// cost more than the message is worth. Both sides produce and accept exactly the core
// deterministic encoding that Marshal writes and Unmarshal accepts for the same Go values,
// and the byte strings a Scanner returns alias the input instead of copying it.

const (
	cborNull   = 0xf6
	majorUint  = 0
	majorBytes = 2
	majorArray = 4
)

// AppendUint appends v as a CBOR unsigned integer in its shortest form.
func AppendUint(dst []byte, v uint64) []byte { return appendHead(dst, majorUint, v) }

// AppendBytes appends b as a definite-length CBOR byte string, or as null when b is nil,
// which is how Marshal encodes a nil []byte.
func AppendBytes(dst, b []byte) []byte {
	if b == nil {
		return append(dst, cborNull)
	}
	return append(appendHead(dst, majorBytes, uint64(len(b))), b...)
}

// AppendBytesHead appends only the head of a byte string of n bytes, for callers that write
// its content separately.
func AppendBytesHead(dst []byte, n int) []byte { return appendHead(dst, majorBytes, uint64(n)) }

// AppendArrayHead appends the head of an array of n elements.
func AppendArrayHead(dst []byte, n int) []byte { return appendHead(dst, majorArray, uint64(n)) }

func appendHead(dst []byte, major byte, v uint64) []byte {
	m := major << 5
	switch {
	case v < 24:
		return append(dst, m|byte(v))
	case v <= math.MaxUint8:
		return append(dst, m|24, byte(v))
	case v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, m|25), uint16(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(dst, m|26), uint32(v))
	default:
		return binary.BigEndian.AppendUint64(append(dst, m|27), v)
	}
}

// Scanner reads a message of a known fixed shape strictly: every head must be in its
// shortest form and of the expected major type, and End rejects trailing bytes. Errors wrap
// ErrMalformed, ErrNonCanonical or ErrTrailingBytes, as Unmarshal's do.
type Scanner struct {
	data []byte
	off  int
}

// NewScanner returns a Scanner over data; it keeps (and returns slices of) data.
func NewScanner(data []byte) *Scanner { return &Scanner{data: data} }

// Reset makes s scan data from its start, as NewScanner(data) would.
func (s *Scanner) Reset(data []byte) { *s = Scanner{data: data} }

func (s *Scanner) malformed(format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d: %s", ErrMalformed, s.off, fmt.Sprintf(format, args...))
}

// head reads the head of an item of major type want, in its shortest form.
func (s *Scanner) head(want byte) (uint64, error) {
	if m, ok := s.PeekMajor(); ok && m != want {
		return 0, s.malformed("major type %d, want %d", m, want)
	}
	_, arg, err := s.Head()
	return arg, err
}

// Head reads the head of the next item, of any major type, in its shortest form, and
// returns its major type and argument. The item's content (a string's bytes, an array's
// elements) is what follows.
func (s *Scanner) Head() (major byte, arg uint64, err error) {
	major, _, arg, next, err := readHead(s.data, s.off, true)
	if err != nil {
		return 0, 0, err
	}
	s.off = next
	return major, arg, nil
}

// PeekMajor returns the major type of the next item without consuming it; false at the end
// of the data.
func (s *Scanner) PeekMajor() (byte, bool) {
	if s.off >= len(s.data) {
		return 0, false
	}
	return s.data[s.off] >> 5, true
}

// ArrayLen reads the head of an array of any length and returns the length.
func (s *Scanner) ArrayLen() (uint64, error) { return s.head(majorArray) }

// Offset is how many bytes were scanned so far.
func (s *Scanner) Offset() int { return s.off }

// ArrayHead reads the head of an array that must have exactly n elements.
func (s *Scanner) ArrayHead(n int) error {
	got, err := s.head(majorArray)
	if err != nil {
		return err
	}
	if got != uint64(n) {
		return s.malformed("array of %d elements, want %d", got, n)
	}
	return nil
}

// Uint reads an unsigned integer.
func (s *Scanner) Uint() (uint64, error) { return s.head(majorUint) }

// Bytes reads a byte string and returns it as a slice of the scanned data; null reads as
// nil, as Unmarshal reads it into a []byte.
func (s *Scanner) Bytes() ([]byte, error) {
	if s.off < len(s.data) && s.data[s.off] == cborNull {
		s.off++
		return nil, nil
	}
	n, err := s.head(majorBytes)
	if err != nil {
		return nil, err
	}
	if n > uint64(len(s.data)-s.off) {
		return nil, s.malformed("byte string of %d bytes with %d left", n, len(s.data)-s.off)
	}
	b := s.data[s.off : s.off+int(n) : s.off+int(n)]
	s.off += int(n)
	return b, nil
}

// Rest returns the bytes not scanned yet, without consuming them.
func (s *Scanner) Rest() []byte { return s.data[s.off:] }

// End reports an error unless every byte was scanned.
func (s *Scanner) End() error {
	if s.off != len(s.data) {
		return fmt.Errorf("%w: %d bytes after the item", ErrTrailingBytes, len(s.data)-s.off)
	}
	return nil
}
