// Package codec is lfnet's single wire encoding: deterministic CBOR (RFC 8949 core
// deterministic encoding) and length-prefixed frames over streams.
//
// Every lfnet protocol message is one CBOR item in one frame: an unsigned varint length
// followed by that many bytes. Readers enforce a per-stream maximum frame size and never
// allocate more than the bytes that actually arrived, so a peer cannot make a node reserve
// memory by announcing a large length. Decoding is strict: trailing bytes, indefinite
// lengths, duplicate map keys and non-canonical encodings are rejected with typed errors
// that can be tested with errors.Is.
package codec
