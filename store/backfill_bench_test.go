package store_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// bfBenchChunks is one generation of 1,000,000 rows (items x locs, in item
// order) in chunk commands of 10,000 rows; cmd/stockd's BenchmarkBackfill1M
// sends 100,000 items x 10 locations.
func bfBenchChunks(gen, items, locs int) []*logv1.Command {
	const chunk = 10_000
	var cmds []*logv1.Command
	var rows []*logv1.StockCount
	for i := range items {
		for l := range locs {
			rows = append(rows, row(fmt.Sprintf("BF-%06d", i), fmt.Sprintf("wh%04d", l), int64((i*7+l*131+gen*17)%10_000), uint64(gen)))
			if len(rows) == chunk {
				cmds = append(cmds, bfChunk(fmt.Sprint("g", gen), uint32(len(cmds)), rows...))
				rows = nil
			}
		}
	}
	return cmds
}

// bfBench is a machine with locs locations and the index of its last entry.
type bfBench struct {
	b   *testing.B
	m   *store.Machine
	idx store.Revision
}

func newBFBench(b *testing.B, locs int) *bfBench {
	bb := &bfBench{b: b, m: store.New(store.Config{})}
	for l := range locs {
		bb.apply(loc(fmt.Sprintf("wh%04d", l)))
	}
	return bb
}

func (bb *bfBench) apply(cmd *logv1.Command) store.Result {
	bb.idx++
	res := bb.m.Apply(bb.idx, store.Timestamp(t0+int64(bb.idx)*int64(time.Millisecond)), cmd)
	if res.Err != nil {
		bb.b.Fatalf("apply at %d: %v", bb.idx, res.Err)
	}
	return res
}

// BenchmarkBackfill1M applies generations of 1,000,000 rows: stage is the
// chunks of one, commit/into=loaded its commit over a machine that holds the
// previous generation (every counter exists, every row applies),
// commit/into=empty the commit of a first load, which creates every counter:
// 100,000 items x 10 locations, and 1,000 items x 1,000 locations.
//
//	go test -run '^$' -bench Backfill1M -benchtime 3x -benchmem ./store/
func BenchmarkBackfill1M(b *testing.B) {
	const items, locs = 100_000, 10
	loaded := newBFBench(b, locs)
	gen := 1
	next := func() []*logv1.Command {
		gen++
		return bfBenchChunks(gen, items, locs)
	}
	cmds := next()
	for _, c := range cmds {
		loaded.apply(c)
	}
	loaded.apply(bfCommit(fmt.Sprint("g", gen), uint32(len(cmds)), false, 0))
	b.Run("stage", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			cmds := next()
			b.StartTimer()
			for _, c := range cmds {
				loaded.apply(c)
			}
		}
	})
	b.Run("commit/into=loaded", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			cmds := next()
			for _, c := range cmds {
				loaded.apply(c)
			}
			b.StartTimer()
			loaded.apply(bfCommit(fmt.Sprint("g", gen), uint32(len(cmds)), false, 0))
		}
	})
	for _, shape := range [][2]int{{items, locs}, {1000, 1000}} {
		b.Run(fmt.Sprintf("commit/into=empty/items=%d/locations=%d", shape[0], shape[1]), func(b *testing.B) {
			b.ReportAllocs()
			cmds := bfBenchChunks(1, shape[0], shape[1])
			for b.Loop() {
				b.StopTimer()
				empty := newBFBench(b, shape[1])
				for _, c := range cmds {
					empty.apply(c)
				}
				b.StartTimer()
				empty.apply(bfCommit("g1", uint32(len(cmds)), false, 0))
			}
		})
	}
}
