// Package lfnet is a library for local-first, peer-to-peer applications on libp2p: nodes
// subscribe to topics, confidentially find other nodes interested in the same topics,
// exchange ephemeral messages over gossip, and converge on persisted data through a
// pluggable sync protocol, with a default sync for signed append-only logs that is
// byte-compatible with p2panda-core operations.
//
// The packages, from the bottom up:
//
//   - codec: deterministic CBOR and length-prefixed framing with limits;
//   - topics: topic ids and the key derivation every subsystem uses;
//   - host: the libp2p host, network id, address book, bootstrap, mDNS, gating;
//   - membership: HyParView overlays per topic (a pure state machine plus its driver);
//   - syncproto/logsync: append-only log operations, stores and their sync.
package lfnet
