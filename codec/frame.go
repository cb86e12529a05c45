package codec

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Default maximum frame sizes per protocol family (DESIGN.md section 2).
const (
	MaxFrameSync       = 1 << 20
	MaxFrameMembership = 64 << 10
	MaxFrameDiscovery  = 64 << 10
	MaxFrameHandshake  = 4 << 10
)

// growStep bounds how much a Reader allocates ahead of bytes actually received.
const growStep = 64 << 10

// Reader reads length-prefixed frames from a stream. It is not safe for concurrent use.
type Reader struct {
	r     *bufio.Reader
	limit int
	buf   []byte
}

// NewReader returns a Reader that rejects frames longer than maxFrame bytes.
func NewReader(r io.Reader, maxFrame int) *Reader {
	if maxFrame <= 0 {
		panic("codec: NewReader with non-positive maxFrame")
	}
	return &Reader{r: bufio.NewReaderSize(r, 4096), limit: maxFrame}
}

// SetMaxFrame changes the limit for the frames that follow, for protocols whose first
// phase (a handshake) allows smaller frames than the rest of the stream.
func (r *Reader) SetMaxFrame(maxFrame int) {
	if maxFrame <= 0 {
		panic("codec: SetMaxFrame with non-positive maxFrame")
	}
	r.limit = maxFrame
}

// ReadFrame returns the next frame's bytes. The slice is valid until the next call. At a
// clean end of stream (between frames) it returns io.EOF.
func (r *Reader) ReadFrame() ([]byte, error) {
	n, err := r.readLength()
	if err != nil {
		return nil, err
	}
	r.buf = r.buf[:0]
	for len(r.buf) < n {
		start := len(r.buf)
		r.buf = append(r.buf, make([]byte, min(n-start, growStep))...)
		if _, err := io.ReadFull(r.r, r.buf[start:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, fmt.Errorf("%w: %d of %d bytes", ErrTruncated, start, n)
			}
			return nil, fmt.Errorf("codec: read frame body: %w", err)
		}
	}
	return r.buf, nil
}

// readLength reads the unsigned varint length prefix, rejecting it as soon as it exceeds
// the limit and accepting only its shortest encoding.
func (r *Reader) readLength() (int, error) {
	var n uint64
	for i := 0; i < binary.MaxVarintLen64; i++ {
		b, err := r.r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				if i == 0 {
					return 0, io.EOF
				}
				return 0, fmt.Errorf("%w: inside length prefix", ErrTruncated)
			}
			return 0, fmt.Errorf("codec: read length prefix: %w", err)
		}
		n |= uint64(b&0x7f) << (7 * i)
		if n > uint64(r.limit) {
			return 0, fmt.Errorf("%w: more than %d bytes announced", ErrFrameTooLarge, r.limit)
		}
		if b < 0x80 {
			if b == 0 && i > 0 {
				return 0, fmt.Errorf("%w: length prefix not in shortest form", ErrMalformed)
			}
			return int(n), nil
		}
	}
	return 0, fmt.Errorf("%w: length prefix too long", ErrMalformed)
}

// Decode reads the next frame and strictly decodes it into v (see Unmarshal).
func (r *Reader) Decode(v any) error {
	b, err := r.ReadFrame()
	if err != nil {
		return err
	}
	return Unmarshal(b, v)
}

// Writer writes length-prefixed frames. It is not safe for concurrent use.
type Writer struct {
	w     io.Writer
	limit int
	buf   []byte
}

// NewWriter returns a Writer that refuses to send frames longer than maxFrame bytes, so a
// local bug surfaces here rather than as a peer hanging up.
func NewWriter(w io.Writer, maxFrame int) *Writer {
	if maxFrame <= 0 {
		panic("codec: NewWriter with non-positive maxFrame")
	}
	return &Writer{w: w, limit: maxFrame}
}

// WriteFrame writes payload as one frame with a single Write call. Over a *bufio.Writer,
// which coalesces writes anyway, it writes the length prefix and the payload separately
// instead of copying the payload behind the prefix first.
func (w *Writer) WriteFrame(payload []byte) error {
	if len(payload) > w.limit {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, len(payload), w.limit)
	}
	w.buf = binary.AppendUvarint(w.buf[:0], uint64(len(payload)))
	if bw, ok := w.w.(*bufio.Writer); ok {
		if _, err := bw.Write(w.buf); err != nil {
			return fmt.Errorf("codec: write frame: %w", err)
		}
		if _, err := bw.Write(payload); err != nil {
			return fmt.Errorf("codec: write frame: %w", err)
		}
		return nil
	}
	w.buf = append(w.buf, payload...)
	if _, err := w.w.Write(w.buf); err != nil {
		return fmt.Errorf("codec: write frame: %w", err)
	}
	return nil
}

// SetMaxFrame changes the limit for the frames that follow.
func (w *Writer) SetMaxFrame(maxFrame int) {
	if maxFrame <= 0 {
		panic("codec: SetMaxFrame with non-positive maxFrame")
	}
	w.limit = maxFrame
}

// Encode marshals v deterministically and writes it as one frame.
func (w *Writer) Encode(v any) error {
	b, err := Marshal(v)
	if err != nil {
		return err
	}
	return w.WriteFrame(b)
}
