package main

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/stockd/stockd/api/stockdv1"
)

// BenchmarkReserveThroughRaft measures Reserve through single-node raft with
// fsync at 64 concurrent callers, against two floors in the same run: the
// health check on the same node, and the same binary with grouping off
// (--max-batch=1). Commands per entry come from the node's shutdown stats.
//
//	go test -run '^$' -bench ReserveThroughRaft -benchtime 5s ./cmd/stockd/
func BenchmarkReserveThroughRaft(b *testing.B) {
	const callers = 64
	batched := startBenchNode(b)
	unbatched := startBenchNode(b, "--max-batch", "1")
	var ids atomic.Int64

	b.Run("floor=health", func(b *testing.B) {
		c := dial(b, batched.addr)
		h := healthpb.NewHealthClient(c.conn)
		runCallers(b, callers, func(ctx context.Context) error {
			_, err := h.Check(ctx, &healthpb.HealthCheckRequest{})
			return err
		})
	})
	for _, n := range []struct {
		name string
		p    *proc
	}{{"reserve/batched", batched}, {"reserve/max-batch=1", unbatched}} {
		b.Run(n.name, func(b *testing.B) {
			c := dial(b, n.p.addr)
			runCallers(b, callers, func(ctx context.Context) error {
				i := ids.Add(1)
				_, err := c.inv.Reserve(ctx, &stockdv1.ReserveRequest{Channel: "web", ReservationId: fmt.Sprintf("b-%d", i),
					Lines: []*stockdv1.ReserveLine{{Sku: fmt.Sprintf("SKU-%03d", i%1000), Quantity: 1}}})
				return err
			})
		})
	}
	for _, n := range []struct {
		name string
		p    *proc
	}{{"batched", batched}, {"max-batch=1", unbatched}} {
		n.p.stop()
		st := n.p.waitLog("proposer stats", 5*time.Second)
		entries, commands := num(st["entries"]), num(st["commands"])
		if entries > 0 {
			b.Logf("%s: %d commands in %d entries, %.1f commands/entry", n.name, commands, entries, float64(commands)/float64(entries))
		}
	}
}

// startBenchNode starts a node in a temp folder with a catalog of 1,000 SKUs
// with ample stock at one location.
func startBenchNode(b *testing.B, args ...string) *proc {
	b.Helper()
	p := startStockd(b, b.TempDir(), args...)
	c := dial(b, p.addr)
	setupCatalog(b, c)
	var rows []*stockdv1.StockCount
	for i := 0; i < 1000; i++ {
		rows = append(rows, &stockdv1.StockCount{Item: fmt.Sprintf("SKU-%03d", i), Location: "ams", OnHandBaseUnits: 1 << 40, Version: 1})
	}
	if _, err := c.erp.SetStock(ctxT(b), &stockdv1.SetStockRequest{Rows: rows}); err != nil {
		b.Fatal(err)
	}
	return p
}

// runCallers runs b.N calls spread over n goroutines and reports throughput
// and client latency percentiles.
func runCallers(b *testing.B, n int, call func(ctx context.Context) error) {
	b.Helper()
	var next atomic.Int64
	lat := make([][]time.Duration, n)
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	b.ResetTimer()
	for g := 0; g < n; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			ctx := context.Background()
			for next.Add(1) <= int64(b.N) {
				start := time.Now()
				if err := call(ctx); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				lat[g] = append(lat[g], time.Since(start))
			}
		}(g)
	}
	wg.Wait()
	b.StopTimer()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)*50/100].Microseconds()), "p50-µs")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	}
}
