// Package host builds and runs the libp2p host of an lfnet node.
//
// New creates a host with lfnet's defaults; Attach adds lfnet to a libp2p host the
// application already owns. Either way the resulting Host provides:
//
//   - Identity: the node id is the node's ed25519 public key (a libp2p peer.ID), kept in
//     <data dir>/node.key with mode 0600, or ephemeral without a data directory.
//   - Network id: every lfnet protocol id has the form
//     /lfnet/<16 hex of blake3(network id)>/<name>/<version> (see ProtocolID), so nodes of
//     different networks never speak. A network secret additionally keeps strangers from
//     connecting at all (libp2p private networks; TCP and WebSocket only).
//   - Address book: per node the latest signed peer record, a bootstrap flag, the topics
//     learned through discovery and the contact history; persistent in bbolt, mirrored into
//     the libp2p peerstore, fed by identify, queryable by topic and watchable.
//   - Bootstrap nodes dialled at start and redialled with backoff, opt-in mDNS discovery on
//     the local network, allow and deny lists for connections, and (for always-on nodes
//     such as cmd/lfnode) circuit-relay v2 and AutoNAT services.
//
// Goroutines started by a Host stop in Close.
package host
