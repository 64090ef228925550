package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
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
				_, err := c.inv.Reserve(ctx, &stockdv1.ReserveRequest{Channel: "web", ReservationId: "b-" + strconv.FormatInt(i, 10),
					Lines: []*stockdv1.ReserveLine{{Sku: benchSKUs[i%int64(len(benchSKUs))], Quantity: 1}}})
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
			// Printed rather than logged: a parent benchmark cannot report metrics.
			fmt.Printf("%s: %d commands in %d entries, %.1f commands/entry\n", n.name, commands, entries, float64(commands)/float64(entries))
		}
	}
}

// benchSKUs is the benchmark catalog, built once so callers spend no time
// formatting ids on the shared CPUs.
var benchSKUs = func() []string {
	skus := make([]string, 1000)
	for i := range skus {
		skus[i] = fmt.Sprintf("SKU-%03d", i)
	}
	return skus
}()

// startBenchNode starts a node in a temp folder with a catalog of 1,000 SKUs
// with ample stock at one location.
func startBenchNode(b *testing.B, args ...string) *proc {
	b.Helper()
	p := startStockd(b, b.TempDir(), args...)
	seedBenchCatalog(b, dial(b, p.addr))
	return p
}

// seedBenchCatalog declares the catalog of setupCatalog and gives every
// benchmark SKU ample stock at ams.
func seedBenchCatalog(b *testing.B, c *clients) {
	b.Helper()
	setupCatalog(b, c)
	var rows []*stockdv1.StockCount
	for _, sku := range benchSKUs {
		rows = append(rows, &stockdv1.StockCount{Item: sku, Location: "ams", OnHandBaseUnits: 1 << 40, Version: 1})
	}
	if _, err := c.erp.SetStock(ctxT(b), &stockdv1.SetStockRequest{Rows: rows}); err != nil {
		b.Fatal(err)
	}
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
	reportLatency(b, lat)
}

// percentile returns the p-th percentile of l (non-empty), which it sorts.
func percentile(l []time.Duration, p int) time.Duration {
	slices.Sort(l)
	return l[len(l)*p/100]
}

// reportLatency reports throughput over b.N and the latency percentiles of
// the per-goroutine samples.
func reportLatency(b *testing.B, lat [][]time.Duration) {
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	if len(all) > 0 {
		b.ReportMetric(float64(percentile(all, 50).Microseconds()), "p50-µs")
		b.ReportMetric(float64(percentile(all, 99).Microseconds()), "p99-µs")
	}
}

// BenchmarkReadVsFloor measures GetAvailability of one SKU against the health
// check on the same node, through the same interceptor chain, at 4 and 64
// concurrent callers over loopback.
//
//	go test -run '^$' -bench ReadVsFloor -benchtime 3s -count 5 ./cmd/stockd/
func BenchmarkReadVsFloor(b *testing.B) {
	p := startBenchNode(b)
	c := dial(b, p.addr)
	h := healthpb.NewHealthClient(c.conn)
	var n atomic.Int64
	for _, callers := range []int{4, 64} {
		b.Run(fmt.Sprintf("callers=%d/floor=health", callers), func(b *testing.B) {
			runCallers(b, callers, func(ctx context.Context) error {
				_, err := h.Check(ctx, &healthpb.HealthCheckRequest{})
				return err
			})
		})
		b.Run(fmt.Sprintf("callers=%d/avail", callers), func(b *testing.B) {
			runCallers(b, callers, func(ctx context.Context) error {
				_, err := c.inv.GetAvailability(ctx, &stockdv1.GetAvailabilityRequest{Channel: "web",
					Skus: []string{benchSKUs[n.Add(1)%int64(len(benchSKUs))]}})
				return err
			})
		})
	}
}
