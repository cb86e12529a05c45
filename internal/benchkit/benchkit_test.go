package benchkit

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lfnet/lfnet/membership"
	"github.com/lfnet/lfnet/membership/sim"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestStampRoundTrip(t *testing.T) {
	m := Message(7, 3, 9, 100)
	if len(m) != 100 {
		t.Fatalf("len %d", len(m))
	}
	s, err := ReadStamp(m)
	if err != nil || s.Round != 7 || s.Node != 3 || s.Seq != 9 || time.Since(s.Sent) < 0 {
		t.Fatalf("%+v, %v", s, err)
	}
	if _, err := ReadStamp(m[:StampSize-1]); err == nil {
		t.Fatal("short message accepted")
	}
	if len(Message(0, 0, 0, 1)) != StampSize {
		t.Fatal("a message always has room for its stamp")
	}
}

func TestRecorderCountsFirstDeliveryOfTheRound(t *testing.T) {
	r := NewRecorder(2)
	r.Reset(1, func(node int, _ Stamp) bool { return node == 0 })
	r.Record(0, Message(1, 5, 0, 16), time.Now())
	r.Record(0, Message(1, 5, 0, 16), time.Now()) // same key: duplicate
	r.Record(0, Message(2, 5, 1, 16), time.Now()) // other round
	r.Record(1, Message(1, 5, 1, 16), time.Now()) // not counted
	r.Record(0, []byte("short"), time.Now())
	res := r.Result(4)
	if res.Received != 1 || res.Duplicates != 1 || res.Ratio() != 0.25 {
		t.Fatalf("%+v", res)
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i))
	}
	if p := Percentile(ds, 0.5); p != 51 {
		t.Errorf("p50 = %d", p)
	}
	if p := Percentile(ds, 0.99); p != 100 {
		t.Errorf("p99 = %d", p)
	}
	if ds[0] != 100 || Percentile(nil, 0.5) != 0 {
		t.Error("input modified or empty input mishandled")
	}
}

func TestScheduleIsSortedWithinWindow(t *testing.T) {
	s := NewSchedule(rand.New(rand.NewPCG(1, 2)), 3, 5, time.Second)
	for _, row := range s {
		for j, at := range row {
			if at < 0 || at >= time.Second || (j > 0 && at < row[j-1]) {
				t.Fatalf("row %v", row)
			}
		}
	}
}

func TestBoundedGraph(t *testing.T) {
	g := BoundedGraph(30, 5, rand.New(rand.NewPCG(3, 4)))
	for i, ns := range g {
		if len(ns) > 5 || len(ns) < 2 {
			t.Fatalf("node %d degree %d", i, len(ns))
		}
	}
}

func TestHyParViewTable(t *testing.T) {
	cfg := sim.Config{Nodes: 100, Seed: 1, Membership: membership.DefaultConfig(), Heal: true, ForwardToNewNeighbors: true}
	res, err := sim.Experiment{Config: cfg, Failures: []float64{0.5}, HealPeriods: []int{1, 2}}.Run()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := (HyParViewTable{Seed: 1, Trials: 1, Heal: []int{1, 2}}).Write(&out, res); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"N = 100", "| 50% |", "after 2 shuffle"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("table lacks %q:\n%s", want, out.String())
		}
	}
	if err := (HyParViewTable{}).Write(&out, res); err == nil {
		t.Fatal("table without healing points accepted")
	}
	tm, err := TimeRounds(cfg, 2)
	if err != nil || tm.Nodes != 100 || tm.Rounds != 2 || tm.MinReliability <= 0 {
		t.Fatalf("%+v, %v", tm, err)
	}
}
