package membership

import (
	"crypto/sha256"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
)

// maxVerifiedRecords bounds a driver's memory of verified records (a few hundred bytes
// each); a node rarely sees more distinct records than it has overlay peers and contacts.
const maxVerifiedRecords = 1024

// verifiedRecords remembers the signed peer records a driver has verified, by a hash of
// their exact bytes. Shuffles, joins and replies carry the same records over and over, and
// every arrival was verified again (and once more when its addresses were stored): 16% of
// all CPU time in a 50-node, 10-topic lfbench convergence run. Identical bytes verify
// identically, so a remembered record is accepted for the id it was verified for.
type verifiedRecords struct {
	mu   sync.Mutex
	seen map[[sha256.Size]byte]verifiedRecord
}

type verifiedRecord struct {
	id  peer.ID
	env *record.Envelope
}

// open is openRecord, answered from memory for bytes already verified for id.
func (c *verifiedRecords) open(id peer.ID, data []byte) (*record.Envelope, error) {
	key := sha256.Sum256(data)
	c.mu.Lock()
	v, ok := c.seen[key]
	c.mu.Unlock()
	if ok && v.id == id {
		return v.env, nil
	}
	env, err := openRecord(id, data)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil || len(c.seen) >= maxVerifiedRecords {
		c.seen = make(map[[sha256.Size]byte]verifiedRecord)
	}
	c.seen[key] = verifiedRecord{id: id, env: env}
	return env, nil
}
