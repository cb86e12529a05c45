package codec

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// RawMessage is an encoded CBOR item kept as bytes, for fields whose content another layer
// interprets (extensions, tagged message bodies).
type RawMessage = cbor.RawMessage

// MaxNesting bounds how deeply arrays and maps may nest in any message we decode, so that
// hostile input cannot exhaust the stack.
const MaxNesting = 32

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encOpts := cbor.CoreDetEncOptions()
	encMode, err = encOpts.EncMode()
	if err != nil {
		panic(fmt.Sprintf("codec: encoder options: %v", err))
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		MaxNestedLevels:   MaxNesting,
		MaxArrayElements:  1 << 20,
		MaxMapPairs:       1 << 20,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		UTF8:              cbor.UTF8RejectInvalid,
		FieldNameMatching: cbor.FieldNameMatchingCaseSensitive,
	}.DecMode()
	if err != nil {
		panic(fmt.Sprintf("codec: decoder options: %v", err))
	}
}

// Marshal encodes v in core deterministic CBOR.
func Marshal(v any) ([]byte, error) {
	b, err := encMode.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("codec: encode %T: %w", v, err)
	}
	return b, nil
}

// Unmarshal decodes exactly one canonical CBOR item from data into v. Input that is not
// canonical, has trailing bytes, or does not fit v's shape (wrong array length for a
// toarray struct, unknown fields, wrong types, a bare null for anything but *any or
// *RawMessage) is rejected.
//
// Beyond canonical form it requires that v re-encodes to exactly data, which rejects every
// leniency of the underlying decoder (a simple value read as an integer, a null read as an
// empty struct) with one rule: a message has one encoding, and we accept only that one.
func Unmarshal(data []byte, v any) error {
	if err := CheckCanonical(data); err != nil {
		return err
	}
	if err := unmarshalWellformed(data, v); err != nil {
		return err
	}
	again, err := encMode.Marshal(v)
	if err != nil {
		return fmt.Errorf("%w: re-encode %T: %v", ErrMalformed, v, err)
	}
	if !bytes.Equal(again, data) {
		return fmt.Errorf("%w: %T does not re-encode to the received bytes", ErrMalformed, v)
	}
	return nil
}

// UnmarshalLenient decodes one well-formed CBOR item without requiring canonical form. Use it
// only where no hash or signature covers the bytes and peers may run other encoders.
func UnmarshalLenient(data []byte, v any) error {
	if err := checkWellformed(data); err != nil {
		return err
	}
	return unmarshalWellformed(data, v)
}

func unmarshalWellformed(data []byte, v any) error {
	// fxamacker decodes a top-level null or undefined into any target as "leave it at its
	// zero value"; for a protocol message that would turn a one-byte frame into a valid,
	// empty message. Only targets that can represent "nothing" may receive it.
	if len(data) == 1 && (data[0] == 0xf6 || data[0] == 0xf7) {
		switch v.(type) {
		case *any, *RawMessage:
		default:
			return fmt.Errorf("%w: null where %T was expected", ErrMalformed, v)
		}
	}
	if err := decMode.Unmarshal(data, v); err != nil {
		var extra *cbor.ExtraneousDataError
		if errors.As(err, &extra) {
			return fmt.Errorf("%w: %v", ErrTrailingBytes, err)
		}
		return fmt.Errorf("%w: decode %T: %v", ErrMalformed, v, err)
	}
	return nil
}

// Tagged is the envelope every multi-message protocol uses: a CBOR array of the message
// kind and its body, so a receiver can dispatch on Kind and reject kinds it does not know.
type Tagged struct {
	_    struct{} `cbor:",toarray"`
	Kind uint64
	Body RawMessage
}

// MarshalTagged encodes body inside a Tagged envelope of the given kind.
func MarshalTagged(kind uint64, body any) ([]byte, error) {
	raw, err := Marshal(body)
	if err != nil {
		return nil, err
	}
	return Marshal(Tagged{Kind: kind, Body: raw})
}

// UnmarshalTagged decodes a Tagged envelope strictly; the body is checked canonical as part
// of the whole and is left for the caller to decode by kind.
func UnmarshalTagged(data []byte) (Tagged, error) {
	var t Tagged
	if err := Unmarshal(data, &t); err != nil {
		return Tagged{}, err
	}
	return t, nil
}
