package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestRunPrintsTable(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"-n", "200", "-trials", "1", "-fail", "50,90", "-perf=false"}, &out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{"N = 200", "quiescent: components 1", "| 50% |", "| 90% |", "after 2 shuffle"} {
		if !strings.Contains(text, want) {
			t.Fatalf("output lacks %q:\n%s", want, text)
		}
	}
}

func TestRunJSON(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"-n", "100", "-trials", "1", "-fail", "30", "-heal", "1", "-json", "-perf-n", "100", "-perf-rounds", "2"}, &out); err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out.String())
	}
	if len(rep.Results) != 1 || rep.Results[0].Nodes != 100 || len(rep.Results[0].Failures) != 1 || rep.Perf == nil {
		t.Fatalf("report %+v", rep)
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-n", "x"}, {"-fail", "120"}, {"-heal", ""}, {"-heal", "2,1", "-n", "10", "-perf=false"}} {
		if err := run(args, &bytes.Buffer{}); err == nil {
			t.Fatalf("%v accepted", args)
		}
	}
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
