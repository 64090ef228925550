package store_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// benchMachine loads items counted at three locations that channel "web"
// sees, in ERP batches of MaxRows rows, and returns it with the items' SKUs.
func benchMachine(tb testing.TB, items int) (*store.Machine, []store.SKU) {
	tb.Helper()
	m := store.New(store.Config{})
	locs := []string{"ams", "fra", "ber"}
	res := m.ApplyEntry(1, entry(t0, loc("ams"), loc("fra"), loc("ber"), channel("web", 1, locs...), buffer("item-7", "web", "fra", 2)))
	for _, r := range res {
		if r.Err != nil {
			tb.Fatalf("bench setup: got %v, want ok", r.Err)
		}
	}
	skus := make([]store.SKU, items)
	var rows []*logv1.StockCount
	index := store.Revision(2)
	flush := func() {
		for _, r := range m.Apply(index, store.Timestamp(t0), setStock(rows...)).Rows {
			if r.Status != store.RowApplied {
				tb.Fatalf("bench setup row: got %+v, want applied", r)
			}
		}
		index++
		rows = rows[:0]
	}
	for i := range skus {
		skus[i] = store.SKU(fmt.Sprintf("item-%d", i))
		for j, l := range locs {
			rows = append(rows, row(string(skus[i]), l, int64(1000+i%100+j), 1))
		}
		if len(rows)+len(locs) > store.MaxRows {
			flush()
		}
	}
	if len(rows) > 0 {
		flush()
	}
	return m, skus
}

// TestAvailabilityAllocatesNothing: a read with room in dst allocates
// nothing, so reads stay cheap under load (STYLE.md: reads never block apply).
func TestAvailabilityAllocatesNothing(t *testing.T) {
	m, skus := benchMachine(t, 1000)
	dst := store.SKUAvailability{Locations: make([]store.LocationAvailability, 0, 3)}
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		if err := m.Availability("web", skus[i%len(skus)], &dst); err != nil {
			t.Fatal(err)
		}
		i++
	})
	if allocs != 0 {
		t.Errorf("input Availability(web, item-N) with dst capacity 3: got %v allocs/op, want 0", allocs)
	}
	if dst.Available <= 0 || len(dst.Locations) != 3 {
		t.Errorf("input Availability(web, %s): got %+v, want a positive total over 3 locations", dst.SKU, dst)
	}
	refusals := testing.AllocsPerRun(100, func() {
		if err := m.Availability("nope", skus[0], &dst); !errors.Is(err, store.ErrUnknownChannel) {
			t.Fatalf("input Availability(nope, %s): got %v, want %v", skus[0], err, store.ErrUnknownChannel)
		}
	})
	if refusals != 0 {
		t.Errorf("input Availability(nope, %s): got %v allocs/op for the refusal, want 0", skus[0], refusals)
	}
}

// BenchmarkAvailability reads one SKU of a channel with three locations out
// of 100,000 loaded items.
func BenchmarkAvailability(b *testing.B) {
	m, _ := benchMachine(b, 100_000)
	dst := store.SKUAvailability{Locations: make([]store.LocationAvailability, 0, 3)}
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Availability("web", "item-4242", &dst); err != nil {
			b.Fatal(err)
		}
	}
	if dst.Available <= 0 {
		b.Fatalf("input item-4242: got %+v, want stock", dst)
	}
}

// BenchmarkAvailabilityParallelWithApply: exactly 1 or 2 goroutines read
// random SKUs while one goroutine applies Reserve/Release at about 5,000
// commands/s (applyLoad). GOMAXPROCS is set to
// the reader count for the run so that RunParallel starts exactly that many
// readers; the applier shares their processors, as it does in a node.
func BenchmarkAvailabilityParallelWithApply(b *testing.B) {
	m, skus := benchMachine(b, 100_000)
	r := rand.New(rand.NewPCG(1, 2))
	order := make([]int32, 1<<16)
	for i := range order {
		order[i] = int32(r.IntN(len(skus)))
	}
	index := m.AppliedIndex()
	n := 0 // hold ids h<n> never repeat across runs
	for _, readers := range []int{1, 2} {
		b.Run(fmt.Sprintf("readers=%d", readers), func(b *testing.B) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(readers))
			stop := make(chan struct{})
			var applied atomic.Int64
			var wg sync.WaitGroup
			wg.Go(func() { applyLoad(b, m, &index, &n, skus, order, stop, &applied) })
			var next atomic.Int64
			b.SetParallelism(1)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				dst := store.SKUAvailability{Locations: make([]store.LocationAvailability, 0, 3)}
				i := int(next.Add(1) * 7919)
				for pb.Next() {
					if err := m.Availability("web", skus[order[i&(len(order)-1)]], &dst); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
			b.StopTimer()
			close(stop)
			wg.Wait()
			elapsed := b.Elapsed().Seconds()
			b.ReportMetric(float64(b.N)/elapsed, "reads/s")
			b.ReportMetric(float64(applied.Load())/elapsed, "applies/s")
		})
	}
}

// applyLoad applies Reserve/Release commands (reserve a new hold, release
// the previous one) paced by a 1 ms ticker to applyRate commands/s until
// stop closes. When readers hold every processor the applier only runs at
// preemption points, so each wake applies what is due since the start, in
// entries of at most 32 commands, as a leader batching a backlog would.
func applyLoad(b *testing.B, m *store.Machine, index *store.Revision, n *int, skus []store.SKU, order []int32,
	stop <-chan struct{}, applied *atomic.Int64) {
	const applyRate = 5000
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		for due := int64(time.Since(start).Seconds()*applyRate) - applied.Load(); due > 0; {
			e := entry(t0 + int64(*n)*int64(time.Millisecond))
			for range min(due, 32) {
				if *n%2 == 0 {
					sku := string(skus[order[*n&(len(order)-1)]])
					e.Commands = append(e.Commands, reserve("web", "h"+strconv.Itoa(*n), 0, line(sku, 1)))
				} else {
					e.Commands = append(e.Commands, release("web", "h"+strconv.Itoa(*n-1)))
				}
				*n++
			}
			*index++
			for i, r := range m.ApplyEntry(*index, e) {
				if r.Err != nil && !errors.Is(r.Err, store.ErrUnknownReservation) {
					b.Errorf("apply load: input %v: got %v, want ok", e.Commands[i], r.Err)
					return
				}
			}
			applied.Add(int64(len(e.Commands)))
			due -= int64(len(e.Commands))
		}
	}
}

// BenchmarkApplyReserve applies Reserve+Release pairs (one op = one pair) on
// a machine whose retry window is one second of log time and whose stamps
// advance 1 ms per pair, so remembered answers are pruned at a steady state.
func BenchmarkApplyReserve(b *testing.B) {
	m := store.New(store.Config{RetryWindowNanos: int64(time.Second)})
	var rows []*logv1.StockCount
	for i := range 1000 {
		rows = append(rows, row(fmt.Sprintf("item-%d", i), "ams", 1<<40, 1), row(fmt.Sprintf("item-%d", i), "fra", 1<<40, 1))
	}
	m.ApplyEntry(1, entry(t0, loc("ams"), loc("fra"), channel("web", 0, "ams", "fra"), setStock(rows...)))
	const ring = 1 << 14 // ids recur after 16 s of log time, long after they are pruned
	reserves, releases := make([]*logv1.Command, ring), make([]*logv1.Command, ring)
	for i := range ring {
		id := fmt.Sprintf("r%d", i)
		reserves[i] = reserve("web", id, 0, line(fmt.Sprintf("item-%d", i%1000), 1+int64(i%3)), line(fmt.Sprintf("item-%d", (i*7)%1000), 1))
		releases[i] = release("web", id)
	}
	index := store.Revision(1)
	ts := t0
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		index++
		ts += int64(time.Millisecond)
		if r := m.Apply(index, store.Timestamp(ts), reserves[i&(ring-1)]); r.Err != nil || r.Reservation.State != store.StateHeld {
			b.Fatalf("input %v: got %s, want a new hold", reserves[i&(ring-1)], describe(r))
		}
		index++
		if r := m.Apply(index, store.Timestamp(ts), releases[i&(ring-1)]); r.Err != nil {
			b.Fatalf("input %v: got %s, want ok", releases[i&(ring-1)], describe(r))
		}
		i++
	}
	b.ReportMetric(float64(2*b.N)/b.Elapsed().Seconds(), "commands/s")
}
