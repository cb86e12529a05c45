package codec

import (
	"bytes"
	"errors"
	"math"
	"testing"
)

// handMsg has the shape the hand encoder and Scanner are for: unsigned integers and byte
// strings in an array.
type handMsg struct {
	_    struct{} `cbor:",toarray"`
	N    uint64
	Data []byte
}

func appendHandMsg(dst []byte, m handMsg) []byte {
	dst = AppendArrayHead(dst, 2)
	dst = AppendUint(dst, m.N)
	return AppendBytes(dst, m.Data)
}

func scanHandMsg(b []byte) (handMsg, error) {
	var m handMsg
	s := NewScanner(b)
	if err := s.ArrayHead(2); err != nil {
		return m, err
	}
	var err error
	if m.N, err = s.Uint(); err != nil {
		return m, err
	}
	if m.Data, err = s.Bytes(); err != nil {
		return m, err
	}
	return m, s.End()
}

func TestHandEncodingMatchesMarshal(t *testing.T) {
	for _, n := range []uint64{0, 23, 24, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxUint64} {
		for _, size := range []int{-1, 0, 23, 24, 255, 256, 70000} {
			m := handMsg{N: n, Data: []byte{}}
			if size < 0 {
				m.Data = nil // encoded as null, as Marshal does
			} else {
				m.Data = bytes.Repeat([]byte{7}, size)
			}
			want, err := Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			got := appendHandMsg(nil, m)
			if !bytes.Equal(got, want) {
				t.Fatalf("n=%d size=%d: hand encoding %x, Marshal %x", n, size, got[:min(len(got), 16)], want[:min(len(want), 16)])
			}
			back, err := scanHandMsg(got)
			if err != nil || back.N != n || !bytes.Equal(back.Data, m.Data) {
				t.Fatalf("n=%d size=%d: scan: %v", n, size, err)
			}
			if (back.Data == nil) != (m.Data == nil) {
				t.Fatalf("n=%d size=%d: nil-ness of the byte string changed", n, size)
			}
			if size > 0 && &back.Data[0] != &got[len(got)-size] {
				t.Fatal("Scanner copied a byte string instead of aliasing the input")
			}
		}
	}
}

func TestScannerRejectsEveryOtherEncoding(t *testing.T) {
	cases := []struct {
		name string
		hex  string
		want error
	}{
		{"uint in two bytes", "82180541aa", ErrNonCanonical},
		{"uint16 that fits a byte", "8219000541aa", ErrNonCanonical},
		{"length not shortest", "820558010a", ErrNonCanonical},
		{"indefinite byte string", "82055f41aaff", ErrNonCanonical},
		{"indefinite array", "9f0541aaff", ErrNonCanonical},
		{"wrong array length", "830541aa01", ErrMalformed},
		{"text instead of bytes", "820561aa", ErrMalformed},
		{"negative int", "822041aa", ErrMalformed},
		{"undefined instead of bytes", "8205f7", ErrMalformed},
		{"tagged bytes", "8205c241aa", ErrMalformed},
		{"truncated string", "820542aa", ErrMalformed},
		{"truncated head", "821a0001", ErrMalformed},
		{"reserved info", "821c", ErrMalformed},
		{"trailing byte", "820541aa00", ErrTrailingBytes},
		{"empty", "", ErrMalformed},
	}
	for _, c := range cases {
		_, err := scanHandMsg(mustHex(t, c.hex))
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		// The reflection codec refuses the same bytes.
		var m handMsg
		if Unmarshal(mustHex(t, c.hex), &m) == nil {
			t.Errorf("%s: Unmarshal accepts what the Scanner rejects", c.name)
		}
	}
}

// FuzzScanner: the Scanner accepts exactly what Unmarshal accepts for the same shape, with
// the same values, and never panics.
func FuzzScanner(f *testing.F) {
	f.Add(appendHandMsg(nil, handMsg{N: 300, Data: []byte("abc")}))
	f.Add(mustHex(f, "82180541aa"))
	f.Add(mustHex(f, "82055f41aaff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, scanErr := scanHandMsg(data)
		var want handMsg
		refErr := Unmarshal(data, &want)
		if (scanErr == nil) != (refErr == nil) {
			t.Fatalf("scanner error %v, Unmarshal error %v", scanErr, refErr)
		}
		if scanErr == nil && (got.N != want.N || !bytes.Equal(got.Data, want.Data) || (got.Data == nil) != (want.Data == nil)) {
			t.Fatalf("scanner read %+v, Unmarshal %+v", got, want)
		}
	})
}
