package store_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// TestBackfillCommitIsAtomicToReaders: a reader running while a Backfill
// commit applies sees each SKU, and a ReadAtomic over several SKUs sees every
// one of them, wholly before or wholly after the commit, never a mix of the
// two generations (issue 5: channels never see half a catalog).
func TestBackfillCommitIsAtomicToReaders(t *testing.T) {
	const items = 30_000
	m := store.New(store.Config{})
	var idx store.Revision
	apply := func(cmd *logv1.Command) store.Result {
		t.Helper()
		idx++
		res := m.Apply(idx, store.Timestamp(1_700_000_000_000_000_000), cmd)
		if res.Err != nil {
			t.Fatalf("apply %v: %v", cmd.GetKind(), res.Err)
		}
		return res
	}
	apply(loc("l0"))
	apply(loc("l1"))
	apply(channel("web", 0, "l0", "l1"))
	name := func(i int) string { return fmt.Sprintf("IT-%05d", i) }
	rows := func(onHand int64, version uint64, from, to int) []*logv1.StockCount {
		var out []*logv1.StockCount
		for i := from; i < to; i++ {
			out = append(out, row(name(i), "l0", onHand, version), row(name(i), "l1", onHand, version))
		}
		return out
	}
	for from := 0; from < items; from += 5_000 {
		apply(setStock(rows(1, 1, from, from+5_000)...))
	}
	// Stage generation 2 (every counter to 2) before the reader starts.
	var chunks uint32
	for from := 0; from < items; from += 5_000 {
		apply(bfChunk("g2", chunks, rows(2, 2, from, from+5_000)...))
		chunks++
	}

	var (
		stop  atomic.Bool
		reads atomic.Int64
		mixed atomic.Value // the first mix seen, a string
		wg    sync.WaitGroup
	)
	started := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		var a, b store.SKUAvailability
		for i := 0; !stop.Load(); i++ {
			x, y := name(i%items), name((i*7919+items/2)%items)
			var seen [4]int64
			err := m.ReadAtomic(func() error {
				if err := m.Availability("web", store.SKU(x), &a); err != nil {
					return err
				}
				if err := m.Availability("web", store.SKU(y), &b); err != nil {
					return err
				}
				seen = [4]int64{int64(a.Locations[0].OnHand), int64(a.Locations[1].OnHand), int64(b.Locations[0].OnHand), int64(b.Locations[1].OnHand)}
				return nil
			})
			if err != nil {
				mixed.CompareAndSwap(nil, err.Error())
				return
			}
			if seen[0] != seen[1] || seen[0] != seen[2] || seen[0] != seen[3] {
				mixed.CompareAndSwap(nil, fmt.Sprintf("%s and %s read as %v", x, y, seen))
			}
			if reads.Add(1) == 1 {
				close(started)
			}
		}
	}()
	<-started
	res := apply(bfCommit("g2", chunks, false, 0))
	stop.Store(true)
	wg.Wait()
	if s, ok := store.BackfillSummaryOf(res); !ok || s.Applied != 2*items {
		t.Fatalf("commit applied %d rows (summary %v), want %d", s.Applied, ok, 2*items)
	}
	if v := mixed.Load(); v != nil {
		t.Fatalf("a read during the commit saw half of it: %v (after %d reads)", v, reads.Load())
	}
	var a store.SKUAvailability
	if err := m.Availability("web", store.SKU(name(items-1)), &a); err != nil || a.Locations[1].OnHand != 2 {
		t.Fatalf("after the commit: %+v, %v; want on hand 2", a, err)
	}
}
