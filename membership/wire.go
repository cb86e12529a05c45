package membership

import (
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"

	"github.com/lfnet/lfnet/codec"
)

// Wire limits. A frame is at most codec.MaxFrameMembership (64 KiB) anyway; these bound the
// parts so that a hostile frame cannot make us allocate or verify more than a real one.
const (
	// MaxPeerData is the largest peer data (a marshalled signed peer record) accepted.
	MaxPeerData = 4096
	// MaxWirePeers is the most entries a Shuffle or ShuffleReply may carry.
	MaxWirePeers = 64
	// maxIDLen bounds a peer id's bytes; real ids are 34–38 bytes long.
	maxIDLen = 128
	// overlayIDSize is the size of the overlay id in a stream's hello.
	overlayIDSize = 32
)

// Wire forms. Every message is a codec.Tagged envelope whose Kind is the message Kind and
// whose Body is one of these arrays.
type (
	wireHello struct {
		_       struct{} `cbor:",toarray"`
		Overlay []byte
	}
	wirePeer struct {
		_    struct{} `cbor:",toarray"`
		ID   []byte
		Data []byte
	}
	wireJoin struct {
		_     struct{} `cbor:",toarray"`
		Data  []byte
		Nonce []byte
		MAC   []byte
	}
	wireForwardJoin struct {
		_    struct{} `cbor:",toarray"`
		Peer wirePeer
		TTL  uint8
	}
	wireNeighbor struct {
		_     struct{} `cbor:",toarray"`
		High  bool
		Data  []byte
		Nonce []byte
		MAC   []byte
	}
	wireNeighborReply struct {
		_        struct{} `cbor:",toarray"`
		Accepted bool
		Data     []byte
	}
	wireDisconnect struct {
		_     struct{} `cbor:",toarray"`
		Alive bool
	}
	// Peers stays raw until its length has been checked, so a frame full of tiny entries
	// cannot make the decoder allocate thousands of them.
	wireShuffle struct {
		_      struct{} `cbor:",toarray"`
		ID     uint64
		Origin wirePeer
		Peers  codec.RawMessage
		TTL    uint8
	}
	wireShuffleReply struct {
		_     struct{} `cbor:",toarray"`
		ID    uint64
		Peers codec.RawMessage
	}
)

// encodeMessage returns the wire form of m.
func encodeMessage(m Message) ([]byte, error) {
	switch m := m.(type) {
	case Join:
		return codec.MarshalTagged(uint64(KindJoin), wireJoin{Data: m.Data, Nonce: m.Proof.Nonce[:], MAC: m.Proof.MAC[:]})
	case ForwardJoin[peer.ID]:
		if m.TTL < 0 || m.TTL > 255 {
			return nil, fmt.Errorf("%w: ttl %d", ErrBadMessage, m.TTL)
		}
		return codec.MarshalTagged(uint64(KindForwardJoin), wireForwardJoin{Peer: toWirePeer(m.Peer), TTL: uint8(m.TTL)})
	case Neighbor:
		return codec.MarshalTagged(uint64(KindNeighbor), wireNeighbor{High: m.HighPriority, Data: m.Data, Nonce: m.Proof.Nonce[:], MAC: m.Proof.MAC[:]})
	case NeighborReply:
		return codec.MarshalTagged(uint64(KindNeighborReply), wireNeighborReply{Accepted: m.Accepted, Data: m.Data})
	case Disconnect:
		return codec.MarshalTagged(uint64(KindDisconnect), wireDisconnect{Alive: m.Alive})
	case Shuffle[peer.ID]:
		if m.TTL < 0 || m.TTL > 255 {
			return nil, fmt.Errorf("%w: ttl %d", ErrBadMessage, m.TTL)
		}
		peers, err := encodePeers(m.Peers)
		if err != nil {
			return nil, err
		}
		return codec.MarshalTagged(uint64(KindShuffle), wireShuffle{ID: m.ID, Origin: toWirePeer(m.Origin), Peers: peers, TTL: uint8(m.TTL)})
	case ShuffleReply[peer.ID]:
		peers, err := encodePeers(m.Peers)
		if err != nil {
			return nil, err
		}
		return codec.MarshalTagged(uint64(KindShuffleReply), wireShuffleReply{ID: m.ID, Peers: peers})
	}
	return nil, fmt.Errorf("%w: cannot encode %T", ErrBadMessage, m)
}

func toWirePeer(p PeerInfo[peer.ID]) wirePeer {
	return wirePeer{ID: []byte(p.ID), Data: p.Data}
}

func encodePeers(ps []PeerInfo[peer.ID]) (codec.RawMessage, error) {
	if len(ps) > MaxWirePeers {
		return nil, fmt.Errorf("%w: %d peers, limit %d", ErrBadMessage, len(ps), MaxWirePeers)
	}
	w := make([]wirePeer, len(ps))
	for i, p := range ps {
		w[i] = toWirePeer(p)
	}
	return codec.Marshal(w)
}

// decodeMessage parses one frame strictly: canonical CBOR, a known kind, exact field
// counts, valid peer ids, proof parts of the right size, and the limits above. Peer data is
// only size-checked here; checkRecords verifies signatures.
func decodeMessage(data []byte) (Message, error) {
	t, err := codec.UnmarshalTagged(data)
	if err != nil {
		return nil, err
	}
	switch Kind(t.Kind) {
	case KindJoin:
		var w wireJoin
		if err := codec.Unmarshal(t.Body, &w); err != nil {
			return nil, err
		}
		proof, err := decodeProof(w.Nonce, w.MAC)
		if err != nil {
			return nil, err
		}
		data, err := decodeData(w.Data)
		if err != nil {
			return nil, err
		}
		return Join{Data: data, Proof: proof}, nil
	case KindForwardJoin:
		var w wireForwardJoin
		if err := codec.Unmarshal(t.Body, &w); err != nil {
			return nil, err
		}
		p, err := decodePeer(w.Peer)
		if err != nil {
			return nil, err
		}
		return ForwardJoin[peer.ID]{Peer: p, TTL: int(w.TTL)}, nil
	case KindNeighbor:
		var w wireNeighbor
		if err := codec.Unmarshal(t.Body, &w); err != nil {
			return nil, err
		}
		proof, err := decodeProof(w.Nonce, w.MAC)
		if err != nil {
			return nil, err
		}
		data, err := decodeData(w.Data)
		if err != nil {
			return nil, err
		}
		return Neighbor{HighPriority: w.High, Data: data, Proof: proof}, nil
	case KindNeighborReply:
		var w wireNeighborReply
		if err := codec.Unmarshal(t.Body, &w); err != nil {
			return nil, err
		}
		data, err := decodeData(w.Data)
		if err != nil {
			return nil, err
		}
		return NeighborReply{Accepted: w.Accepted, Data: data}, nil
	case KindDisconnect:
		var w wireDisconnect
		if err := codec.Unmarshal(t.Body, &w); err != nil {
			return nil, err
		}
		return Disconnect{Alive: w.Alive}, nil
	case KindShuffle:
		var w wireShuffle
		if err := codec.Unmarshal(t.Body, &w); err != nil {
			return nil, err
		}
		origin, err := decodePeer(w.Origin)
		if err != nil {
			return nil, err
		}
		peers, err := decodePeers(w.Peers)
		if err != nil {
			return nil, err
		}
		return Shuffle[peer.ID]{ID: w.ID, Origin: origin, Peers: peers, TTL: int(w.TTL)}, nil
	case KindShuffleReply:
		var w wireShuffleReply
		if err := codec.Unmarshal(t.Body, &w); err != nil {
			return nil, err
		}
		peers, err := decodePeers(w.Peers)
		if err != nil {
			return nil, err
		}
		return ShuffleReply[peer.ID]{ID: w.ID, Peers: peers}, nil
	}
	return nil, fmt.Errorf("%w: membership kind %d", codec.ErrUnknownKind, t.Kind)
}

func decodeProof(nonce, mac []byte) (Proof, error) {
	var p Proof
	if len(nonce) != NonceSize || len(mac) != MACSize {
		return p, fmt.Errorf("%w: proof of %d+%d bytes, want %d+%d", ErrBadMessage, len(nonce), len(mac), NonceSize, MACSize)
	}
	copy(p.Nonce[:], nonce)
	copy(p.MAC[:], mac)
	return p, nil
}

// decodeData bounds peer data and maps the empty form to nil, so that "no data" has one
// representation in memory whichever way the sender encoded it.
func decodeData(b []byte) ([]byte, error) {
	if len(b) > MaxPeerData {
		return nil, fmt.Errorf("%w: peer data of %d bytes, limit %d", ErrBadMessage, len(b), MaxPeerData)
	}
	if len(b) == 0 {
		return nil, nil
	}
	return b, nil
}

func decodePeer(w wirePeer) (PeerInfo[peer.ID], error) {
	if len(w.ID) == 0 || len(w.ID) > maxIDLen {
		return PeerInfo[peer.ID]{}, fmt.Errorf("%w: peer id of %d bytes", ErrBadMessage, len(w.ID))
	}
	id, err := peer.IDFromBytes(w.ID)
	if err != nil {
		return PeerInfo[peer.ID]{}, fmt.Errorf("%w: peer id: %v", ErrBadMessage, err)
	}
	data, err := decodeData(w.Data)
	if err != nil {
		return PeerInfo[peer.ID]{}, err
	}
	return PeerInfo[peer.ID]{ID: id, Data: data}, nil
}

func decodePeers(raw codec.RawMessage) ([]PeerInfo[peer.ID], error) {
	n, err := arrayLen(raw)
	if err != nil {
		return nil, err
	}
	if n > MaxWirePeers {
		return nil, fmt.Errorf("%w: %d peers, limit %d", ErrBadMessage, n, MaxWirePeers)
	}
	var ws []wirePeer
	if err := codec.Unmarshal(raw, &ws); err != nil {
		return nil, err
	}
	out := make([]PeerInfo[peer.ID], 0, len(ws))
	for _, w := range ws {
		p, err := decodePeer(w)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// arrayLen reads the element count from the head of a CBOR array.
func arrayLen(raw []byte) (uint64, error) {
	if len(raw) == 0 || raw[0]>>5 != 4 {
		return 0, fmt.Errorf("%w: peers is not an array", ErrBadMessage)
	}
	ai := raw[0] & 0x1f
	switch {
	case ai < 24:
		return uint64(ai), nil
	case ai == 24 && len(raw) >= 2:
		return uint64(raw[1]), nil
	case ai == 25 && len(raw) >= 3:
		return uint64(raw[1])<<8 | uint64(raw[2]), nil
	}
	// Longer heads announce more than MaxWirePeers entries (or are malformed).
	return 0, fmt.Errorf("%w: peers array too long or malformed", ErrBadMessage)
}

// checkRecords verifies every peer data in m: it must be a signed peer record envelope,
// signed by the key of the peer it describes (from, for the sender's own data). A relay
// cannot forge another node's addresses this way.
func checkRecords(from peer.ID, m Message) error {
	return checkRecordsWith(from, m, openRecord)
}

// checkRecordsWith is checkRecords with the function that opens each record.
func checkRecordsWith(from peer.ID, m Message, open func(peer.ID, []byte) (*record.Envelope, error)) error {
	check := func(id peer.ID, data []byte) error {
		if len(data) == 0 {
			return nil
		}
		if _, err := open(id, data); err != nil {
			return err
		}
		return nil
	}
	switch m := m.(type) {
	case Join:
		return check(from, m.Data)
	case Neighbor:
		return check(from, m.Data)
	case NeighborReply:
		return check(from, m.Data)
	case ForwardJoin[peer.ID]:
		return check(m.Peer.ID, m.Peer.Data)
	case Shuffle[peer.ID]:
		if err := check(m.Origin.ID, m.Origin.Data); err != nil {
			return err
		}
		for _, p := range m.Peers {
			if err := check(p.ID, p.Data); err != nil {
				return err
			}
		}
	case ShuffleReply[peer.ID]:
		for _, p := range m.Peers {
			if err := check(p.ID, p.Data); err != nil {
				return err
			}
		}
	}
	return nil
}

// openRecord parses and verifies a signed peer record that must describe id.
func openRecord(id peer.ID, data []byte) (*record.Envelope, error) {
	env, rec, err := record.ConsumeEnvelope(data, peer.PeerRecordEnvelopeDomain)
	if err != nil {
		return nil, fmt.Errorf("%w: peer record of %s: %v", ErrBadMessage, id, err)
	}
	pr, ok := rec.(*peer.PeerRecord)
	if !ok {
		return nil, fmt.Errorf("%w: peer record of %s has type %T", ErrBadMessage, id, rec)
	}
	if pr.PeerID != id {
		return nil, fmt.Errorf("%w: peer record for %s carried as %s", ErrBadMessage, pr.PeerID, id)
	}
	signer, err := peer.IDFromPublicKey(env.PublicKey)
	if err != nil || signer != id {
		return nil, fmt.Errorf("%w: peer record of %s not signed by it", ErrBadMessage, id)
	}
	return env, nil
}
