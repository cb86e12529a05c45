// Package syncproto is lfnet's data-type-agnostic sync layer: a topic handshake that never
// puts the raw topic on the wire, the Protocol and Manager interfaces that a data type
// implements, and a per-topic coordinator that runs exactly one session per neighbour.
//
// The coordinator's decisions (when to start a session, which of two simultaneous
// initiations wins, when to retry or re-sync) live in a pure state machine, Coordinator,
// driven by membership events and session outcomes; Service is the thin driver that maps its
// actions onto libp2p streams on protocol /lfnet/<net>/sync/1.
//
// A session on the wire: the initiator opens a stream and runs the handshake
// (Hello{nonce}, Hello{nonce}, Auth{mac}, Verdict{accept}); the MAC is a blake3 keyed hash
// under Derive(topic, "sync-auth") over both nonces and both node ids, so the acceptor learns
// which of its own topics the initiator means and nobody else learns anything. After an
// accepting verdict the stream belongs to the data type's Protocol.
package syncproto
