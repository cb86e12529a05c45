// Package membership implements HyParView ("HyParView: a membership protocol for reliable
// gossip-based broadcast", Leitão, Pereira, Rodrigues, DSN 2007): one small overlay per
// topic in which every node keeps a few open links (the active view, over which gossip
// floods) and a larger set of known peers to replace them (the passive view).
//
// The package has two layers:
//
//   - State, a pure and deterministic state machine (no goroutines, no I/O, injected clock
//     and random source). Inputs: Join, Offer, PeerUp, HandleMessage, HandleTimer, PeerDown,
//     Leave.
//     Outputs, drained with Actions: Send, Connect, Disconnect, NeighborUp, NeighborDown,
//     SetTimer and NeedContacts. It is generic over the peer id, so the same code runs over
//     libp2p (peer.ID) and in the simulator of package membership/sim (small integers).
//   - Driver and Overlay, which run one State per topic over libp2p streams on the
//     protocol given to NewDriver (lfnet uses /lfnet/<net>/membership/1), with framed
//     canonical CBOR from package codec (frames of at most 64 KiB) and real timers, and
//     report NeighborUp / NeighborDown per topic on a channel.
//
// # Protocol
//
// The messages are the paper's: Join, ForwardJoin, Neighbor (with priority), NeighborReply,
// Disconnect, Shuffle and ShuffleReply. Join and ForwardJoin random walks insert a new node
// into active views (at the end of the walk) and passive views (at hop PRWL); a node that
// loses a neighbour sends Neighbor requests to random passive peers, one per free slot,
// moving on to the next peer when one refuses or times out; periodic shuffles walk
// the overlay and exchange samples of the views. Deviations and additions, each for a
// measured or stated reason:
//
//   - Join and Neighbor requests carry a proof of topic knowledge (below).
//   - A Shuffle carries a random id that its ShuffleReply must echo, so nobody but the walk's
//     end can feed the origin's passive view.
//   - ForwardJoin and Shuffle are accepted only from neighbours; a node that receives one
//     from a non-neighbour answers Disconnect, which also repairs any asymmetric link left
//     behind by a lost message or a timed-out request.
//   - A Neighbor request that replaces a failed neighbour is sent with high priority
//     (Config.UrgentReplacement, on by default): after a massive failure the peers asked
//     still count their dead, undetected neighbours and would refuse low-priority requests.
//   - When the node has no neighbour or no passive peer left to ask, it emits NeedContacts;
//     the driver then rejoins through known contacts and the ContactSource (lfnet's address
//     book and topic discovery).
//   - Nodes learned outside the protocol (discovery, new connections) are offered: they
//     enter the passive view. A neighbour lost to a failure that turns up again is joined
//     through instead, once (State.PeerUp): after a partition each side fills its views
//     from its own side, and full views refuse offered peers, but not a Join.
//   - Leave also disconnects peers with a pending Neighbor request, and for two minutes
//     the driver answers a message for an overlay it left with Disconnect, once per peer:
//     a peer may have taken the node in (accepting its request, or at the end of a Join
//     walk) after it stopped listening.
//
// # Proof of topic knowledge and replay
//
// The overlay id on the wire is topics.Derive(topic, "membership"), so the raw topic never
// leaves the node; but an id seen on the wire must not be enough to join (in iroh-gossip it
// is). Every Join and Neighbor request therefore carries
//
//	MAC = blake3-keyed(K, len|sender id | len|receiver id | nonce),  K = topics.Derive(topic, "membership-auth")
//
// with a fresh 16-byte nonce from the state's random source. A receiver that does not hold
// the topic, or computes a different MAC, drops the request without an answer (it is counted
// in Stats.RejectedAuth), so a prober cannot even learn that the receiver holds the topic.
//
// The nonce is not remembered by the receiver, so a captured request could be replayed;
// this is harmless because of where the ids come from. The driver takes the sender id from
// the libp2p stream, whose remote peer is authenticated by the secure channel (Noise or
// TLS): a third party that replays a captured request on its own connection presents its
// own id as sender, and the MAC, bound to the original sender, fails. Only the original
// sender could replay its own request towards the same receiver, and it holds the topic
// anyway. The receiver id in the MAC stops a request made for one node from being used at
// another. The fresh nonce makes every MAC different, so a MAC that leaks (from a log, say) is
// no standing token for the pair of nodes; with the authenticated sender id, only its own
// sender could use it again.
//
// The proof keeps out nodes that do not hold the topic. Members are trusted not to inject
// outsiders: a member can forward any peer in a ForwardJoin or Shuffle, exactly as it could
// hand the topic itself to anyone.
package membership
