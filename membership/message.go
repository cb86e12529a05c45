package membership

import "fmt"

// ID is what the core needs from a peer identifier: equality, and bytes to bind into the
// join proof. libp2p's peer.ID satisfies it; the simulator uses small integers.
type ID interface {
	comparable
	MarshalBinary() ([]byte, error)
}

// PeerInfo is a peer entry as views and messages carry it. Data is opaque to the core: the
// libp2p driver puts the peer's signed peer record there so that a passive-view entry can be
// dialled later; the simulator leaves it nil.
type PeerInfo[P ID] struct {
	ID   P
	Data []byte
}

// Kind identifies a message type. The values are the wire tags of the libp2p driver and
// must not change.
type Kind uint8

// Message kinds, one per message of the HyParView paper.
const (
	KindJoin          Kind = 1
	KindForwardJoin   Kind = 2
	KindNeighbor      Kind = 3
	KindNeighborReply Kind = 4
	KindDisconnect    Kind = 5
	KindShuffle       Kind = 6
	KindShuffleReply  Kind = 7
)

// String returns the kind's name.
func (k Kind) String() string {
	switch k {
	case KindJoin:
		return "Join"
	case KindForwardJoin:
		return "ForwardJoin"
	case KindNeighbor:
		return "Neighbor"
	case KindNeighborReply:
		return "NeighborReply"
	case KindDisconnect:
		return "Disconnect"
	case KindShuffle:
		return "Shuffle"
	case KindShuffleReply:
		return "ShuffleReply"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Message is one of Join, ForwardJoin, Neighbor, NeighborReply, Disconnect, Shuffle and
// ShuffleReply. The set is closed: only this package's types implement it.
type Message interface {
	Kind() Kind
	isMessage()
}

// NonceSize and MACSize are the sizes of a Proof's parts.
const (
	NonceSize = 16
	MACSize   = 32
)

// Proof shows that the sender of a Join or Neighbor request holds the topic: MAC is a
// blake3 keyed hash, keyed with Derive(topic, "membership-auth"), over the sender id, the
// receiver id and a fresh Nonce (see the package documentation for why this resists replay).
type Proof struct {
	Nonce [NonceSize]byte
	MAC   [MACSize]byte
}

// Join asks the receiver (the contact) to add the sender to its active view and to
// announce it to the overlay with ForwardJoin walks. Data is the sender's own peer data.
type Join struct {
	Data  []byte
	Proof Proof
}

// ForwardJoin carries a newly joined peer along a random walk of TTL hops; the walk's end
// adds the peer to its active view, and the node at TTL == PassiveRandomWalkLength adds it to
// its passive view.
type ForwardJoin[P ID] struct {
	Peer PeerInfo[P]
	TTL  int
}

// Neighbor asks the receiver to add the sender to its active view. A high-priority request
// (the sender has no neighbours at all) must be accepted; a low-priority one is accepted only
// if the receiver has a free slot. Data is the sender's own peer data.
type Neighbor struct {
	HighPriority bool
	Data         []byte
	Proof        Proof
}

// NeighborReply answers a Neighbor request. Data is the replier's own peer data.
type NeighborReply struct {
	Accepted bool
	Data     []byte
}

// Disconnect tells the receiver that the sender removed it from its active view. Alive is
// true when the sender stays in the overlay (the receiver may keep it as a passive entry)
// and false when it leaves.
type Disconnect struct {
	Alive bool
}

// Shuffle walks TTL hops and offers the origin's sample of its views to the walk's end,
// which answers the origin directly with a ShuffleReply of the same ID. The ID is an
// extension to the paper: the origin accepts only the reply to the shuffle it started, so
// a stranger cannot fill its passive view with unsolicited replies.
type Shuffle[P ID] struct {
	ID     uint64
	Origin PeerInfo[P]
	Peers  []PeerInfo[P]
	TTL    int
}

// ShuffleReply answers a Shuffle with a sample of the replier's passive view.
type ShuffleReply[P ID] struct {
	ID    uint64
	Peers []PeerInfo[P]
}

// Kind returns KindJoin.
func (Join) Kind() Kind { return KindJoin }

// Kind returns KindForwardJoin.
func (ForwardJoin[P]) Kind() Kind { return KindForwardJoin }

// Kind returns KindNeighbor.
func (Neighbor) Kind() Kind { return KindNeighbor }

// Kind returns KindNeighborReply.
func (NeighborReply) Kind() Kind { return KindNeighborReply }

// Kind returns KindDisconnect.
func (Disconnect) Kind() Kind { return KindDisconnect }

// Kind returns KindShuffle.
func (Shuffle[P]) Kind() Kind { return KindShuffle }

// Kind returns KindShuffleReply.
func (ShuffleReply[P]) Kind() Kind { return KindShuffleReply }

func (Join) isMessage()            {}
func (ForwardJoin[P]) isMessage()  {}
func (Neighbor) isMessage()        {}
func (NeighborReply) isMessage()   {}
func (Disconnect) isMessage()      {}
func (Shuffle[P]) isMessage()      {}
func (ShuffleReply[P]) isMessage() {}
