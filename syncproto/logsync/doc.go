// Package logsync is lfnet's append-only log data type: signed operations that are byte for
// byte p2panda-core v1 headers, and the stores that keep them.
//
// An Operation is a Header plus an optional body. The header is a canonical CBOR array
//
//	[version, public key, signature, payload size, payload hash?, timestamp, seq num,
//	 backlink?, extensions]
//
// where the payload hash is present exactly when the payload size is above zero and the
// backlink exactly when the seq num is above zero. The signature is ed25519 over the same
// array without the signature element; an operation's id (Hash) is blake3 of the signed
// header bytes. Because p2panda apps and lfnet apps hash and sign the same bytes, their logs
// are interchangeable.
//
// Each author keeps any number of logs, named by an application-chosen uint64 log id. A log
// is a chain: seq numbers 0, 1, 2, ... with each operation's backlink naming the previous
// one. Stores (LogStore, TopicStore; NewMemStore, NewBoltStore) only ever accept operations
// that extend such a chain, so nothing invalid lands in a store.
//
// A Manager runs the log sync protocol for one topic: sessions catch up with what a
// neighbour lacks and, in live mode, stay open. New operations then spread over the live
// sessions with Plumtree, one broadcast tree per author: in full along the tree's links,
// as ids along the others, so that each node receives each operation about once; a
// missing operation is fetched from a neighbour that announced it.
package logsync
