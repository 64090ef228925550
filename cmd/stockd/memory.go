package main

import (
	"context"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"
)

// memoryFloorBytes is the soft memory limit the governor never goes below:
// under it, GOGC alone sets the pace (a small state keeps GOGC=400's cheap
// collections). At 128 MiB the checkout benchmark's leader (300,000
// counters and the holds of a run, ~115 MB live) collected twice a second
// and the collector took 36-40% of every node's CPU; at 192 MiB, 18-29%. A
// million counters (126-143 MiB live) are above it either way: the ratio,
// not the floor, keeps them under 256 B each.
const memoryFloorBytes = 192 << 20

// heapGovernor bounds memory once the state is large. stockd runs at
// GOGC=400, which lets the heap grow to 5x the live state between
// collections: cheap for a small state, ~900 B of RSS per counter at a
// million counters. Every interval the governor sets the runtime's soft memory
// limit to max(memoryFloorBytes, ratio x the live heap), so a large state
// collects as if GOGC were (ratio-1) x 100 while a small one keeps GOGC=400.
//
// A tight ratio costs CPU under a heavy write load: each collection marks
// the whole live heap, and the limit leaves room for only (ratio-1) x live
// of new allocation between them. With ~140 MiB live (290,000 held holds)
// and 9,000-10,000 reserves/s, the leader collected about once a second at
// 1.5 and the collector took 3.0-4.7 s of its CPU in a 13 s run; the
// reserve p99 went from 12-15 ms on a fresh cluster to 25-44 ms. So while
// the collector takes more than gcTarget of the CPU GOMAXPROCS gives the
// process, the ratio widens (see ratioController), up to maxWidening x
// ratio or GOGC's own bound and never past memoryCeiling; it narrows back
// as the share falls and when collections stop.
//
// A snapshot's capture (a copy of every counter, 71 MiB at a million
// counters) is live while it is written, but it does not grow and is dropped
// when written: it gets no headroom. captured (nil for none) says how many
// of the live bytes it holds; the limit is ratio x the rest, plus it. Until
// a collection has counted a new capture as live, that limit is lower by
// (ratio-1) x the capture, which at worst starts that collection early.
type heapGovernor struct {
	ratio float64
	// gcTarget is the collector's share of the CPU above which the ratio
	// widens (0: never).
	gcTarget float64
	interval time.Duration
	log      *slog.Logger
	captured func() int64
}

// ratioController widens the governor's ratio while the collector takes
// more than target of the process's CPU, and narrows it back. The runtime
// updates its CPU figures when a collection ends, so the controller judges
// each stretch between the collections it sees: if the collector took share
// s of the CPU there at ratio r, and its cost goes as 1/(r-1) (the number of
// collections at a steady allocation rate), the ratio that meets the target
// has r'-1 = (r-1) x s/target. r' is kept within [base, max]. Without a new
// collection for quietSteps steps (no allocation worth collecting), r-1
// shrinks by a tenth each step, so an idle node gives memory back.
type ratioController struct {
	base, max, target float64
	ratio             float64
	started           bool
	// The runtime's figures as of the last collection seen.
	cycles    uint64
	gc, total float64
	quiet     int
}

// quietSteps is how many steps without a collection start the decay: 5 s
// at the governor's 250 ms interval.
const quietSteps = 20

// gcCPU is what the runtime reports, as of its latest collection: the
// collections completed, the CPU seconds they took (marking assists and
// workers and pauses, not idle-time marking, which only uses CPU nothing
// else wanted) and the CPU seconds GOMAXPROCS made available.
type gcCPU struct {
	cycles    uint64
	gc, total float64
}

// step takes the runtime's latest figures and returns the ratio to use.
func (c *ratioController) step(s gcCPU) float64 {
	if !c.started {
		c.started, c.ratio = true, c.base
		c.cycles, c.gc, c.total = s.cycles, s.gc, s.total
		return c.ratio
	}
	if c.target <= 0 || c.max <= c.base {
		return c.base
	}
	if s.cycles == c.cycles {
		if c.quiet++; c.quiet >= quietSteps {
			c.ratio = max(c.base, 1+(c.ratio-1)*0.9)
		}
		return c.ratio
	}
	dgc, dtotal := s.gc-c.gc, s.total-c.total
	c.cycles, c.gc, c.total, c.quiet = s.cycles, s.gc, s.total, 0
	if dtotal > 0 && dgc >= 0 {
		c.ratio = min(c.max, max(c.base, 1+(c.ratio-1)*(dgc/dtotal)/c.target))
	}
	return c.ratio
}

// memoryLimit is the soft limit for a live heap of live bytes, captured of
// them held by snapshot captures.
func memoryLimit(live uint64, captured int64, ratio float64) int64 {
	c := float64(min(uint64(max(captured, 0)), live))
	l := (float64(live)-c)*ratio + c
	if l > math.MaxInt64/2 {
		return math.MaxInt64
	}
	return max(memoryFloorBytes, int64(l))
}

// widenedLimit is memoryLimit at the controller's ratio, kept under ceiling
// (0: none) unless the base ratio alone is above it: the widening spends
// spare memory, never memory the node's container or machine lacks.
func widenedLimit(live uint64, captured int64, base, ratio float64, ceiling int64) int64 {
	lim := memoryLimit(live, captured, ratio)
	if ceiling > 0 && lim > ceiling {
		lim = max(ceiling, memoryLimit(live, captured, base))
	}
	return lim
}

// memoryCeiling is what the widening may use at most: 80% of the cgroup's
// memory limit (v2 memory.max or v1 memory.limit_in_bytes, read from the
// given files) when one is set below the machine's memory, else half the
// machine's memory (MemTotal in meminfo), else 0 (unknown: none).
func memoryCeiling(cgroupFiles []string, meminfo string) int64 {
	var total int64
	if raw, err := os.ReadFile(meminfo); err == nil {
		for line := range strings.Lines(string(raw)) {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64); err == nil {
					total = kb << 10
				}
			}
		}
	}
	for _, f := range cgroupFiles {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// "max" (v2) or a number near MaxInt64 (v1) means no limit.
		n, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
		if err == nil && n > 0 && (total == 0 || n < total) {
			return n / 5 * 4
		}
	}
	return total / 2
}

// cgroupMemoryFiles are where Linux shows a container's memory limit.
var cgroupMemoryFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// maxWidening bounds the widened ratio to this multiple of --memory-ratio,
// so an operator can size a node for the worst case: at most 2 x 1.5 = 3x
// the live heap under a heavy write load, against GOGC=400's 5x.
const maxWidening = 2

// maxRatio is the widest ratio: maxWidening x base, and never past
// 1+gogc/100, where the limit no longer binds (GOGC paces alone). gogc <= 0
// (GOGC=off, or unknown) leaves maxWidening x base.
func maxRatio(base float64, gogc int64) float64 {
	m := base * maxWidening
	if gogc > 0 {
		m = min(m, 1+float64(gogc)/100)
	}
	return max(base, m)
}

// returnAfterBytes is how far above the base limit the widening must have
// gone for its end to hand the freed memory back to the OS at once.
const returnAfterBytes = 64 << 20

// governor is the governor's state from one interval to the next.
type governor struct {
	ceiling int64
	ctl     ratioController // its base is --memory-ratio
	// widest is the highest limit set since the ratio left its base, 0
	// while it is at its base.
	widest int64
}

// next takes the runtime's latest figures and returns the soft limit to set,
// and whether to hand free memory back to the OS now. The runtime's
// background scavenger returns what a widened limit let the heap take at
// about 1% of a core: hundreds of MiB stayed resident for tens of seconds
// after a bulk load (292 B per counter settled at a million counters,
// against 201-203 B without the widening). So when the ratio is back at its
// base after a widening of at least returnAfterBytes, next says so, once.
func (g *governor) next(live uint64, captured int64, cpu gcCPU) (limit int64, release bool) {
	ratio := g.ctl.step(cpu)
	limit = widenedLimit(live, captured, g.ctl.base, ratio, g.ceiling)
	if ratio > g.ctl.base {
		g.widest = max(g.widest, limit)
		return limit, false
	}
	release = g.widest-limit >= returnAfterBytes
	g.widest = 0
	return limit, release
}

// run adjusts the limit until ctx ends, then lifts it.
func (g heapGovernor) run(ctx context.Context) {
	sample := []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/cpu/classes/gc/mark/assist:cpu-seconds"},
		{Name: "/cpu/classes/gc/mark/dedicated:cpu-seconds"},
		{Name: "/cpu/classes/gc/pause:cpu-seconds"},
		{Name: "/cpu/classes/total:cpu-seconds"},
		{Name: "/gc/gogc:percent"},
	}
	metrics.Read(sample)
	var gogc int64
	if v := sample[6].Value; v.Kind() == metrics.KindUint64 && v.Uint64() <= math.MaxInt64 {
		gogc = int64(v.Uint64())
	}
	gov := governor{
		ceiling: memoryCeiling(cgroupMemoryFiles, "/proc/meminfo"),
		ctl:     ratioController{base: g.ratio, max: maxRatio(g.ratio, gogc), target: g.gcTarget},
	}
	// A runtime without the CPU figures (none Go 1.26 lacks) leaves the
	// controller seeing no collections: the ratio stays at its base.
	cpuKnown := sample[1].Value.Kind() == metrics.KindUint64
	for _, s := range sample[2:6] {
		cpuKnown = cpuKnown && s.Value.Kind() == metrics.KindFloat64
	}
	tick := time.NewTicker(g.interval)
	defer tick.Stop()
	defer debug.SetMemoryLimit(math.MaxInt64)
	var last int64
	for {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			var captured int64
			if g.captured != nil {
				captured = g.captured()
			}
			var cpu gcCPU
			if cpuKnown {
				cpu = gcCPU{
					cycles: sample[1].Value.Uint64(),
					gc:     sample[2].Value.Float64() + sample[3].Value.Float64() + sample[4].Value.Float64(),
					total:  sample[5].Value.Float64(),
				}
			}
			lim, release := gov.next(sample[0].Value.Uint64(), captured, cpu)
			if lim != last {
				debug.SetMemoryLimit(lim)
				if last == 0 || lim > last*5/4 || lim < last*4/5 {
					g.log.Debug("memory limit", "bytes", lim, "ratio", gov.ctl.ratio)
				}
				last = lim
			}
			if release {
				debug.FreeOSMemory()
				g.log.Debug("returned memory to the OS", "limit", lim)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
