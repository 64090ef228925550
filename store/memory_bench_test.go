package store_test

import (
	"bytes"
	"flag"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

var memoryScaleProfile = flag.String("memory-scale-profile", "", "BenchmarkMemoryScale writes a heap profile of the built state to this file")

// BenchmarkMemoryScale builds the state of the README's scale figure in one
// machine: 1,000,002 counters (333,334 items x 3 locations) and 100,000 live
// one-line holds, each entry decoded from its wire bytes as a replica would,
// and reports what each adds per counter and per hold, as heap in use
// (HeapInuse after a collection: spans with live objects, what resident
// memory follows) and as live bytes (HeapAlloc after a collection: what the
// node's heap governor sizes its limit by). It measures one build whatever
// b.N is.
//
//	go test -run '^$' -bench MemoryScale -benchtime 1x ./store/
func BenchmarkMemoryScale(b *testing.B) {
	for b.Loop() {
		base, baseLive, _ := heapAfterGC()
		var afterCounters, countersLive, countersObjects int64
		m := scaleState(b, func() { afterCounters, countersLive, countersObjects = heapAfterGC() })
		afterHolds, live, objects := heapAfterGC()
		if *memoryScaleProfile != "" {
			f, err := os.Create(*memoryScaleProfile)
			if err != nil {
				b.Fatal(err)
			}
			if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
				b.Fatal(err)
			}
			if err := f.Close(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(afterCounters-base)/(scaleItems*3), "heap-B/counter")
		b.ReportMetric(float64(afterHolds-afterCounters)/scaleHolds, "heap-B/hold")
		b.ReportMetric(float64(afterHolds-base)/(scaleItems*3), "heap-B/counter-with-holds")
		b.ReportMetric(float64(afterHolds-base)/(1<<20), "heap-MiB")
		b.ReportMetric(float64(countersLive-baseLive)/(scaleItems*3), "live-B/counter")
		b.ReportMetric(float64(live-countersLive)/scaleHolds, "live-B/hold")
		// What a collection marks per hold: a held hold stays for minutes.
		b.ReportMetric(float64(objects-countersObjects)/scaleHolds, "objects/hold")
		b.ReportMetric(float64(live-baseLive)/(1<<20), "live-MiB")
		runtime.KeepAlive(m)
	}
}

// BenchmarkSnapshotCapture times Machine.Snapshot, the copy every applied
// command waits for while it runs, on the state of BenchmarkMemoryScale. The
// copy's garbage is collected between captures, outside the timing.
//
//	go test -run '^$' -bench SnapshotCapture -benchtime 5x ./store/
func BenchmarkSnapshotCapture(b *testing.B) {
	m := scaleState(b, func() {})
	var snap *store.Snapshot
	var allocated uint64
	for b.Loop() {
		b.StopTimer()
		snap = nil
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		b.StartTimer()
		snap = m.Snapshot()
		b.StopTimer()
		runtime.ReadMemStats(&after)
		allocated = after.TotalAlloc - before.TotalAlloc
		b.StartTimer()
	}
	if snap.Index() == 0 {
		b.Fatal("captured index 0, want the built state's")
	}
	// What the capture allocated, and what it tells the heap governor it holds.
	b.ReportMetric(float64(allocated)/(1<<20), "allocated-MiB")
	b.ReportMetric(float64(snap.Footprint())/(1<<20), "footprint-MiB")
}

// BenchmarkRestoreScale times Machine.Restore of BenchmarkMemoryScale's state
// from its snapshot records, the store's part of a restart.
//
//	go test -run '^$' -bench RestoreScale -benchtime 3x ./store/
func BenchmarkRestoreScale(b *testing.B) {
	var recs [][]byte
	if err := scaleState(b, func() {}).Snapshot().WriteRecords(func(rec []byte) error {
		recs = append(recs, bytes.Clone(rec))
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	var m *store.Machine
	for b.Loop() {
		m = store.New(store.Config{})
		if err := m.Restore(sliceSource(recs)); err != nil {
			b.Fatal(err)
		}
	}
	if m.AppliedIndex() == 0 {
		b.Fatal("restored index 0, want the built state's")
	}
}

// Scale of BenchmarkMemoryScale's state: 1,000,002 counters and 100,000 holds.
const (
	scaleItems = 333_334
	scaleHolds = 100_000
)

// scaleState builds the state of the README's scale figure: scaleItems items
// at 3 locations each and scaleHolds live one-line holds, each entry decoded
// from its wire bytes as a replica would. countersDone runs between the
// counters and the holds.
func scaleState(b *testing.B, countersDone func()) *store.Machine {
	locs := []string{"ams", "fra", "lyon"}
	item := func(i int) string { return "ITEM-" + strconv.Itoa(i) }
	m := store.New(store.Config{})
	index := store.Revision(0)
	apply := func(cmds ...*logv1.Command) {
		// Through the wire form, so every string is its own allocation
		// as in a replica that decoded the entry.
		raw, err := proto.Marshal(entry(t0+int64(index)*1e6, cmds...))
		if err != nil {
			b.Fatal(err)
		}
		var e logv1.Entry
		if err := proto.Unmarshal(raw, &e); err != nil {
			b.Fatal(err)
		}
		index++
		for i, r := range m.ApplyEntry(index, &e) {
			if r.Err != nil {
				b.Fatalf("input %v: got %v, want ok", cmds[i], r.Err)
			}
			for _, row := range r.Rows {
				if row.Status != store.RowApplied {
					b.Fatalf("input %v: got row %+v, want applied", cmds[i], row)
				}
			}
		}
	}
	apply(loc(locs[0]), loc(locs[1]), loc(locs[2]), channel("web", 0, locs...))
	var rows []*logv1.StockCount
	for i := range scaleItems {
		for _, l := range locs {
			rows = append(rows, row(item(i), l, 100, 1))
		}
		if len(rows)+len(locs) > store.MaxRows || i == scaleItems-1 {
			apply(setStock(rows...))
			rows = rows[:0]
		}
	}
	countersDone()
	var cmds []*logv1.Command
	for i := range scaleHolds {
		cmds = append(cmds, reserve("web", "h-"+strconv.Itoa(i), 0, line(item(i%scaleItems), 1)))
		if len(cmds) == 64 || i == scaleHolds-1 {
			apply(cmds...)
			cmds = cmds[:0]
		}
	}
	return m
}

// heapAfterGC returns the heap in use (spans holding live objects), the live
// bytes (what the node's heap governor sizes its limit by) and the live
// objects after a full collection.
func heapAfterGC() (inuse, live, objects int64) {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse), int64(ms.HeapAlloc), int64(ms.HeapObjects)
}
