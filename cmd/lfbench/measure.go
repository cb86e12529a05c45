package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"
)

// profiler writes the profiles of --profile. Each timed phase gets its own CPU profile (a
// whole-run profile would be dominated by preparing the data), and heap profiles at the
// phase's start and end so that `go tool pprof -sample_index=alloc_space -base start end`
// shows what the phase itself allocated. All methods accept a nil receiver and do nothing.
type profiler struct {
	dir, prefix string
}

func (p *profiler) path(name, kind string) string {
	return filepath.Join(p.dir, fmt.Sprintf("%s-%s.%s.pprof", p.prefix, name, kind))
}

// startCPU starts a CPU profile named name; stop ends it.
func (p *profiler) startCPU(name string) (stop func() error, err error) {
	if p == nil {
		return func() error { return nil }, nil
	}
	return cpuProfileTo(p.path(name, "cpu"))
}

// writeHeap writes the current heap profile (as of the last GC) named name.
func (p *profiler) writeHeap(name string) error {
	if p == nil {
		return nil
	}
	return heapProfileTo(p.path(name, "heap"))
}

func (p *profiler) writeRaw(name, kind string, b []byte) error {
	if p == nil || b == nil {
		return nil
	}
	if err := os.WriteFile(p.path(name, kind), b, 0o644); err != nil {
		return fmt.Errorf("%s profile: %w", kind, err)
	}
	return nil
}

// Runtime metrics the heap sampler reads. heapObjects is the heap's footprint: live objects
// plus dead ones not yet swept, i.e. what the process really holds for its heap.
const (
	metricHeapObjects = "/memory/classes/heap/objects:bytes"
	metricHeapLive    = "/gc/heap/live:bytes"
	metricGoTotal     = "/memory/classes/total:bytes"
	metricGCCycles    = "/gc/cycles/total:gc-cycles"
)

// heapStats summarises a sampled phase. Baselines are taken right before the phase, after a
// forced GC; peaks over the samples.
type heapStats struct {
	BaselineObjects, PeakObjects uint64
	BaselineLive, PeakLive       uint64
	BaselineTotal, PeakTotal     uint64
	GCCycles                     uint64
	Samples                      int
	// peakProfile is a heap profile taken when the footprint last grew markedly (only with
	// --profile): the nearest thing to a profile at the peak.
	peakProfile []byte
}

// heapSampler samples runtime/metrics in its own goroutine until stop.
type heapSampler struct {
	interval time.Duration
	profile  bool
	stopCh   chan struct{}
	done     chan struct{}

	mu    sync.Mutex
	stats heapStats
}

func readMetrics() []metrics.Sample {
	s := []metrics.Sample{{Name: metricHeapObjects}, {Name: metricHeapLive}, {Name: metricGoTotal}, {Name: metricGCCycles}}
	metrics.Read(s)
	return s
}

func metricValue(s metrics.Sample) uint64 {
	if s.Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s.Value.Uint64()
}

// startHeapSampler forces a GC, records the baseline and starts sampling every interval.
// With profile set it also keeps a heap profile of the largest footprint seen.
func startHeapSampler(interval time.Duration, profile bool) *heapSampler {
	runtime.GC()
	base := readMetrics()
	hs := &heapSampler{interval: interval, profile: profile, stopCh: make(chan struct{}), done: make(chan struct{})}
	hs.stats.BaselineObjects = metricValue(base[0])
	hs.stats.BaselineLive = metricValue(base[1])
	hs.stats.PeakObjects = hs.stats.BaselineObjects
	hs.stats.PeakLive = hs.stats.BaselineLive
	hs.stats.BaselineTotal = metricValue(base[2])
	hs.stats.PeakTotal = hs.stats.BaselineTotal
	hs.stats.GCCycles = metricValue(base[3]) // turned into a difference by stop
	go hs.loop()
	return hs
}

func (hs *heapSampler) loop() {
	defer close(hs.done)
	t := time.NewTicker(hs.interval)
	defer t.Stop()
	profiledAt := uint64(0)
	for {
		select {
		case <-hs.stopCh:
			hs.sample(&profiledAt)
			return
		case <-t.C:
			hs.sample(&profiledAt)
		}
	}
}

func (hs *heapSampler) sample(profiledAt *uint64) {
	s := readMetrics()
	objects, live, total := metricValue(s[0]), metricValue(s[1]), metricValue(s[2])
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.stats.Samples++
	hs.stats.PeakObjects = max(hs.stats.PeakObjects, objects)
	hs.stats.PeakLive = max(hs.stats.PeakLive, live)
	hs.stats.PeakTotal = max(hs.stats.PeakTotal, total)
	// Profiles cost a few milliseconds: take one only when the peak grew by an eighth.
	if hs.profile && objects == hs.stats.PeakObjects && objects > *profiledAt+*profiledAt/8 {
		var buf bytes.Buffer
		if err := pprof.Lookup("heap").WriteTo(&buf, 0); err == nil {
			hs.stats.peakProfile = buf.Bytes()
			*profiledAt = objects
		}
	}
}

// stop ends sampling and returns the summary.
func (hs *heapSampler) stop() heapStats {
	close(hs.stopCh)
	<-hs.done
	end := readMetrics()
	hs.mu.Lock()
	defer hs.mu.Unlock()
	st := hs.stats
	st.GCCycles = metricValue(end[3]) - st.GCCycles
	return st
}

const mib = 1 << 20

func mibOf(b uint64) float64 { return float64(b) / mib }

// byteSize is a flag value in bytes that also accepts the suffixes KiB, MiB and GiB.
type byteSize int64

func (b *byteSize) String() string {
	v := int64(*b)
	switch {
	case v != 0 && v%(1<<30) == 0:
		return strconv.FormatInt(v>>30, 10) + "GiB"
	case v != 0 && v%(1<<20) == 0:
		return strconv.FormatInt(v>>20, 10) + "MiB"
	case v != 0 && v%(1<<10) == 0:
		return strconv.FormatInt(v>>10, 10) + "KiB"
	default:
		return strconv.FormatInt(v, 10)
	}
}

func (b *byteSize) Set(s string) error {
	num, shift := s, 0
	for _, u := range []struct {
		suffix string
		shift  int
	}{{"kib", 10}, {"mib", 20}, {"gib", 30}, {"b", 0}} {
		if strings.HasSuffix(strings.ToLower(s), u.suffix) {
			num, shift = s[:len(s)-len(u.suffix)], u.shift
			break
		}
	}
	v, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || v < 0 || v > (1<<62)>>shift {
		return fmt.Errorf("invalid size %q (want e.g. 100, 256KiB, 1MiB)", s)
	}
	*b = byteSize(v << shift)
	return nil
}

// human formats a byte count for figure names: 100 B, 256 KiB, 1 MiB.
func human(n int64) string {
	s := (*byteSize)(&n).String()
	for _, u := range []string{"GiB", "MiB", "KiB"} {
		if strings.HasSuffix(s, u) {
			return strings.TrimSuffix(s, u) + " " + u
		}
	}
	return s + " B"
}

// cpuProfileTo starts a CPU profile written to path; stop ends it.
func cpuProfileTo(path string) (stop func() error, err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		return nil
	}, nil
}

// heapProfileTo writes the current heap profile to path.
func heapProfileTo(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return fmt.Errorf("heap profile: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	return nil
}
