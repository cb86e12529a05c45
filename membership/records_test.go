package membership

import (
	"bytes"
	"errors"
	"testing"
)

// TestVerifiedRecordsRememberOnlyWhatVerified: a remembered record is accepted again only
// for the id it was verified for; other ids and altered bytes are checked in full.
func TestVerifiedRecordsRememberOnlyWhatVerified(t *testing.T) {
	a, recA := testIdentity(t, 1)
	b, _ := testIdentity(t, 2)
	var c verifiedRecords
	first, err := c.open(a, recA)
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.open(a, recA)
	if err != nil || again != first {
		t.Fatalf("remembered record: %v, same envelope %t", err, again == first)
	}
	if _, err := c.open(b, recA); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("a's record carried as b's: %v", err)
	}
	tampered := bytes.Clone(recA)
	tampered[len(tampered)-1] ^= 1
	if _, err := c.open(a, tampered); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("tampered record: %v", err)
	}
	if err := checkRecordsWith(b, Join{Data: recA}, c.open); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("someone else's remembered record as own data: %v", err)
	}
}
