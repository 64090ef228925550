package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stockd/stockd/api/stockdv1"
)

// BenchmarkWatchFollowerLatency: on a 3-process cluster, ERP counts go to
// the leader open-loop at a fixed rate, one row each over 1,000 SKUs, and a
// Watch on a follower receives them; it reports p50 and p99 of the time from
// sending the SetStock to the follower's event, over b.N changes per rate.
//
//	go test -run '^$' -bench WatchFollowerLatency -benchtime 10000x ./cmd/stockd/
func BenchmarkWatchFollowerLatency(b *testing.B) {
	tc := startCluster(b, 3)
	leader := tc.waitLeader(10*time.Second, nil)
	setupCatalog(b, leader.c)
	var follower *clusterNode
	for _, nd := range tc.nodes {
		if nd != leader {
			follower = nd
			break
		}
	}
	var version atomic.Uint64
	for _, rate := range []int{50, 1000} {
		b.Run(fmt.Sprintf("rate=%d/s", rate), func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			st, err := follower.c.inv.Watch(ctx, &stockdv1.WatchRequest{Channel: "web", SkuPrefix: "L-"})
			if err != nil {
				b.Fatal(err)
			}
			var mu sync.Mutex
			arrived := make(map[uint64]time.Time)
			var mark atomic.Uint64
			recvDone := make(chan struct{})
			go func() {
				defer close(recvDone)
				inState := false
				for {
					m, err := st.Recv()
					if err != nil {
						return
					}
					now := time.Now()
					inState = inState || m.GetResync()
					mu.Lock()
					if !inState {
						for _, e := range m.GetEvents() {
							arrived[e.GetRevision()] = now
						}
					}
					mu.Unlock()
					if r := m.GetRevision(); r != 0 {
						inState = false
						mark.Store(max(mark.Load(), r))
					}
				}
			}()
			// Changes after the initial state are events.
			for deadline := time.Now().Add(10 * time.Second); mark.Load() == 0; {
				if time.Now().After(deadline) {
					b.Fatal("no initial state within 10 s")
				}
				time.Sleep(time.Millisecond) // a benchmark's setup, bounded
			}
			sent := make(map[uint64]time.Time)
			var maxRev atomic.Uint64
			var wg sync.WaitGroup
			sem := make(chan struct{}, 1024)
			start := time.Now()
			b.ResetTimer()
			for i := range b.N {
				due := start.Add(time.Duration(i) * time.Second / time.Duration(rate))
				if d := time.Until(due); d > 0 {
					time.Sleep(d) // the open-loop schedule, not a synchronisation
				}
				sem <- struct{}{}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
					defer ccancel()
					t0 := time.Now()
					resp, err := leader.c.erp.SetStock(cctx, &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{
						{Item: fmt.Sprintf("L-%03d", i%1000), Location: "ams", OnHandBaseUnits: int64(i), Version: version.Add(1)}}})
					if err != nil {
						return
					}
					mu.Lock()
					sent[resp.GetRevision()] = t0
					mu.Unlock()
					for r := maxRev.Load(); r < resp.GetRevision() && !maxRev.CompareAndSwap(r, resp.GetRevision()); r = maxRev.Load() {
					}
				}()
			}
			wg.Wait()
			deadline := time.Now().Add(30 * time.Second)
			for mark.Load() < maxRev.Load() && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond) // a benchmark's drain, bounded
			}
			b.StopTimer()
			cancel()
			<-recvDone
			var lat []time.Duration
			mu.Lock()
			for rev, t0 := range sent {
				if at, ok := arrived[rev]; ok {
					lat = append(lat, at.Sub(t0))
				}
			}
			mu.Unlock()
			if len(lat) == 0 {
				b.Fatalf("no event matched one of %d changes", len(sent))
			}
			slices.Sort(lat)
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
			b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
			b.ReportMetric(float64(len(lat)), "events")
		})
	}
}

// BenchmarkWatchFanOut: one stockd process, 1,000 Watch streams of every SKU
// (over 10 connections from this process), and a writer sending counts of
// 100 SKUs per SetStock (1,000 SKUs round robin) as fast as answers come; it
// reports the events delivered per second in total, from the first write
// until every stream has marked the last revision.
//
//	go test -run '^$' -bench 'WatchFanOut$' -benchtime 2000x ./cmd/stockd/
func BenchmarkWatchFanOut(b *testing.B) {
	const streams, conns, skus, rows = 1000, 10, 1000, 100
	dir := b.TempDir()
	p := startStockd(b, dir)
	c := dial(b, p.addr)
	setupCatalog(b, c)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	row := func(i, v int) *stockdv1.StockCount {
		return &stockdv1.StockCount{Item: fmt.Sprintf("F-%04d", i%skus), Location: "ams", OnHandBaseUnits: int64(v), Version: uint64(v)}
	}
	for i := 0; i < skus; i += rows {
		req := &stockdv1.SetStockRequest{}
		for j := range rows {
			req.Rows = append(req.Rows, row(i+j, 1))
		}
		if _, err := c.erp.SetStock(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	cs := make([]*clients, conns)
	for i := range cs {
		cs[i] = dial(b, p.addr)
	}
	var events atomic.Int64
	marks := make([]atomic.Uint64, streams)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i := range streams {
		st, err := cs[i%conns].inv.Watch(ctx, &stockdv1.WatchRequest{Channel: "web"})
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			inState := false
			for {
				m, err := st.Recv()
				if err != nil {
					return
				}
				inState = inState || m.GetResync()
				if !inState {
					events.Add(int64(len(m.GetEvents())))
				}
				if r := m.GetRevision(); r != 0 {
					inState = false
					marks[i].Store(r)
				}
			}
		}()
	}
	waitMarks := func(rev uint64) {
		deadline := time.Now().Add(60 * time.Second)
		for i := range marks {
			for marks[i].Load() < rev && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond) // a benchmark's drain, bounded
			}
		}
	}
	first, err := c.erp.SetStock(ctx, &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{row(0, 2)}})
	if err != nil {
		b.Fatal(err)
	}
	waitMarks(first.GetRevision())
	events.Store(0)
	start := time.Now()
	var last uint64
	n := 0
	for b.Loop() {
		req := &stockdv1.SetStockRequest{}
		for range rows {
			n++
			req.Rows = append(req.Rows, row(n, n+2))
		}
		resp, err := c.erp.SetStock(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		last = resp.GetRevision()
	}
	waitMarks(last)
	elapsed := time.Since(start)
	b.ReportMetric(float64(events.Load())/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(n)/elapsed.Seconds(), "changes/s")
}
