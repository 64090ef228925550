package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/stockd/stockd/api/stockdv1"
)

// BenchmarkCluster measures a 3-process cluster on this machine: Reserve at
// 64 callers through the leader against the health floor on the same node,
// and one caller reading on a follower while writes arrive open-loop.
//
//	go test -run '^$' -bench 'Cluster$' -benchtime 3s ./cmd/stockd/
func BenchmarkCluster(b *testing.B) {
	tc := startCluster(b, 3, strings.Fields(os.Getenv("STOCKD_BENCH_ARGS"))...)
	leader := tc.waitLeader(10*time.Second, nil)
	seedBenchCatalog(b, leader.c)
	var follower *clusterNode
	for _, nd := range tc.nodes {
		if nd != leader {
			follower = nd
			break
		}
	}
	var ids atomic.Int64
	reserve := func(c *clients) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			i := ids.Add(1)
			_, err := c.inv.Reserve(ctx, &stockdv1.ReserveRequest{Channel: "web", ReservationId: "c-" + strconv.FormatInt(i, 10),
				Lines: []*stockdv1.ReserveLine{{Sku: benchSKUs[i%int64(len(benchSKUs))], Quantity: 1}}})
			return err
		}
	}
	health := func(c *clients) func(ctx context.Context) error {
		h := healthpb.NewHealthClient(c.conn)
		return func(ctx context.Context) error {
			_, err := h.Check(ctx, &healthpb.HealthCheckRequest{})
			return err
		}
	}
	b.Run("callers=64/floor=health-on-leader", func(b *testing.B) { runCallers(b, 64, health(leader.c)) })
	// With $STOCKD_PROFILE_DIR set, every call of the sub-benchmark (the
	// testing package's short sizing calls too) profiles the nodes into
	// reserve-CALL-NODE.{cpu,allocs,heap}: see profileNodes.
	var call int
	b.Run("callers=64/reserve-via-leader", func(b *testing.B) {
		before := gcCPUSeconds(b, leader)
		call++
		stopProfiles := profileNodes(b, tc, fmt.Sprintf("reserve-%d", call))
		runCallers(b, 64, reserve(leader.c))
		// The collector's compulsory CPU on the leader: it grows with the
		// live holds earlier runs on the same cluster left. Read before
		// waiting for the profiles, which may run past the load.
		b.ReportMetric(gcCPUSeconds(b, leader)-before, "leader-gc-cpu-s")
		stopProfiles()
	})

	const writeRate = 8000
	var n atomic.Int64
	read := func(ctx context.Context) error {
		_, err := follower.c.inv.GetAvailability(ctx, &stockdv1.GetAvailabilityRequest{Channel: "web",
			Skus: []string{benchSKUs[n.Add(1)%int64(len(benchSKUs))]}})
		return err
	}
	// One caller alternates the read and the floor (health on the same
	// follower, same connection), so both see the same moments of the
	// write load and the same scheduler: measured one after the other, a
	// few seconds apart, their p99s differed by whatever the shared cores
	// did in each window (+1.5 to +15 ms on 2026-11-28).
	b.Run(fmt.Sprintf("writes=%d/s/callers=1/avail-and-floor-on-follower", writeRate), func(b *testing.B) {
		before := handlingBuckets(b, follower, "GetAvailability")
		stop := openLoopWrites(writeRate, reserve(leader.c))
		runInterleaved(b, health(follower.c), read)
		achieved := stop()
		b.ReportMetric(achieved, "writes/s")
		// The follower's own view (grpc_server_handling_seconds): the
		// bucket bound under which 99% of these reads ended.
		b.ReportMetric(bucketQuantile(before, handlingBuckets(b, follower, "GetAvailability"), 0.99)*1e6, "server-p99-le-µs")
	})
}

// runInterleaved runs floor and call in turn from one goroutine, b.N times
// each, the order flipped every round, and reports both p50s and p99s and
// call's p99 over the floor's.
func runInterleaved(b *testing.B, floor, call func(ctx context.Context) error) {
	b.Helper()
	ctx := context.Background()
	var lf, lc []time.Duration
	timed := func(f func(context.Context) error, into *[]time.Duration) {
		start := time.Now()
		if err := f(ctx); err != nil {
			b.Fatal(err)
		}
		*into = append(*into, time.Since(start))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%2 == 0 {
			timed(floor, &lf)
			timed(call, &lc)
		} else {
			timed(call, &lc)
			timed(floor, &lf)
		}
	}
	b.StopTimer()
	pct := func(l []time.Duration, p int) float64 { return float64(percentile(l, p).Microseconds()) }
	b.ReportMetric(pct(lf, 50), "floor-p50-µs")
	b.ReportMetric(pct(lf, 99), "floor-p99-µs")
	b.ReportMetric(pct(lc, 50), "p50-µs")
	b.ReportMetric(pct(lc, 99), "p99-µs")
	b.ReportMetric(pct(lc, 99)-pct(lf, 99), "p99-over-floor-µs")
}

// openLoopWrites issues call at a fixed rate (in 1 ms bursts) regardless of
// how fast answers come, so slow answers do not lower the load; at most 1,024
// are in flight. stop ends it and returns the rate of writes that succeeded.
func openLoopWrites(rate int, call func(ctx context.Context) error) (stop func() float64) {
	done := make(chan struct{})
	var ok atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 1024)
	start := time.Now()
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		issued := 0
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				due := int(now.Sub(start).Seconds()*float64(rate)) - issued
				for ; due > 0; due-- {
					select {
					case sem <- struct{}{}:
					default:
						continue // over the in-flight cap: this arrival is dropped, not delayed
					}
					issued++
					wg.Add(1)
					go func() {
						defer wg.Done()
						defer func() { <-sem }()
						ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
						defer cancel()
						if call(ctx) == nil {
							ok.Add(1)
						}
					}()
				}
			}
		}
	}()
	return func() float64 {
		close(done)
		elapsed := time.Since(start)
		wg.Wait()
		return float64(ok.Load()) / elapsed.Seconds()
	}
}

// BenchmarkFailover kills the leader of a 3-process cluster with SIGKILL ten
// times and reports the time from the kill to the first successful write
// through a surviving node (median and max), restarting the killed node
// between runs.
//
//	go test -run '^$' -bench Failover -benchtime 1x ./cmd/stockd/
func BenchmarkFailover(b *testing.B) {
	const runs = 10
	tc := startCluster(b, 3)
	seedBenchCatalog(b, tc.waitLeader(10*time.Second, nil).c)
	var took []time.Duration
	var ids int
	for run := 0; run < runs; run++ {
		tc.waitMembers(3, 30*time.Second)
		leader := tc.waitLeader(10*time.Second, nil)
		var survivors []*clusterNode
		for _, nd := range tc.nodes {
			if nd != leader {
				survivors = append(survivors, nd)
			}
		}
		killed := time.Now()
		tc.kill(leader)
		for attempt := 0; ; attempt++ {
			ids++
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := survivors[attempt%len(survivors)].c.inv.Reserve(ctx, &stockdv1.ReserveRequest{Channel: "web",
				ReservationId: "f-" + strconv.Itoa(ids), Lines: []*stockdv1.ReserveLine{{Sku: benchSKUs[0], Quantity: 1}}})
			cancel()
			if err == nil {
				break
			}
			if time.Since(killed) > 30*time.Second {
				b.Fatalf("run %d: no successful write within 30s of killing %s: last error %v", run, leader.id, err)
			}
		}
		took = append(took, time.Since(killed))
		tc.start(leader)
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Milliseconds()), "median-ms")
	b.ReportMetric(float64(took[len(took)-1].Milliseconds()), "max-ms")
	fmt.Printf("failover times: %v\n", took)
}

// handlingBuckets scrapes nd's /metrics and returns the cumulative counts of
// grpc_server_handling_seconds for method, by bucket bound (seconds).
func handlingBuckets(b *testing.B, nd *clusterNode, method string) map[float64]float64 {
	b.Helper()
	out := map[float64]float64{}
	for _, line := range strings.Split(scrape(b, nd), "\n") {
		if !strings.HasPrefix(line, "grpc_server_handling_seconds_bucket{") || !strings.Contains(line, `grpc_method="`+method+`"`) {
			continue
		}
		_, rest, _ := strings.Cut(line, `le="`)
		le, rest, _ := strings.Cut(rest, `"`)
		bound, err1 := strconv.ParseFloat(le, 64)
		count, err2 := strconv.ParseFloat(strings.TrimSpace(rest[strings.LastIndex(rest, " ")+1:]), 64)
		if err1 == nil && err2 == nil {
			out[bound] = count
		}
	}
	if len(out) == 0 {
		b.Fatalf("scrape %s: no grpc_server_handling_seconds buckets for %s", nd.id, method)
	}
	return out
}

// scrape returns nd's /metrics page.
func scrape(b *testing.B, nd *clusterNode) string {
	b.Helper()
	nd.mu.Lock()
	p := nd.p
	nd.mu.Unlock()
	resp, err := http.Get("http://" + p.waitLog("http listening", 5*time.Second)["addr"].(string) + "/metrics")
	if err != nil {
		b.Fatalf("scrape %s: %v", nd.id, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatalf("scrape %s: %v", nd.id, err)
	}
	return string(body)
}

// gcCPUSeconds is nd's garbage-collection CPU so far, less what its idle mark
// workers spent on CPU nothing else wanted (the runtime's compulsory GC CPU).
func gcCPUSeconds(b *testing.B, nd *clusterNode) float64 {
	b.Helper()
	values := map[string]float64{}
	for _, line := range strings.Split(scrape(b, nd), "\n") {
		if name, v, ok := strings.Cut(line, " "); ok && strings.HasPrefix(name, "go_cpu_classes_gc_") {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				values[name] = f
			}
		}
	}
	total, ok1 := values["go_cpu_classes_gc_total_cpu_seconds_total"]
	idle, ok2 := values["go_cpu_classes_gc_mark_idle_cpu_seconds_total"]
	if !ok1 || !ok2 {
		b.Fatalf("scrape %s: no go_cpu_classes_gc_total/mark_idle metrics", nd.id)
	}
	return total - idle
}

// bucketQuantile is the smallest bucket bound under which at least q of the
// calls between the scrapes before and after ended (+Inf if none).
func bucketQuantile(before, after map[float64]float64, q float64) float64 {
	bounds := make([]float64, 0, len(after))
	for le := range after {
		bounds = append(bounds, le)
	}
	slices.Sort(bounds)
	total := after[math.Inf(1)] - before[math.Inf(1)]
	for _, le := range bounds {
		if total > 0 && after[le]-before[le] >= q*total {
			return le
		}
	}
	return math.Inf(1)
}
