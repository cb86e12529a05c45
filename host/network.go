package host

import (
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/zeebo/blake3"
)

// NetworkIDSize is the length of a network id in bytes.
const NetworkIDSize = 32

// DefaultNetworkName is the name DefaultNetworkID is derived from.
const DefaultNetworkName = "lfnet default network v1"

// DefaultNetworkID is the network every node joins unless WithNetworkID says otherwise. It is
// NetworkIDFromName(DefaultNetworkName).
var DefaultNetworkID = NetworkIDFromName(DefaultNetworkName)

// ErrInvalidNetworkID is returned by ParseNetworkID for text that is not 64 hex characters.
var ErrInvalidNetworkID = errors.New("host: invalid network id")

// NetworkIDFromName derives a network id from a human-readable name (blake3 of the name).
// Anyone who knows the name can join the network; use WithNetworkSecret to keep it closed.
func NetworkIDFromName(name string) [NetworkIDSize]byte {
	return blake3.Sum256([]byte(name))
}

// ParseNetworkID reads a network id from its 64-character hex form.
func ParseNetworkID(s string) ([NetworkIDSize]byte, error) {
	var id [NetworkIDSize]byte
	if len(s) != 2*NetworkIDSize {
		return id, fmt.Errorf("%w: %d hex characters, want %d", ErrInvalidNetworkID, len(s), 2*NetworkIDSize)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("%w: %v", ErrInvalidNetworkID, err)
	}
	return id, nil
}

// networkTag is the part of every protocol id that names the network. It is a hash of the
// network id rather than the id itself, so that protocol ids (which peers announce in
// identify) do not hand out the value needed to join a network.
func networkTag(networkID [NetworkIDSize]byte) string {
	sum := blake3.Sum256(networkID[:])
	return hex.EncodeToString(sum[:8])
}

// ProtocolID returns the libp2p protocol id of an lfnet protocol in the given network:
// /lfnet/<first 16 hex characters of blake3(networkID)>/<name>/<version>. Nodes of different
// networks therefore never agree on a protocol and cannot speak to each other.
func ProtocolID(networkID [NetworkIDSize]byte, name, version string) protocol.ID {
	return protocol.ID("/lfnet/" + networkTag(networkID) + "/" + name + "/" + version)
}

// protocolPrefix is the common prefix of every lfnet protocol id of a network.
func protocolPrefix(networkID [NetworkIDSize]byte) string {
	return "/lfnet/" + networkTag(networkID) + "/"
}
