package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the result of one scenario run, as printed and as written by --json.
type Report struct {
	Scenario string    `json:"scenario"`
	Args     []string  `json:"args"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	Machine  Machine   `json:"machine"`
	// Config holds the scenario's effective sizes and options.
	Config  map[string]any `json:"config,omitempty"`
	Figures []Figure       `json:"figures"`
	// Tables are a scenario's own tables (Markdown), printed after the figures.
	Tables []string `json:"tables,omitempty"`
	Notes  []string `json:"notes,omitempty"`
}

// Machine describes where the figures were measured; LoadStart and LoadEnd are
// /proc/loadavg, since other work on a shared machine changes every figure.
type Machine struct {
	GoVersion  string `json:"go_version"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	NumCPU     int    `json:"num_cpu"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPUModel   string `json:"cpu_model,omitempty"`
	LoadStart  string `json:"load_start,omitempty"`
	LoadEnd    string `json:"load_end,omitempty"`
}

// Figure is one measured figure beside the limit it is judged against.
type Figure struct {
	ID        string  `json:"id"` // the letter: a, b, c
	Name      string  `json:"name"`
	Transport string  `json:"transport,omitempty"`
	Store     string  `json:"store,omitempty"`
	Unit      string  `json:"unit"`
	Measured  float64 `json:"measured"`
	// Limit is what Measured is compared with: measured in this run when LimitMeasured,
	// otherwise a fixed bound from the issue.
	Limit         float64 `json:"limit"`
	LimitName     string  `json:"limit_name"`
	LimitMeasured bool    `json:"limit_measured"`
	// Ratio is Measured / Limit. The figure passes when Ratio >= Target (AtLeast) or
	// Ratio < Target (not AtLeast).
	Ratio   float64 `json:"ratio"`
	Target  float64 `json:"target"`
	AtLeast bool    `json:"at_least"`
	Pass    bool    `json:"pass"`
	// Informational figures have no target of their own (a p50 beside a judged p99, a
	// peer's figure); they always pass.
	Informational bool `json:"informational,omitempty"`
	// Details are supporting numbers (CPU time, byte counts, ...), Info supporting text.
	Details map[string]float64 `json:"details,omitempty"`
	Info    map[string]string  `json:"info,omitempty"`
	// Diagnosis explains the figure in a sentence (where the time or memory went).
	Diagnosis string `json:"diagnosis,omitempty"`
}

func (f *Figure) finish() {
	if f.Limit > 0 {
		f.Ratio = f.Measured / f.Limit
	}
	switch {
	case f.Informational:
		f.Pass = true
	case f.AtLeast:
		f.Pass = f.Ratio >= f.Target
	default:
		f.Pass = f.Ratio < f.Target
	}
}

func (f *Figure) value(v float64) string {
	switch f.Unit {
	case "ops/s":
		return fmt.Sprintf("%.0f ops/s", v)
	case "MB/s":
		return fmt.Sprintf("%.1f MB/s", v)
	case "MiB":
		return fmt.Sprintf("%.1f MiB", v)
	case "ms":
		return fmt.Sprintf("%.1f ms", v)
	case "%":
		return fmt.Sprintf("%.2f%%", v)
	default:
		return fmt.Sprintf("%.3g %s", v, f.Unit)
	}
}

func (f *Figure) targetText() string {
	if f.Informational {
		return "-"
	}
	if f.LimitMeasured {
		op := ">="
		if !f.AtLeast {
			op = "<"
		}
		return fmt.Sprintf("%s %.0f%%", op, f.Target*100)
	}
	if f.AtLeast {
		return ">= " + f.value(f.Limit*f.Target)
	}
	return "< " + f.value(f.Limit*f.Target)
}

func (f *Figure) result() string {
	if f.Informational {
		return "info"
	}
	if f.Pass {
		return "pass"
	}
	return "MISS"
}

func (f *Figure) summary() string {
	if f.Limit == 0 {
		return f.value(f.Measured) + " (" + f.result() + ")"
	}
	return fmt.Sprintf("%s vs %s %s = %.0f%% (target %s): %s",
		f.value(f.Measured), f.LimitName, f.value(f.Limit), f.Ratio*100, f.targetText(), f.result())
}

func newReport(scenario string, args []string) *Report {
	return &Report{
		Scenario: scenario,
		Args:     append([]string(nil), args...),
		Started:  time.Now(),
		Config:   map[string]any{},
		Machine: Machine{
			GoVersion:  runtime.Version(),
			OS:         runtime.GOOS,
			Arch:       runtime.GOARCH,
			NumCPU:     runtime.NumCPU(),
			GOMAXPROCS: runtime.GOMAXPROCS(0),
			CPUModel:   cpuModel(),
			LoadStart:  loadAvg(),
		},
	}
}

func (r *Report) finish() {
	r.Seconds = time.Since(r.Started).Seconds()
	r.Machine.LoadEnd = loadAvg()
}

func (r *Report) missed() int {
	n := 0
	for _, f := range r.Figures {
		if !f.Pass {
			n++
		}
	}
	return n
}

// writeTable prints: figure | measured | limit (same run) | ratio | target | pass/miss.
func (r *Report) writeTable(w io.Writer) error {
	m := r.Machine
	fmt.Fprintf(w, "lfbench %s — %s, %s/%s, %d CPUs (GOMAXPROCS %d), %s\n", r.Scenario, m.GoVersion, m.OS, m.Arch, m.NumCPU, m.GOMAXPROCS, orUnknown(m.CPUModel))
	fmt.Fprintf(w, "load average at start: %s; at end: %s; run took %.1f s\n\n", orUnknown(m.LoadStart), orUnknown(m.LoadEnd), r.Seconds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\ttransport\tstore\tmeasured\tlimit (same run)\tratio\ttarget\tresult")
	for i := range r.Figures {
		f := &r.Figures[i]
		limit := f.LimitName + " " + f.value(f.Limit)
		switch {
		case f.Limit == 0:
			limit = "-"
		case !f.LimitMeasured:
			limit = "fixed: " + f.value(f.Limit)
		}
		fmt.Fprintf(tw, "(%s) %s\t%s\t%s\t%s\t%s\t%.0f%%\t%s\t%s\n", f.ID, f.Name, f.Transport, f.Store,
			f.value(f.Measured), limit, f.Ratio*100, f.targetText(), f.result())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Figures) > 0 {
		fmt.Fprintln(w)
	}
	for _, f := range r.Figures {
		if f.Diagnosis != "" {
			fmt.Fprintf(w, "(%s) %s: %s\n", f.ID, f.Transport, f.Diagnosis)
		}
	}
	for _, t := range r.Tables {
		fmt.Fprintf(w, "\n%s", t)
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	return nil
}

func (r *Report) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// cpuModel returns the first "model name" of /proc/cpuinfo, or "" where there is none.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// loadAvg returns the 1, 5 and 15 minute load averages, or "" where there are none.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	fields := strings.Fields(string(b))
	if len(fields) < 3 {
		return ""
	}
	return strings.Join(fields[:3], " ")
}
