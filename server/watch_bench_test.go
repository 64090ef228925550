package server

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stockd/stockd/api/stockdv1"
)

// BenchmarkWatchApply measures commands applied per second through the test
// proposer (no gRPC on the write path) with no watcher, with a watcher whose
// client never reads, and with one that reads: a watcher must not slow
// apply. go test -run '^$' -bench WatchApply -count 5 ./server/
func BenchmarkWatchApply(b *testing.B) {
	for _, mode := range []string{"no watcher", "stalled watcher", "reading watcher"} {
		b.Run(mode, func(b *testing.B) {
			h := newHarness(b, withLogLevel(8), withWatchBuffer(1000))
			h.seed(b)
			ctx, cancel := context.WithCancel(testContext(b))
			defer cancel()
			switch mode {
			case "stalled watcher":
				if _, err := h.inv.Watch(ctx, &stockdv1.WatchRequest{Channel: "web"}); err != nil {
					b.Fatal(err)
				}
			case "reading watcher":
				h.watch(b, &stockdv1.WatchRequest{Channel: "web"})
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				if _, err := h.p.Propose(ctx, setStockCmd(fmt.Sprintf("B-%04d", i%5000), "WH1", int64(i), uint64(i))); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commands/s")
		})
	}
}

// watchCounter counts the events one Watch stream delivers and its last mark.
type watchCounter struct {
	events atomic.Int64
	mark   atomic.Uint64
}

// BenchmarkWatchFanOut measures events delivered per second in total to
// 1,000 watchers of every SKU on one node (over bufconn, the full
// interceptor chain), while counts of 1,000 SKUs are applied as fast as one
// writer can. go test -run '^$' -bench WatchFanOut -benchtime 20000x ./server/
func BenchmarkWatchFanOut(b *testing.B) {
	const watchers, skus = 1000, 1000
	h := newHarness(b, withLogLevel(8))
	h.seed(b)
	ctx, cancel := context.WithCancel(testContext(b))
	defer cancel()
	for i := range skus {
		if _, err := h.p.Propose(ctx, setStockCmd(fmt.Sprintf("F-%04d", i), "WH1", 1, 1)); err != nil {
			b.Fatal(err)
		}
	}
	counters := make([]*watchCounter, watchers)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i := range counters {
		c := &watchCounter{}
		counters[i] = c
		st, err := h.inv.Watch(ctx, &stockdv1.WatchRequest{Channel: "web"})
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := st.Recv()
				if err != nil {
					return
				}
				if !m.GetResync() {
					c.events.Add(int64(len(m.GetEvents())))
				}
				if r := m.GetRevision(); r != 0 {
					c.mark.Store(r)
				}
			}
		}()
	}
	start := h.rev()
	for _, c := range counters {
		for c.mark.Load() < start {
			time.Sleep(time.Millisecond) // a benchmark's setup; tests wait on conditions
		}
	}
	began := time.Now()
	i := 0
	for b.Loop() {
		i++
		if _, err := h.p.Propose(ctx, setStockCmd(fmt.Sprintf("F-%04d", i%skus), "WH1", int64(i+1), uint64(i+1))); err != nil {
			b.Fatal(err)
		}
	}
	end := h.rev()
	for _, c := range counters {
		for c.mark.Load() < end {
			time.Sleep(time.Millisecond)
		}
	}
	elapsed := time.Since(began)
	var total int64
	for _, c := range counters {
		total += c.events.Load()
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "changes/s")
}
