package codec

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"testing"
)

type pair struct {
	_ struct{} `cbor:",toarray"`
	A uint64
	B []byte
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMarshalIsDeterministic(t *testing.T) {
	m := map[string]uint64{"b": 2, "a": 1, "aa": 3}
	got, err := Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	// Core deterministic: keys sorted bytewise by encoding, "a" < "b" < "aa" (shorter first
	// because the length is in the head byte).
	want := mustHex(t, "a3616101616202626161"+"03")
	if !bytes.Equal(got, want) {
		t.Fatalf("got %x want %x", got, want)
	}
	if err := CheckCanonical(got); err != nil {
		t.Fatalf("own encoding not canonical: %v", err)
	}
}

func TestCheckCanonical(t *testing.T) {
	cases := []struct {
		name string
		hex  string
		want error
	}{
		{"uint small", "17", nil},
		{"uint 24 one byte", "1818", nil},
		{"uint 23 in one extra byte", "1817", ErrNonCanonical},
		{"uint 255 in two bytes", "1900ff", ErrNonCanonical},
		{"uint 65535 in four bytes", "1a0000ffff", ErrNonCanonical},
		{"uint in eight bytes", "1b00000000ffffffff", ErrNonCanonical},
		{"bytes len non-minimal", "580101", ErrNonCanonical},
		{"indefinite bytes", "5f41014102ff", ErrNonCanonical},
		{"indefinite array", "9f01ff", ErrNonCanonical},
		{"map sorted", "a2616101616202", nil},
		{"map unsorted", "a2616202616101", ErrNonCanonical},
		{"map duplicate key", "a2616101616102", ErrMalformed},
		{"float16", "f93c00", nil},
		{"float32 fits float16", "fa3f800000", ErrNonCanonical},
		{"float64 fits float32", "fb3ff0000000000000", ErrNonCanonical},
		{"float64 needed", "fb3ff199999999999a", nil},
		{"NaN float32", "fa7fc00000", ErrNonCanonical},
		{"simple value under 32 in two bytes", "f810", ErrMalformed},
		{"reserved ai", "1c", ErrMalformed},
		{"truncated string", "4301", ErrMalformed},
		{"truncated head", "19", ErrMalformed},
		{"array count beyond input", "9a7fffffff", ErrMalformed},
		{"invalid utf8", "62c328", ErrMalformed},
		{"trailing bytes", "0101", ErrTrailingBytes},
		{"empty", "", ErrMalformed},
		{"tag", "c11a514b67b0", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckCanonical(mustHex(t, c.hex))
			if c.want == nil && err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

func TestNestingLimit(t *testing.T) {
	deep := append(bytes.Repeat([]byte{0x81}, MaxNesting+1), 0x01)
	if err := CheckCanonical(deep); !errors.Is(err, ErrMalformed) {
		t.Fatalf("got %v, want ErrMalformed", err)
	}
	ok := append(bytes.Repeat([]byte{0x81}, MaxNesting), 0x01)
	if err := CheckCanonical(ok); err != nil {
		t.Fatalf("nesting at the limit rejected: %v", err)
	}
}

func TestUnmarshalStrict(t *testing.T) {
	good, err := Marshal(pair{A: 7, B: []byte{1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	var p pair
	if err := Unmarshal(good, &p); err != nil || p.A != 7 || !bytes.Equal(p.B, []byte{1, 2}) {
		t.Fatalf("round trip: %v %+v", err, p)
	}
	if err := Unmarshal(append(good, 0), &p); !errors.Is(err, ErrTrailingBytes) {
		t.Fatalf("trailing: got %v", err)
	}
	threeFields := mustHex(t, "83074201020f")
	if err := Unmarshal(threeFields, &p); !errors.Is(err, ErrMalformed) {
		t.Fatalf("wrong field count: got %v", err)
	}
	wrongType := mustHex(t, "82614101")
	if err := Unmarshal(wrongType, &p); !errors.Is(err, ErrMalformed) {
		t.Fatalf("wrong type: got %v", err)
	}
	if err := Unmarshal([]byte{0xf6}, &p); !errors.Is(err, ErrMalformed) {
		t.Fatalf("null into a struct: got %v", err)
	}
	var raw RawMessage
	if err := Unmarshal([]byte{0xf6}, &raw); err != nil {
		t.Fatalf("null into RawMessage: %v", err)
	}
	nonCanonical := mustHex(t, "821807420102") // 7 in a one-byte argument
	if err := Unmarshal(nonCanonical, &p); !errors.Is(err, ErrNonCanonical) {
		t.Fatalf("non-canonical: got %v", err)
	}
	if err := UnmarshalLenient(nonCanonical, &p); err != nil || p.A != 7 {
		t.Fatalf("lenient: %v %+v", err, p)
	}
}

func TestTagged(t *testing.T) {
	b, err := MarshalTagged(3, pair{A: 1})
	if err != nil {
		t.Fatal(err)
	}
	tg, err := UnmarshalTagged(b)
	if err != nil || tg.Kind != 3 {
		t.Fatalf("tagged: %v %+v", err, tg)
	}
	var p pair
	if err := Unmarshal(tg.Body, &p); err != nil || p.A != 1 {
		t.Fatalf("body: %v %+v", err, p)
	}
}

func TestFrames(t *testing.T) {
	for _, buffered := range []bool{false, true} {
		testFrames(t, buffered)
	}
}

func testFrames(t *testing.T, buffered bool) {
	var buf bytes.Buffer
	var out io.Writer = &buf
	bw := bufio.NewWriterSize(&buf, 64) // smaller than the frames: they pass through
	if buffered {
		out = bw
	}
	w := NewWriter(out, 1024)
	for i := uint64(0); i < 3; i++ {
		if err := w.Encode(pair{A: i, B: bytes.Repeat([]byte{byte(i)}, int(i)*100)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WriteFrame(make([]byte, 1025)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized write: %v", err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	r := NewReader(&buf, 1024)
	for i := uint64(0); i < 3; i++ {
		var p pair
		if err := r.Decode(&p); err != nil || p.A != i || len(p.B) != int(i)*100 {
			t.Fatalf("frame %d: %v %+v", i, err, p)
		}
	}
	if _, err := r.ReadFrame(); err != io.EOF {
		t.Fatalf("clean end: got %v, want io.EOF", err)
	}
}

func TestFrameErrors(t *testing.T) {
	huge := binary.AppendUvarint(nil, math.MaxUint64)
	cases := []struct {
		name  string
		input []byte
		want  error
	}{
		{"announced above limit", binary.AppendUvarint(nil, 101), ErrFrameTooLarge},
		{"max uint64 length", huge, ErrFrameTooLarge},
		{"truncated prefix", []byte{0x80}, ErrTruncated},
		{"truncated body", append(binary.AppendUvarint(nil, 10), 1, 2, 3), ErrTruncated},
		{"non-minimal prefix", []byte{0x81, 0x00, 0x01}, ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewReader(bytes.NewReader(c.input), 100).ReadFrame()
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

// A peer announcing the maximum frame and then sending a few bytes must not make the reader
// allocate the whole announced size.
func TestReaderAllocatesOnlyWhatArrives(t *testing.T) {
	const limit = 64 << 20
	input := append(binary.AppendUvarint(nil, limit), 1, 2, 3)
	r := NewReader(bytes.NewReader(input), limit)
	if _, err := r.ReadFrame(); !errors.Is(err, ErrTruncated) {
		t.Fatalf("got %v", err)
	}
	if grew := cap(r.buf); grew > 2*growStep {
		t.Fatalf("reader reserved %d bytes for 3 received", grew)
	}
}
