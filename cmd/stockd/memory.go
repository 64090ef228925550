package main

import (
	"context"
	"log/slog"
	"math"
	"runtime/debug"
	"runtime/metrics"
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
// A snapshot's capture (a copy of every counter, 71 MiB at a million
// counters) is live while it is written, but it does not grow and is dropped
// when written: it gets no headroom. captured (nil for none) says how many
// of the live bytes it holds; the limit is ratio x the rest, plus it. Until
// a collection has counted a new capture as live, that limit is lower by
// (ratio-1) x the capture, which at worst starts that collection early.
type heapGovernor struct {
	ratio    float64
	interval time.Duration
	log      *slog.Logger
	captured func() int64
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

// run adjusts the limit until ctx ends, then lifts it.
func (g heapGovernor) run(ctx context.Context) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
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
			if lim := memoryLimit(sample[0].Value.Uint64(), captured, g.ratio); lim != last {
				debug.SetMemoryLimit(lim)
				if last == 0 || lim > last*2 || lim < last/2 {
					g.log.Debug("memory limit", "bytes", lim)
				}
				last = lim
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
