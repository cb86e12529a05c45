package logsync

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/lfnet/lfnet/codec"
	"github.com/zeebo/blake3"
)

// Version is the only header version this package reads and writes.
const Version = 1

// Hash is a blake3 digest: an operation id, a payload hash or a backlink.
type Hash [32]byte

// HashOf returns the blake3 hash of b.
func HashOf(b []byte) Hash { return Hash(blake3.Sum256(b)) }

// String returns the hash in hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// PublicKey is an author's ed25519 verifying key. It is an array so that it can key maps.
type PublicKey [ed25519.PublicKeySize]byte

// String returns the key in hex.
func (k PublicKey) String() string { return hex.EncodeToString(k[:]) }

// PublicKeyOf returns the public key of an ed25519 private key.
func PublicKeyOf(priv ed25519.PrivateKey) PublicKey {
	return PublicKey(priv.Public().(ed25519.PublicKey))
}

// Signature is an ed25519 signature.
type Signature [ed25519.SignatureSize]byte

// Header is a p2panda-core v1 operation header.
//
// PayloadHash and Backlink are encoded exactly when they are non-nil; a valid header has
// PayloadHash iff PayloadSize > 0 and Backlink iff SeqNum > 0 (NewOperation and
// DecodeOperation guarantee it). Extensions holds one canonical CBOR item, kept byte for
// byte; nil stands for CBOR null, the value p2panda writes when there are no extensions.
type Header struct {
	Version     uint64
	PublicKey   PublicKey
	Signature   Signature
	PayloadSize uint64
	PayloadHash *Hash
	Timestamp   uint64 // microseconds since the Unix epoch
	SeqNum      uint64
	Backlink    *Hash
	Extensions  codec.RawMessage
}

// CBOR heads used by the hand-written encoder and parser. The header's shape depends on
// which optional elements are present, so a struct codec does not fit it.
const (
	cborNull        = 0xf6
	cborArrayOf0    = 0x80
	headBstr32      = 0x58 // byte string, one-byte length follows
	fixedPrefixLen  = 1 + 1 + 2 + ed25519.PublicKeySize
	signatureElemSz = 2 + ed25519.SignatureSize
	minFieldCount   = 7
	maxFieldCount   = 9
)

// Encode returns the header's canonical CBOR bytes, signature included. It does not check
// the header: one made by NewOperation, Sign or DecodeOperation encodes to valid bytes.
func (h *Header) Encode() []byte {
	return h.appendEncoding(make([]byte, 0, h.encodedLen(true)), true)
}

// SigningBytes returns the bytes the signature covers: the header array without its
// signature element.
func (h *Header) SigningBytes() []byte {
	return h.appendEncoding(make([]byte, 0, h.encodedLen(false)), false)
}

// Sign sets the header's public key to priv's and signs the header. It validates only what
// encoding needs (a canonical extensions item); consistency of the other fields is
// DecodeOperation's business, so that tests can sign deliberately bad headers.
func (h *Header) Sign(priv ed25519.PrivateKey) error {
	if len(priv) != ed25519.PrivateKeySize {
		return fmt.Errorf("logsync: sign: private key of %d bytes", len(priv))
	}
	if len(h.Extensions) > 0 {
		if err := codec.CheckCanonical(h.Extensions); err != nil {
			return fmt.Errorf("logsync: sign: extensions: %w", err)
		}
	}
	h.PublicKey = PublicKeyOf(priv)
	h.Signature = Signature(ed25519.Sign(priv, h.SigningBytes()))
	return nil
}

func (h *Header) fieldCount(withSignature bool) int {
	n := 6 // version, public key, payload size, timestamp, seq num, extensions
	if withSignature {
		n++
	}
	if h.PayloadHash != nil {
		n++
	}
	if h.Backlink != nil {
		n++
	}
	return n
}

func (h *Header) encodedLen(withSignature bool) int {
	n := 1 + codec.HeadLen(h.Version) + 2 + len(h.PublicKey) + codec.HeadLen(h.PayloadSize) +
		codec.HeadLen(h.Timestamp) + codec.HeadLen(h.SeqNum) + 1
	if withSignature {
		n += signatureElemSz
	}
	if h.PayloadHash != nil {
		n += 2 + len(h.PayloadHash)
	}
	if h.Backlink != nil {
		n += 2 + len(h.Backlink)
	}
	if len(h.Extensions) > 0 {
		n += len(h.Extensions) - 1
	}
	return n
}

func (h *Header) appendEncoding(dst []byte, withSignature bool) []byte {
	dst = append(dst, cborArrayOf0|byte(h.fieldCount(withSignature)))
	dst = codec.AppendUint(dst, h.Version)
	dst = appendBstr(dst, h.PublicKey[:])
	if withSignature {
		dst = appendBstr(dst, h.Signature[:])
	}
	dst = codec.AppendUint(dst, h.PayloadSize)
	if h.PayloadHash != nil {
		dst = appendBstr(dst, h.PayloadHash[:])
	}
	dst = codec.AppendUint(dst, h.Timestamp)
	dst = codec.AppendUint(dst, h.SeqNum)
	if h.Backlink != nil {
		dst = appendBstr(dst, h.Backlink[:])
	}
	if len(h.Extensions) == 0 {
		return append(dst, cborNull)
	}
	return append(dst, h.Extensions...)
}

// appendBstr appends a byte string of 32 or 64 bytes (the only ones a header holds).
func appendBstr(dst, b []byte) []byte {
	return append(append(dst, headBstr32, byte(len(b))), b...)
}

// Operation is a header with its body. Treat it as read-only: its id and encoded bytes are
// computed once, and stores rely on them matching Header.
type Operation struct {
	Header Header
	// Body is the payload; nil when the operation was decoded without one (header only).
	Body []byte

	hash        Hash
	headerBytes []byte
	// Storage for Header's pointer fields, so decoding allocates them with the operation.
	payloadHash, backlink Hash
	// entry, when set, is the operation already laid out as a BoltStore entry value, with
	// headerBytes and Body inside it; a received operation is read straight into this
	// layout so that storing it copies nothing.
	entry []byte
}

// Hash returns the operation id: blake3 of the signed header bytes.
func (o *Operation) Hash() Hash { return o.hash }

// HeaderBytes returns the signed header bytes as they travel and are hashed. The caller
// must not modify them.
func (o *Operation) HeaderBytes() []byte { return o.headerBytes }

// Log returns the reference of the log this operation belongs to, given its log id (which
// lives outside the header).
func (o *Operation) Log(logID uint64) LogRef {
	return LogRef{Author: o.Header.PublicKey, LogID: logID}
}

// encodedSize is what stores count as an operation's size: header plus body bytes.
func (o *Operation) encodedSize() uint64 {
	return uint64(len(o.headerBytes)) + uint64(len(o.Body))
}

// NewOperation signs a new operation that appends body to a log. prev is the log's latest
// operation, or nil to start a log at seq 0; it must be by the same author. timestamp is in
// microseconds (callers inject their clock). extensions is nil or one canonical CBOR item.
func NewOperation(priv ed25519.PrivateKey, prev *Operation, body []byte, extensions codec.RawMessage, timestamp uint64) (*Operation, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("logsync: new operation: private key of %d bytes", len(priv))
	}
	op := &Operation{Body: body}
	h := &op.Header
	h.Version = Version
	h.Timestamp = timestamp
	h.PayloadSize = uint64(len(body))
	if len(body) > 0 {
		op.payloadHash = HashOf(body)
		h.PayloadHash = &op.payloadHash
	}
	if prev != nil {
		if prev.Header.PublicKey != PublicKeyOf(priv) {
			return nil, fmt.Errorf("logsync: new operation: previous operation is by %s, not the signer", prev.Header.PublicKey)
		}
		h.SeqNum = prev.Header.SeqNum + 1
		op.backlink = prev.hash
		h.Backlink = &op.backlink
	}
	// A null item is how "no extensions" is encoded; keeping it as nil makes a new
	// operation's Header equal to its decoded form.
	if len(extensions) > 0 && !(len(extensions) == 1 && extensions[0] == cborNull) {
		h.Extensions = append(codec.RawMessage(nil), extensions...)
	}
	if err := h.Sign(priv); err != nil {
		return nil, err
	}
	op.headerBytes = h.Encode()
	op.hash = HashOf(op.headerBytes)
	return op, nil
}

// DecodeOperation strictly decodes and verifies an operation from its header bytes and its
// body. A nil body means header only: the body check is skipped, but the header's own size
// and hash fields are still checked for consistency. The checks, each with its own error:
// canonical CBOR (ErrNonCanonical, ErrMalformed), nothing after the header
// (ErrTrailingBytes), version 1 (ErrVersion), a possible field count (ErrFieldCount),
// payload size/hash consistency (ErrPayloadMismatch), seq num/backlink consistency
// (ErrSeqBacklink), the signature (ErrSignature) and the body against size and hash
// (ErrBodyMismatch).
//
// DecodeOperation copies what it keeps; header and body may be reused after it returns.
func DecodeOperation(header, body []byte) (*Operation, error) {
	// One allocation holds the operation's copy of both header and body.
	buf := make([]byte, len(header)+len(body))
	copy(buf, header)
	copy(buf[len(header):], body)
	var ownBody []byte
	if body != nil {
		ownBody = buf[len(header):]
	}
	return decodeOwned(buf[:len(header):len(header)], ownBody)
}

// decodeOwned is DecodeOperation for buffers the caller hands over: the operation keeps
// header and body without copying them, so nothing may modify them afterwards. The session
// uses it for operations it has just received into buffers of their own.
func decodeOwned(header, body []byte) (*Operation, error) {
	if err := codec.CheckCanonical(header); err != nil {
		switch {
		case errors.Is(err, codec.ErrTrailingBytes):
			return nil, fmt.Errorf("%w: %w", ErrTrailingBytes, err)
		case errors.Is(err, codec.ErrNonCanonical):
			return nil, fmt.Errorf("%w: %w", ErrNonCanonical, err)
		default:
			return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
	}
	op := &Operation{headerBytes: header[:len(header):len(header)], Body: body}
	if err := parseHeader(op); err != nil {
		return nil, err
	}
	h := &op.Header
	if (h.PayloadHash != nil) != (h.PayloadSize > 0) {
		return nil, fmt.Errorf("%w: size %d, hash present %t", ErrPayloadMismatch, h.PayloadSize, h.PayloadHash != nil)
	}
	if (h.Backlink != nil) != (h.SeqNum > 0) {
		return nil, fmt.Errorf("%w: seq num %d, backlink present %t", ErrSeqBacklink, h.SeqNum, h.Backlink != nil)
	}
	if !verifySignature(op.headerBytes, h) {
		return nil, fmt.Errorf("%w: by %s", ErrSignature, h.PublicKey)
	}
	if op.Body != nil {
		if uint64(len(op.Body)) != h.PayloadSize {
			return nil, fmt.Errorf("%w: %d bytes, header says %d", ErrBodyMismatch, len(op.Body), h.PayloadSize)
		}
		if h.PayloadSize > 0 && HashOf(op.Body) != *h.PayloadHash {
			return nil, fmt.Errorf("%w: body hash differs from payload hash", ErrBodyMismatch)
		}
	}
	op.hash = HashOf(op.headerBytes)
	return op, nil
}

// verifySignature checks the signature over the header bytes minus the signature element.
// A canonical v1 header starts with a one-byte array head, the one-byte version and the
// 34-byte key element, so the signature element always sits at the same offset.
func verifySignature(headerBytes []byte, h *Header) bool {
	const sigStart = fixedPrefixLen
	const sigEnd = sigStart + signatureElemSz
	// A stack buffer keeps verification allocation-free for headers of ordinary size.
	var stack [512]byte
	msg := stack[:0]
	msg = append(msg, headerBytes[0]-1)
	msg = append(msg, headerBytes[1:sigStart]...)
	msg = append(msg, headerBytes[sigEnd:]...)
	return verifyEd25519(&h.PublicKey, msg, &h.Signature)
}

// headerParser reads the elements of a header with codec.Scanner, which checks every head
// for its expected type and shortest form; CheckCanonical has already accepted the whole
// header as one canonical item.
type headerParser struct {
	data  []byte
	sc    codec.Scanner
	ready bool
}

// scan returns the scanner over data, set up on first use, so that a headerParser is made
// as headerParser{data: header}.
func (p *headerParser) scan() *codec.Scanner {
	if !p.ready {
		p.sc.Reset(p.data)
		p.ready = true
	}
	return &p.sc
}

func (p *headerParser) malformed(format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d: %s", ErrMalformed, p.scan().Offset(), fmt.Sprintf(format, args...))
}

// head reads the next item's head, whatever its major type.
func (p *headerParser) head() (major byte, arg uint64, err error) {
	major, arg, err = p.scan().Head()
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return major, arg, nil
}

func (p *headerParser) uint(field string) (uint64, error) {
	v, err := p.scan().Uint()
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %w", ErrMalformed, field, err)
	}
	return v, nil
}

func (p *headerParser) bytes(field string, dst []byte) error {
	b, err := p.scan().Bytes()
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrMalformed, field, err)
	}
	if len(b) != len(dst) {
		return p.malformed("%s: want a byte string of %d bytes", field, len(dst))
	}
	copy(dst, b)
	return nil
}

// parseHeader fills op.Header from op.headerBytes. Which optional elements are present is
// read from the encoding itself (a byte string after the payload size is a payload hash;
// the array length tells whether a backlink precedes the extensions), so that a header
// whose fields disagree is reported as such rather than as a shape error.
func parseHeader(op *Operation) error {
	p := headerParser{data: op.headerBytes}
	h := &op.Header
	if m, ok := p.scan().PeekMajor(); ok && m != 4 {
		return p.malformed("header is CBOR major type %d, want an array", m)
	}
	count, err := p.scan().ArrayLen()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if count == 0 {
		return fmt.Errorf("%w: empty array", ErrFieldCount)
	}
	if h.Version, err = p.uint("version"); err != nil {
		return err
	}
	// The version comes first so that a future layout is reported as a version problem.
	if h.Version != Version {
		return fmt.Errorf("%w: %d", ErrVersion, h.Version)
	}
	if count < minFieldCount || count > maxFieldCount {
		return fmt.Errorf("%w: %d elements, a v1 header has %d to %d", ErrFieldCount, count, minFieldCount, maxFieldCount)
	}
	if err := p.bytes("public key", h.PublicKey[:]); err != nil {
		return err
	}
	if err := p.bytes("signature", h.Signature[:]); err != nil {
		return err
	}
	if h.PayloadSize, err = p.uint("payload size"); err != nil {
		return err
	}
	consumed := uint64(4)
	if m, ok := p.scan().PeekMajor(); ok && m == 2 {
		if err := p.bytes("payload hash", op.payloadHash[:]); err != nil {
			return err
		}
		h.PayloadHash = &op.payloadHash
		consumed++
	}
	if h.Timestamp, err = p.uint("timestamp"); err != nil {
		return err
	}
	if h.SeqNum, err = p.uint("seq num"); err != nil {
		return err
	}
	consumed += 2
	switch count - min(consumed, count) {
	case 1:
	case 2:
		if err := p.bytes("backlink", op.backlink[:]); err != nil {
			return err
		}
		h.Backlink = &op.backlink
	default:
		return fmt.Errorf("%w: %d elements do not fit the fields present", ErrFieldCount, count)
	}
	// The extensions item is the array's last element, so (the whole header being one
	// well-formed item) it runs to the end of the data.
	ext := p.scan().Rest()
	if len(ext) == 0 {
		return p.malformed("extensions missing")
	}
	if !(len(ext) == 1 && ext[0] == cborNull) {
		h.Extensions = codec.RawMessage(ext)
	}
	return nil
}

// decodeStored rebuilds an operation from bytes this package stored after full
// verification, skipping the signature and hash checks that dominate DecodeOperation's
// cost. header and body must not be modified afterwards.
func decodeStored(id Hash, header, body []byte) (*Operation, error) {
	op := &Operation{headerBytes: header, Body: body, hash: id}
	if len(header) < fixedPrefixLen+signatureElemSz {
		return nil, fmt.Errorf("%w: header of %d bytes", ErrCorrupt, len(header))
	}
	if err := parseHeader(op); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return op, nil
}
