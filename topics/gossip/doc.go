// Package gossip carries ephemeral messages for topics over one GossipSub router per node
// (go-libp2p-pubsub), confidentially and limited to each topic's membership overlay.
//
// For a topic t the router subscribes to the pubsub topic named hex(Derive(t, "gossip"))
// and seals every payload with XChaCha20-Poly1305 under Derive(t, "gossip-key"): a random
// 24-byte nonce followed by the ciphertext, with the pubsub topic name and the author's peer
// id as associated data, so a ciphertext can neither be replayed into another topic nor
// passed off as another node's message. GossipSub signs every message (StrictSign), which
// gives each message its author. A validator opens every message before GossipSub forwards
// it: anything that does not open under the topic key is dropped and counted, never
// forwarded, never delivered.
//
// The GossipSub protocol ids carry the network's namespace (Config.ProtocolID), so nodes of
// different networks never exchange pubsub traffic, and stock GossipSub nodes cannot join.
//
// # Who a node talks to
//
// Each topic's Overlay (its membership active view, see Membership) decides which peers the
// topic's traffic is exchanged with: GossipSub only grafts, gossips to and answers peers in
// the view, and messages published here go only to the mesh (flood publishing is off,
// because it would bypass the view). A mesh link made while a peer was in the view lasts
// until GossipSub prunes it or the peer disconnects: GossipSub has no call to drop one on
// demand, so after a view change both ends keep forwarding over it. Messages are therefore
// accepted from any peer that is, or has been, a neighbour and has stayed connected since
// (Overlay.WasNeighbor); such a peer holds the topic key anyway. Messages from a peer that
// was never a neighbour are dropped before GossipSub looks at them.
//
// # Known limit
//
// GossipSub announces its subscriptions — the derived names — to every connected pubsub
// peer. A connected peer that does not hold a topic can therefore tell that two nodes share
// some topic, though not which one, and it can neither read nor forge that topic's messages.
//
// # Delivery
//
// Messages are ephemeral: a node receives what is published while it is subscribed and in
// the mesh, at most once each, in no guaranteed order, and never its own messages. Every
// Subscription buffers a bounded number of unread messages; one that falls behind loses the
// oldest and is told how many (Subscription.Dropped), so a slow reader never holds up the
// router. GossipSub remembers a message id until two minutes after its last copy arrived; a
// peer that replays a recorded message later than that gets it delivered again (still
// sealed and signed by its author, so it can only repeat, not alter, and never makes a node
// receive its own message), so applications that must not act twice should carry their own
// ids.
//
// Reference counting: Router.Stream joins the topic's overlay and pubsub topic on the first
// handle, and the last Handle.Close leaves both. Re-opening a topic soon after meshes with
// new neighbours within a heartbeat (1 s), but with the previous ones only once GossipSub's
// backoff bookkeeping lets go of them, up to about 15 s later.
package gossip
