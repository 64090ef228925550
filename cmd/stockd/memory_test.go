package main

import (
	"math"
	"testing"
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
