package codec

import (
	"encoding/binary"
	"fmt"
	"math"
)

// readHead reads the CBOR head (initial byte and argument) at data[off:] and returns the
// major type, the additional information, the argument and the offset after the head. It
// is the package's only head parser: CheckCanonical's walker and Scanner both use it.
//
// It never reads past data and rejects reserved additional information (28-30). An
// indefinite length (31) is ErrNonCanonical when canonical is set and ErrMalformed
// otherwise; with canonical set, an argument not in its shortest form is ErrNonCanonical
// too, except for major type 7, whose additional information picks a float width instead.
func readHead(data []byte, off int, canonical bool) (major, ai byte, arg uint64, next int, err error) {
	if off >= len(data) {
		return 0, 0, 0, off, headError(ErrMalformed, off, "unexpected end of data")
	}
	ib := data[off]
	major, ai = ib>>5, ib&0x1f
	var n int
	switch {
	case ai < 24:
		return major, ai, uint64(ai), off + 1, nil
	case ai == 24:
		n = 1
	case ai == 25:
		n = 2
	case ai == 26:
		n = 4
	case ai == 27:
		n = 8
	case ai == 31:
		if canonical {
			return 0, 0, 0, off, headError(ErrNonCanonical, off, "indefinite length")
		}
		return 0, 0, 0, off, headError(ErrMalformed, off, "indefinite lengths are not accepted")
	default:
		return 0, 0, 0, off, headError(ErrMalformed, off, "reserved additional information %d", ai)
	}
	if len(data)-off-1 < n {
		return 0, 0, 0, off, headError(ErrMalformed, off, "truncated head")
	}
	b := data[off+1 : off+1+n]
	switch n {
	case 1:
		arg = uint64(b[0])
	case 2:
		arg = uint64(binary.BigEndian.Uint16(b))
	case 4:
		arg = uint64(binary.BigEndian.Uint32(b))
	default:
		arg = binary.BigEndian.Uint64(b)
	}
	if canonical && major != 7 && HeadLen(arg) != 1+n {
		return 0, 0, 0, off, headError(ErrNonCanonical, off, "argument %d not in its shortest form", arg)
	}
	return major, ai, arg, off + 1 + n, nil
}

func headError(kind error, off int, format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d: %s", kind, off, fmt.Sprintf(format, args...))
}

// HeadLen is the encoded size of a head (of any major type) with argument v.
func HeadLen(v uint64) int {
	switch {
	case v < 24:
		return 1
	case v <= math.MaxUint8:
		return 2
	case v <= math.MaxUint16:
		return 3
	case v <= math.MaxUint32:
		return 5
	default:
		return 9
	}
}
