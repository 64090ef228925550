package main

import (
	"context"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestMemoryLimit(t *testing.T) {
	for _, c := range []struct {
		live     uint64
		captured int64
		ratio    float64
		want     int64
	}{
		{0, 0, 2, memoryFloorBytes},
		{50 << 20, 0, 2, memoryFloorBytes},        // 100 MiB is under the floor
		{100 << 20, 0, 1.5, memoryFloorBytes},     // so is 150 MiB (the checkout benchmark's state)
		{145 << 20, 0, 2, 290 << 20},              // a million counters' live state
		{1 << 30, 0, 1.5, 3 << 29},                // 1.5 GiB
		{math.MaxUint64 / 2, 0, 2, math.MaxInt64}, // no overflow
		// A snapshot's capture gets no headroom: 200 MiB live of which a
		// 72 MiB capture is 128 x 1.5 + 72, not 200 x 1.5.
		{200 << 20, 72 << 20, 1.5, 264 << 20},
		{200 << 20, 300 << 20, 1.5, 200 << 20}, // a capture counted as more than the heap: all of it
		{200 << 20, -1, 1.5, 300 << 20},        // a negative count is none
		{100 << 20, 72 << 20, 1.5, memoryFloorBytes},
	} {
		if got := memoryLimit(c.live, c.captured, c.ratio); got != c.want {
			t.Errorf("memoryLimit(%d, %d, %v): got %d, want %d", c.live, c.captured, c.ratio, got, c.want)
		}
	}
}

// fakeRuntime builds the runtime's figures for a stretch in which the
// collector took share of the CPU: cycles collections, one CPU-second each
// of the 1/share seconds available.
type fakeRuntime struct{ s gcCPU }

func (f *fakeRuntime) collect(cycles uint64, share float64) gcCPU {
	f.s.cycles += cycles
	f.s.gc += float64(cycles)
	f.s.total += float64(cycles) / share
	return f.s
}

// idle lets seconds of CPU go by without a collection. The runtime updates
// its figures only when one ends, so they do not move; the next collection
// shows the whole stretch.
func (f *fakeRuntime) idle(seconds float64) gcCPU {
	shown := f.s
	f.s.total += seconds
	return shown
}

func TestRatioControllerWidensWhileTheCollectorIsBusy(t *testing.T) {
	c := ratioController{base: 1.5, max: 5, target: 0.05}
	var rt fakeRuntime
	if got := c.step(rt.s); got != 1.5 {
		t.Fatalf("first step: ratio %v, want the base 1.5", got)
	}
	// 15% of the CPU at 1.5 (the leader's 3.6-4.2 s of a 26 CPU-second run):
	// three times the target, so (r-1) triples.
	if got := c.step(rt.collect(4, 0.15)); math.Abs(got-2.5) > 1e-9 {
		t.Fatalf("at 15%%: ratio %v, want 2.5", got)
	}
	// At the target it holds.
	if got := c.step(rt.collect(2, 0.05)); math.Abs(got-2.5) > 1e-9 {
		t.Fatalf("at the target: ratio %v, want 2.5", got)
	}
	// Far above the target it stops at its max (maxRatio's).
	if got := c.step(rt.collect(10, 0.9)); got != 5 {
		t.Fatalf("at 90%%: ratio %v, want the max 5", got)
	}
	// A light load narrows it, never below the base.
	if got := c.step(rt.collect(1, 0.025)); math.Abs(got-3) > 1e-9 {
		t.Fatalf("at 2.5%% from 5: ratio %v, want 3", got)
	}
	if got := c.step(rt.collect(1, 0.001)); got != 1.5 {
		t.Fatalf("at 0.1%%: ratio %v, want the base 1.5", got)
	}
}

func TestRatioControllerNarrowsWhenCollectionsStop(t *testing.T) {
	c := ratioController{base: 1.5, max: 5, target: 0.05}
	var rt fakeRuntime
	c.step(rt.s)
	c.step(rt.collect(10, 0.5))
	if c.ratio != 5 {
		t.Fatalf("ratio %v after a busy stretch, want 5", c.ratio)
	}
	// No collection: the ratio holds for quietSteps-1 steps, then r-1
	// shrinks by a tenth a step until it reaches the base.
	for i := 1; i < quietSteps; i++ {
		if got := c.step(rt.idle(0.5)); got != 5 {
			t.Fatalf("quiet step %d: ratio %v, want 5 until step %d", i, got, quietSteps)
		}
	}
	if got := c.step(rt.idle(0.5)); math.Abs(got-4.6) > 1e-9 {
		t.Fatalf("quiet step %d: ratio %v, want 4.6", quietSteps, got)
	}
	for range 100 {
		c.step(rt.idle(0.5))
	}
	if c.ratio != 1.5 {
		t.Fatalf("after 120 quiet steps: ratio %v, want the base 1.5", c.ratio)
	}
	// A collection ends the quiet stretch. The runtime's figures cover all
	// of it, so the share it shows is diluted by the 60 idle seconds: 10
	// of 80.
	if got := c.step(rt.collect(10, 0.5)); c.quiet != 0 || math.Abs(got-(1+0.5*(10.0/80)/0.05)) > 1e-9 {
		t.Fatalf("after a collection: quiet %d, ratio %v; want 0 and 2.25", c.quiet, got)
	}
	if got := c.step(rt.collect(10, 0.5)); got != 5 {
		t.Fatalf("after a second busy stretch: ratio %v, want 5", got)
	}
}

func TestRatioControllerOff(t *testing.T) {
	for _, c := range []ratioController{
		{base: 1.5, max: 5, target: 0},   // --gc-cpu-target 0
		{base: 1.5, max: 1.5, target: 1}, // no wider bound (GOGC=50 with --memory-ratio 1.5)
	} {
		var rt fakeRuntime
		c.step(rt.s)
		if got := c.step(rt.collect(10, 0.9)); got != 1.5 {
			t.Errorf("%+v at 90%%: ratio %v, want the base 1.5", c, got)
		}
	}
}

func TestWidenedLimitStaysUnderTheCeiling(t *testing.T) {
	const live = 200 << 20
	for _, c := range []struct {
		ratio   float64
		ceiling int64
		want    int64
	}{
		{4, 0, 800 << 20},                         // no ceiling known
		{4, 1 << 30, 800 << 20},                   // under it
		{4, 500 << 20, 500 << 20},                 // cut to it
		{4, 250 << 20, 300 << 20},                 // never below what the base ratio gives
		{1.5, 100 << 20, 300 << 20},               // the base ratio alone is not cut
		{4, 100 << 10, 300 << 20},                 // a tiny ceiling: the base ratio
		{1.5, 1 << 30, memoryLimit(live, 0, 1.5)}, // not widened: memoryLimit
	} {
		if got := widenedLimit(live, 0, 1.5, c.ratio, c.ceiling); got != c.want {
			t.Errorf("widenedLimit(200 MiB, ratio %v, ceiling %d): %d, want %d", c.ratio, c.ceiling, got, c.want)
		}
	}
}

func TestMemoryCeiling(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	meminfo := write("meminfo", "MemTotal:       24684084 kB\nMemFree:         1000 kB\n")
	const total = 24684084 << 10
	v2Max := write("v2max", "max\n")
	v2Set := write("v2set", "536870912\n")
	v1Unset := write("v1unset", "9223372036854771712\n")
	v1Set := write("v1set", "1073741824\n")
	missing := filepath.Join(dir, "none")
	for _, c := range []struct {
		name    string
		cgroups []string
		meminfo string
		want    int64
	}{
		{"v2 limit", []string{v2Set, v1Set}, meminfo, 536870912 / 5 * 4},
		{"v1 limit", []string{missing, v1Set}, meminfo, 1073741824 / 5 * 4},
		{"v2 max: half the machine", []string{v2Max, missing}, meminfo, total / 2},
		{"v1 unlimited: half the machine", []string{missing, v1Unset}, meminfo, total / 2},
		{"limit above the machine: half the machine", []string{write("big", "99999999999999\n")}, meminfo, total / 2},
		{"limit, no meminfo", []string{v2Set}, missing, 536870912 / 5 * 4},
		{"nothing readable", []string{missing}, missing, 0},
	} {
		if got := memoryCeiling(c.cgroups, c.meminfo); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

func TestGovernorReturnsMemoryOnceAfterAWideningEnds(t *testing.T) {
	const live = 200 << 20
	g := governor{ctl: ratioController{base: 1.5, max: 5, target: 0.05}}
	var rt fakeRuntime
	if lim, release := g.next(live, 0, rt.s); lim != 300<<20 || release {
		t.Fatalf("first: limit %d, release %v; want 300 MiB, false", lim, release)
	}
	// A busy stretch widens the limit to the max ratio, 5 here.
	if lim, release := g.next(live, 0, rt.collect(10, 0.5)); lim != 1000<<20 || release {
		t.Fatalf("busy: limit %d, release %v; want 1000 MiB, false", lim, release)
	}
	// Quiet: the ratio narrows step by step; memory goes back only when it
	// is at its base, once.
	releases := 0
	var lim int64
	for i := range 200 {
		var release bool
		lim, release = g.next(live, 0, rt.idle(0.5))
		if release {
			releases++
			if lim != 300<<20 {
				t.Fatalf("quiet step %d: released at limit %d, want the base 300 MiB", i, lim)
			}
		}
	}
	if releases != 1 || lim != 300<<20 {
		t.Fatalf("after the quiet stretch: %d releases, limit %d; want 1 and 300 MiB", releases, lim)
	}
	// A widening of less than returnAfterBytes ends without one. (The
	// first collection's figures cover the idle stretch too.)
	g.next(live, 0, rt.collect(1, 0.05))
	g.next(live, 0, rt.collect(1, 0.055)) // 10% over the target: (r-1) x 1.1
	if g.widest == 0 || g.widest-300<<20 >= returnAfterBytes {
		t.Fatalf("small widening: widest %d, want under %d above the base", g.widest, returnAfterBytes)
	}
	if _, release := g.next(live, 0, rt.collect(1, 0.001)); release {
		t.Fatal("the end of a small widening released memory")
	}
}

func TestMaxRatio(t *testing.T) {
	for _, c := range []struct {
		base float64
		gogc int64
		want float64
	}{
		{1.5, 400, 3},  // twice the base
		{1.5, 100, 2},  // GOGC=100 paces alone past 2x
		{1.5, 0, 3},    // unknown
		{1.5, -1, 3},   // GOGC=off
		{3, 400, 5},    // GOGC's bound
		{1.5, 20, 1.5}, // never below the base
	} {
		if got := maxRatio(c.base, c.gogc); got != c.want {
			t.Errorf("maxRatio(%v, %d): %v, want %v", c.base, c.gogc, got, c.want)
		}
	}
}

// TestHeapGovernorRunSetsAndLiftsTheLimit runs the governor against this
// process's runtime: it reads every figure it needs (a wrong metric kind
// panics), sets a soft limit, and lifts it when its context ends.
func TestHeapGovernorRunSetsAndLiftsTheLimit(t *testing.T) {
	if lim := debug.SetMemoryLimit(-1); lim != math.MaxInt64 {
		t.Skipf("a soft memory limit (%d) is already set, by GOMEMLIMIT or another governor", lim)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		heapGovernor{ratio: 1.5, gcTarget: 0.05, interval: time.Millisecond, log: slog.New(slog.DiscardHandler)}.run(ctx)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for debug.SetMemoryLimit(-1) == math.MaxInt64 {
		if time.Now().After(deadline) {
			cancel()
			t.Fatal("the governor set no limit within 10 s")
		}
		runtime.Gosched()
	}
	if lim := debug.SetMemoryLimit(-1); lim < memoryFloorBytes {
		t.Errorf("limit %d, want at least the floor %d", lim, memoryFloorBytes)
	}
	cancel()
	<-done
	if lim := debug.SetMemoryLimit(-1); lim != math.MaxInt64 {
		t.Errorf("after the governor stopped: limit %d, want none (MaxInt64)", lim)
	}
}
