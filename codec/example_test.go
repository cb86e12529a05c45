package codec_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/lfnet/lfnet/codec"
)

// hello is a message as lfnet's protocols define them: a struct with CBOR field numbers.
type hello struct {
	Name  string `cbor:"1,keyasint"`
	Topic []byte `cbor:"2,keyasint"`
}

// Example frames canonical CBOR messages on a stream and reads them back; a reader rejects
// frames above its limit, so a peer cannot make it allocate more.
func Example() {
	var stream bytes.Buffer
	w := codec.NewWriter(&stream, 1024)
	if err := w.Encode(hello{Name: "alice", Topic: []byte{1, 2, 3}}); err != nil {
		panic(err)
	}
	if err := w.WriteFrame([]byte("raw payload")); err != nil {
		panic(err)
	}

	r := codec.NewReader(&stream, 1024)
	var h hello
	if err := r.Decode(&h); err != nil {
		panic(err)
	}
	fmt.Println(h.Name, h.Topic)
	frame, err := r.ReadFrame()
	if err != nil {
		panic(err)
	}
	fmt.Println(string(frame))
	_, err = r.ReadFrame()
	fmt.Println(errors.Is(err, io.EOF))

	// A frame over the reader's limit is refused before it is read.
	big := codec.NewWriter(&stream, 1<<20)
	if err := big.WriteFrame(make([]byte, 4096)); err != nil {
		panic(err)
	}
	_, err = codec.NewReader(&stream, 1024).ReadFrame()
	fmt.Println(errors.Is(err, codec.ErrFrameTooLarge))
	// Output:
	// alice [1 2 3]
	// raw payload
	// true
	// true
}
