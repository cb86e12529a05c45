package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The cost scenario re-executes its own binary, here the test binary, as its child.
	if len(os.Args) > 1 && os.Args[1] == childCommand {
		if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// TestSyncScenarioSmoke runs the whole sync scenario at toy sizes over both transports: it
// proves the harness works end to end, not how fast anything is.
func TestSyncScenarioSmoke(t *testing.T) {
	dir := t.TempDir()
	jsonPath := filepath.Join(dir, "sync.json")
	profDir := filepath.Join(dir, "prof")
	args := []string{"sync",
		"--ops", "200", "--large", "3", "--large-body", "256KiB", "--heap-ops", "500",
		"--raw-bytes", "4MiB", "--raw-write", "256KiB", "--verify-time", "50ms",
		"--transport", "both", "--dir", dir, "--json", jsonPath, "--profile", profDir,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if err := run(ctx, args, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}

	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Scenario != "sync" || rep.Machine.GOMAXPROCS < 1 || rep.Machine.GoVersion == "" {
		t.Fatalf("report header: %+v", rep)
	}
	want := map[string]bool{"a/tcp": true, "b/tcp": true, "c/tcp": true, "a/quic": true, "b/quic": true, "c/quic": true}
	for _, f := range rep.Figures {
		key := f.ID + "/" + f.Transport
		if !want[key] {
			t.Errorf("unexpected or repeated figure %s", key)
		}
		delete(want, key)
		if f.Measured <= 0 || f.Limit <= 0 || f.Ratio <= 0 || f.Details["seconds"] <= 0 {
			t.Errorf("figure %s: measured %v, limit %v, ratio %v, details %v", key, f.Measured, f.Limit, f.Ratio, f.Details)
		}
		if f.Info["connection"] == "" {
			t.Errorf("figure %s: no connection address", key)
		}
		if f.ID == "c" && (f.Store != "bolt" || f.Details["heap_samples"] < 1 || f.Details["heap_baseline_mib"] <= 0) {
			t.Errorf("figure %s: store %s, details %v", key, f.Store, f.Details)
		}
		if f.ID == "a" && f.Details["items_received"] != 200 {
			t.Errorf("figure %s: receiver reported %v operations, want 200", key, f.Details["items_received"])
		}
	}
	for key := range want {
		t.Errorf("figure %s missing", key)
	}
	for _, head := range []string{"figure", "measured", "limit (same run)", "ratio", "target", "result"} {
		if !strings.Contains(stdout.String(), head) {
			t.Errorf("table lacks column %q:\n%s", head, stdout.String())
		}
	}

	for _, name := range []string{"sync-a-tcp.cpu.pprof", "sync-b-quic-start.heap.pprof", "sync-c-tcp-end.heap.pprof", "sync-c-quic-peak.heap.pprof"} {
		if st, err := os.Stat(filepath.Join(profDir, name)); err != nil || st.Size() == 0 {
			t.Errorf("profile %s: %v", name, err)
		}
	}
	// Everything the run stored is gone; only what the test itself put in dir remains.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		if en.Name() != "sync.json" && en.Name() != "prof" {
			t.Errorf("left behind: %s", en.Name())
		}
	}
}

func TestUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"help"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sync", "convergence", "gossip", "membership", "cost", "--json", "--profile"} {
		if !strings.Contains(stdout.String(), want) {
			t.Fatalf("usage lacks %q:\n%s", want, stdout.String())
		}
	}
	if strings.Contains(stdout.String(), childCommand) {
		t.Fatalf("usage lists the hidden child command:\n%s", stdout.String())
	}
	stdout.Reset()
	if err := run(context.Background(), []string{"sync", "--help"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"-ops", "-heap-ops", "-transport", "-profile", "-json"} {
		if !strings.Contains(stderr.String(), flag) {
			t.Errorf("sync --help lacks %s:\n%s", flag, stderr.String())
		}
	}
}

func TestBadCommandLines(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"nosuchscenario"},
		{"sync", "--transport", "udp"},
		{"sync", "--store", "sqlite"},
		{"sync", "--figures", "a,d"},
		{"sync", "--ops", "0"},
		{"sync", "--body", "1XB"},
		{"sync", "stray"},
		{"convergence", "--nodes", "0"},
		{"convergence", "--payload", "8"},
		{"gossip", "--rounds", "sometimes"},
		{"gossip", "--churn", "1"},
		{"membership", "--fail", "120"},
		{"membership", "--heal", ""},
		{"cost", "--topics", "-2"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), args, &stdout, &stderr)
		if err == nil {
			t.Errorf("%q: no error", args)
		}
		if errors.Is(err, errUsage) && stderr.Len() == 0 {
			t.Errorf("%q: usage error without a message", args)
		}
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int64{"100": 100, "256KiB": 256 << 10, "1MiB": 1 << 20, "2gib": 2 << 30, "64B": 64} {
		var b byteSize
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1.5MiB", "1TiB"} {
		var b byteSize
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q) accepted", in)
		}
	}
	b := byteSize(1 << 20)
	if b.String() != "1MiB" {
		t.Errorf("String() = %q", b.String())
	}
}

// runScenario runs args with --json and returns the report; it fails the test on an error.
func runScenario(t *testing.T, timeout time.Duration, args ...string) (*Report, string) {
	t.Helper()
	jsonPath := filepath.Join(t.TempDir(), "report.json")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if err := run(ctx, append(args, "--json", jsonPath), &stdout, &stderr); err != nil {
		t.Fatalf("run %q: %v\nstderr:\n%s", args, err, stderr.String())
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Scenario != args[0] || rep.Machine.NumCPU < 1 {
		t.Fatalf("report header: %+v", rep)
	}
	return &rep, stdout.String()
}

// figureIDs returns the report's figures by id and setting ("a/N=100").
func figureIDs(rep *Report) map[string]Figure {
	out := map[string]Figure{}
	for _, f := range rep.Figures {
		out[f.ID+"/"+f.Transport] = f
	}
	return out
}

func TestMembershipScenarioSmoke(t *testing.T) {
	profDir := t.TempDir()
	rep, table := runScenario(t, time.Minute, "membership", "--n", "100", "--trials", "1",
		"--fail", "50,80", "--heal", "1,2", "--timing-n", "200", "--timing-rounds", "2", "--profile", profDir)
	figs := figureIDs(rep)
	for _, id := range []string{"a/N=100", "b/N=100", "c/N=100", "d/N=100", "e/"} {
		if f, ok := figs[id]; !ok || f.Measured <= 0 {
			t.Errorf("figure %s: %+v", id, f)
		}
	}
	if len(rep.Tables) != 1 || !strings.Contains(table, "| 80% |") {
		t.Errorf("no HyParView table:\n%s", table)
	}
	if st, err := os.Stat(filepath.Join(profDir, "membership-n100.cpu.pprof")); err != nil || st.Size() == 0 {
		t.Errorf("cpu profile: %v", err)
	}
}

func TestCostScenarioSmoke(t *testing.T) {
	profDir := t.TempDir()
	rep, _ := runScenario(t, 2*time.Minute, "cost", "--topics", "-1,0,2", "--settle", "100ms", "--profile", profDir)
	figs := figureIDs(rep)
	for _, id := range []string{"a/no node", "b/no node", "a/0 topics", "b/0 topics", "a/2 topics", "b/2 topics", "c/2 topics"} {
		if f, ok := figs[id]; !ok || f.Measured <= 0 {
			t.Errorf("figure %s: %+v", id, f)
		}
	}
	if figs["b/2 topics"].Measured <= figs["b/no node"].Measured {
		t.Errorf("a node with topics runs no more goroutines than no node: %v", rep.Figures)
	}
	if figs["a/2 topics"].Details["neighbours"] < 1 {
		t.Errorf("the node measured had no neighbour: %+v", figs["a/2 topics"])
	}
	for _, name := range []string{"cost-topics2.cpu.pprof", "cost-topics2.heap.pprof"} {
		if st, err := os.Stat(filepath.Join(profDir, name)); err != nil || st.Size() == 0 {
			t.Errorf("profile %s: %v", name, err)
		}
	}
}

func TestConvergenceScenarioSmoke(t *testing.T) {
	profDir := t.TempDir()
	rep, _ := runScenario(t, 2*time.Minute, "convergence", "--nodes", "4", "--topics", "1,2", "--payload", "256",
		"--rate", "8", "--duration", "1s", "--profile", profDir)
	figs := figureIDs(rep)
	for _, setting := range []string{"4 nodes, 1 topic", "4 nodes, 2 topics"} {
		for _, id := range []string{"a", "b", "c", "d", "e"} {
			if _, ok := figs[id+"/"+setting]; !ok {
				t.Errorf("figure %s/%s missing", id, setting)
			}
		}
		if d := figs["d/"+setting]; !d.Pass || d.Details["expected"] < 1 {
			t.Errorf("not every operation reached every node: %+v", d)
		}
		if c := figs["c/"+setting]; c.Measured <= 0 || c.Details["wire_bytes_sync"] <= 0 {
			t.Errorf("no sync bytes counted: %+v", c)
		}
	}
	if st, err := os.Stat(filepath.Join(profDir, "convergence-n4-t2.cpu.pprof")); err != nil || st.Size() == 0 {
		t.Errorf("cpu profile: %v", err)
	}
}

func TestGossipScenarioSmoke(t *testing.T) {
	profDir := t.TempDir()
	rep, _ := runScenario(t, 2*time.Minute, "gossip", "--nodes", "5", "--per-node", "2", "--window", "1s",
		"--deadline", "20s", "--churn", "0.2", "--profile", profDir)
	figs := figureIDs(rep)
	for _, setting := range []string{"steady", "20% churn"} {
		for _, id := range []string{"a", "b", "c", "d"} {
			if _, ok := figs[id+"/"+setting]; !ok {
				t.Errorf("figure %s/%s missing", id, setting)
			}
		}
	}
	if a := figs["a/20% churn"]; a.Details["churned_nodes"] != 1 || a.Details["stable_nodes"] != 4 {
		t.Errorf("churn round did not churn one of five nodes: %+v", a.Details)
	}
	if st, err := os.Stat(filepath.Join(profDir, "gossip-round2.cpu.pprof")); err != nil || st.Size() == 0 {
		t.Errorf("cpu profile: %v", err)
	}
}
