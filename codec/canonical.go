package codec

import (
	"bytes"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/x448/float16"
)

// CheckCanonical reports whether data is exactly one CBOR item in core deterministic
// encoding (RFC 8949 section 4.2.1): shortest heads, definite lengths only, map keys unique
// and sorted bytewise, floats in their shortest exact form. Hashes and signatures in lfnet
// cover encoded bytes, so only one encoding of a value may be accepted.
func CheckCanonical(data []byte) error {
	return walkItem(data, true)
}

func checkWellformed(data []byte) error {
	return walkItem(data, false)
}

func walkItem(data []byte, canonical bool) error {
	w := walker{data: data, canonical: canonical}
	if err := w.item(0); err != nil {
		return err
	}
	if w.off != len(data) {
		return fmt.Errorf("%w: %d bytes after the item", ErrTrailingBytes, len(data)-w.off)
	}
	return nil
}

type walker struct {
	data      []byte
	off       int
	canonical bool
}

func (w *walker) malformed(format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d: %s", ErrMalformed, w.off, fmt.Sprintf(format, args...))
}

func (w *walker) nonCanonical(format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d: %s", ErrNonCanonical, w.off, fmt.Sprintf(format, args...))
}

// head reads an item's initial byte and argument.
func (w *walker) head() (major byte, ai byte, arg uint64, err error) {
	major, ai, arg, w.off, err = readHead(w.data, w.off, w.canonical)
	return major, ai, arg, err
}

func (w *walker) remaining() uint64 { return uint64(len(w.data) - w.off) }

func (w *walker) item(depth int) error {
	if depth > MaxNesting {
		return w.malformed("nesting deeper than %d", MaxNesting)
	}
	major, ai, arg, err := w.head()
	if err != nil {
		return err
	}
	switch major {
	case 0, 1:
		return nil
	case 2, 3:
		if arg > w.remaining() {
			return w.malformed("string of %d bytes with %d left", arg, w.remaining())
		}
		s := w.data[w.off : w.off+int(arg)]
		w.off += int(arg)
		if major == 3 && !utf8.Valid(s) {
			return w.malformed("text string is not valid UTF-8")
		}
		return nil
	case 4:
		// Every item takes at least one byte, so a count beyond what is left is a lie; this
		// check also bounds the loop by the input size.
		if arg > w.remaining() {
			return w.malformed("array of %d items with %d bytes left", arg, w.remaining())
		}
		for i := uint64(0); i < arg; i++ {
			if err := w.item(depth + 1); err != nil {
				return err
			}
		}
		return nil
	case 5:
		if arg > w.remaining()/2 {
			return w.malformed("map of %d pairs with %d bytes left", arg, w.remaining())
		}
		var prevKey []byte
		for i := uint64(0); i < arg; i++ {
			start := w.off
			if err := w.item(depth + 1); err != nil {
				return err
			}
			key := w.data[start:w.off]
			if i > 0 {
				switch c := bytes.Compare(prevKey, key); {
				case c == 0:
					return w.malformed("duplicate map key")
				case c > 0 && w.canonical:
					return w.nonCanonical("map keys not sorted bytewise")
				}
			}
			prevKey = key
			if err := w.item(depth + 1); err != nil {
				return err
			}
		}
		return nil
	case 6:
		return w.item(depth + 1)
	default: // 7: simple values and floats
		return w.simpleOrFloat(ai, arg)
	}
}

func (w *walker) simpleOrFloat(ai byte, arg uint64) error {
	switch ai {
	case 24:
		if arg < 32 {
			return w.malformed("simple value %d in two bytes", arg)
		}
	case 26:
		if w.canonical {
			f := math.Float32frombits(uint32(arg))
			if float16.PrecisionFromfloat32(f) == float16.PrecisionExact || f != f {
				return w.nonCanonical("float32 that fits a float16")
			}
		}
	case 27:
		if w.canonical {
			f := math.Float64frombits(arg)
			if f != f || float64(float32(f)) == f {
				return w.nonCanonical("float64 that fits a smaller float")
			}
		}
	}
	return nil
}
