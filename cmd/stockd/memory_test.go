package main

import (
	"math"
	"testing"
)

func TestMemoryLimit(t *testing.T) {
	for _, c := range []struct {
		live  uint64
		ratio float64
		want  int64
	}{
		{0, 2, memoryFloorBytes},
		{50 << 20, 2, memoryFloorBytes},        // 100 MiB is under the floor
		{100 << 20, 1.5, memoryFloorBytes},     // so is 150 MiB (the checkout benchmark's state)
		{145 << 20, 2, 290 << 20},              // a million counters' live state
		{1 << 30, 1.5, 3 << 29},                // 1.5 GiB
		{math.MaxUint64 / 2, 2, math.MaxInt64}, // no overflow
	} {
		if got := memoryLimit(c.live, c.ratio); got != c.want {
			t.Errorf("memoryLimit(%d, %v): got %d, want %d", c.live, c.ratio, got, c.want)
		}
	}
}
