package discovery

import (
	"testing"
	"time"
)

func TestPacerStretchesWhileNothingIsNew(t *testing.T) {
	p := pacer{base: 10 * time.Second, max: 80 * time.Second}
	var got []time.Duration
	for _, news := range []bool{false, false, false, false, false, true, false} {
		got = append(got, p.next(news))
	}
	want := []time.Duration{10, 20, 40, 80, 80, 10, 20}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("pauses %v, want %v seconds", got, want)
		}
	}
	p.reset()
	if d := p.next(false); d != 10*time.Second {
		t.Fatalf("after reset: %v", d)
	}
	// A max below base keeps the walks at base.
	flat := pacer{base: time.Second, max: 0}
	for range 3 {
		if d := flat.next(false); d != time.Second {
			t.Fatalf("flat pacer: %v", d)
		}
	}
}
