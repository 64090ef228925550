package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/stockd/stockd/api/stockdv1"
)

const (
	// pushRows is the rows per PushStock batch.
	pushRows = 1000
	// pushItems times the two bench locations (ams, fra) is 100,000 counters.
	pushItems = 50_000
	// readRate is the open-loop readers' rate, calls per second.
	readRate = 5000
)

// pushItemIDs are the pushed items, built once.
var pushItemIDs = func() []string {
	ids := make([]string, pushItems)
	for i := range ids {
		ids[i] = fmt.Sprintf("PI-%05d", i)
	}
	return ids
}()

// BenchmarkPushStock measures Erp.PushStock ingestion on a single node
// (fsync on): one stream pushing batches of 1,000 rows over 100,000 counters
// (50,000 items x ams, fra) with increasing versions, while a reader calls
// GetAvailability open-loop at 5,000/s on the pushed items. Its p99, taken
// from each call's intended send time, is compared with the floor: the same
// open-loop reader against Health/Check with no ingestion, in the same run on
// the same node. idle-avail is GetAvailability at the same rate with no
// ingestion, for reference. The target: >= 100,000 rows/s with the
// reader's p99 at most 1.5x the floor's.
//
//	go test -run '^$' -bench PushStock -benchtime 5s ./cmd/stockd/
func BenchmarkPushStock(b *testing.B) {
	p := startBenchNode(b)
	c := dial(b, p.addr)
	// The ERP streams on its own connection, as an adapter process would:
	// on the readers' connection its 100 KB batches would queue their calls
	// behind them in one HTTP/2 transport.
	ec := dial(b, p.addr)
	h := healthpb.NewHealthClient(c.conn)
	var floorP99, idleP99, ingestP99 time.Duration
	var rowsPerSec float64
	var n atomic.Int64
	avail := func(ctx context.Context) error {
		i := n.Add(1) * 7919 % pushItems
		_, err := c.inv.GetAvailability(ctx, &stockdv1.GetAvailabilityRequest{Channel: "web",
			Skus: []string{pushItemIDs[i]}})
		return err
	}
	// Every counter exists before anyone reads it.
	var batches int
	push := func(b *testing.B, count int) {
		if err := pushBatches(ec, batches, count, 0); err != nil {
			b.Fatal(err)
		}
		batches += count
	}
	push(b, 2*pushItems/pushRows)

	b.Run("floor=health", func(b *testing.B) {
		lat, err := openLoop(b.N, nil, func(ctx context.Context) error {
			_, err := h.Check(ctx, &healthpb.HealthCheckRequest{})
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		floorP99 = reportOpenLoop(b, lat)
	})
	b.Run("idle-avail", func(b *testing.B) {
		lat, err := openLoop(b.N, nil, avail)
		if err != nil {
			b.Fatal(err)
		}
		idleP99 = reportOpenLoop(b, lat)
	})
	health := func(ctx context.Context) error {
		_, err := h.Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	// ingestWith pushes b.N batches (paced, or at full speed) while the readers
	// take turns in one open loop at readRate; it returns the rows/s and
	// each reader's latencies.
	ingestWith := func(b *testing.B, pace time.Duration, readers ...func(context.Context) error) (float64, [][]time.Duration) {
		stop := make(chan struct{})
		type readOut struct {
			lat [][]time.Duration
			err error
		}
		read := make(chan readOut, 1)
		go func() {
			lat, err := openLoopTurns(0, stop, readers...)
			read <- readOut{lat, err}
		}()
		b.ResetTimer()
		err := pushBatches(ec, batches, b.N, pace)
		b.StopTimer()
		close(stop)
		r := <-read
		batches += b.N
		if err != nil {
			b.Fatal(err)
		}
		if r.err != nil {
			b.Fatal(r.err)
		}
		rowsPerSec := float64(b.N*pushRows) / b.Elapsed().Seconds()
		b.ReportMetric(rowsPerSec, "rows/s")
		return rowsPerSec, r.lat
	}
	ingest := func(b *testing.B, pace time.Duration) (float64, time.Duration) {
		rows, lat := ingestWith(b, pace, avail)
		return rows, reportOpenLoop(b, lat[0])
	}
	var pacedRows float64
	var pacedP99 time.Duration
	b.Run("ingest=max+avail", func(b *testing.B) { rowsPerSec, ingestP99 = ingest(b, 0) })
	// 100 batches/s: the 100,000 rows/s, no more, so the reader
	// shares the CPUs with exactly the target load.
	b.Run("ingest=100k+avail", func(b *testing.B) { pacedRows, pacedP99 = ingest(b, 10*time.Millisecond) })
	// The same load with the floor beside the reader, each at 5,000/s,
	// taking turns in one open loop: read and floor at the same moments of
	// the ingestion, so their ratio is the read path's own sensitivity to
	// it, not the difference between two windows of a shared machine.
	var turnsAvailP99, turnsFloorP99 time.Duration
	b.Run("ingest=100k+avail-and-floor-in-turns", func(b *testing.B) {
		_, lat := ingestWith(b, 10*time.Millisecond, avail, health)
		if len(lat[0]) == 0 || len(lat[1]) == 0 {
			return
		}
		turnsAvailP99 = reportOpenLoop(b, lat[0])
		turnsFloorP99 = percentile(lat[1], 99)
		b.ReportMetric(float64(turnsFloorP99.Microseconds()), "floor-p99-µs")
		b.ReportMetric(float64(turnsAvailP99)/float64(turnsFloorP99), "p99-ratio-to-floor")
	})

	if floorP99 > 0 && ingestP99 > 0 && pacedP99 > 0 {
		// Printed rather than logged: a parent benchmark cannot report metrics.
		fmt.Printf("PushStock: floor (health) p99 %v; idle GetAvailability p99 %v\n", floorP99, idleP99)
		fmt.Printf("PushStock: max ingestion %.0f rows/s, reader p99 %v, ratio to floor %.2f (target <= 1.5)\n",
			rowsPerSec, ingestP99, float64(ingestP99)/float64(floorP99))
		fmt.Printf("PushStock: paced ingestion %.0f rows/s, reader p99 %v, ratio to floor %.2f (target <= 1.5)\n",
			pacedRows, pacedP99, float64(pacedP99)/float64(floorP99))
	}
	if turnsFloorP99 > 0 {
		fmt.Printf("PushStock: paced ingestion, reader and floor in turns: reader p99 %v, floor p99 %v, ratio %.2f (target <= 1.5)\n",
			turnsAvailP99, turnsFloorP99, float64(turnsAvailP99)/float64(turnsFloorP99))
	}
}

// pushBatches pushes count batches of pushRows rows on one PushStock stream,
// pipelined, starting at batch number first: batch k covers the next 1,000
// of the 100,000 counters in turn, with version k/100+1 (so every pass over
// the counters raises their version), and checks every row was applied.
// With pace > 0 it sends one batch per pace, else as fast as the stream takes
// them.
func pushBatches(c *clients, first, count int, pace time.Duration) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := c.erp.PushStock(ctx)
	if err != nil {
		return err
	}
	const counters = 2 * pushItems
	sendErr := make(chan error, 1)
	go func() {
		var tick <-chan time.Time
		if pace > 0 {
			t := time.NewTicker(pace)
			defer t.Stop()
			tick = t.C
		}
		for k := first; k < first+count; k++ {
			if tick != nil {
				select {
				case <-tick:
				case <-ctx.Done():
					sendErr <- ctx.Err()
					return
				}
			}
			rows := make([]*stockdv1.StockCount, pushRows)
			version := uint64(k/(counters/pushRows) + 1)
			for j := range rows {
				ctr := (k*pushRows + j) % counters
				loc := "ams"
				if ctr%2 == 1 {
					loc = "fra"
				}
				rows[j] = &stockdv1.StockCount{Item: pushItemIDs[ctr/2], Location: loc,
					OnHandBaseUnits: int64(1000 + k%1000), Version: version}
			}
			if err := st.Send(&stockdv1.PushStockRequest{BatchId: "pb-" + strconv.Itoa(k),
				Batch: &stockdv1.SetStockRequest{Rows: rows}}); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- st.CloseSend()
	}()
	for k := first; ; k++ {
		a, err := st.Recv()
		if errors.Is(err, io.EOF) {
			if k != first+count {
				return fmt.Errorf("push: stream ended after %d answers, want %d", k-first, count)
			}
			break
		}
		if err != nil {
			cancel()
			<-sendErr
			return fmt.Errorf("push: %w", err)
		}
		if want := "pb-" + strconv.Itoa(k); a.GetBatchId() != want || a.GetErrorCode() != 0 || a.GetResult().GetApplied() != pushRows {
			cancel()
			<-sendErr
			return fmt.Errorf("push: got answer %s (error %d %q, %d applied), want %s with %d applied",
				a.GetBatchId(), a.GetErrorCode(), a.GetErrorMessage(), a.GetResult().GetApplied(), want, pushRows)
		}
	}
	return <-sendErr
}

// openLoop calls call at readRate per second, each in its own goroutine,
// whatever the answers' pace, until it has launched max calls (max > 0) or
// stop is closed. Each latency runs from the call's intended send time, so a
// stall of the server or of the pacing shows in full (no coordinated
// omission). It returns once every call has ended.
func openLoop(max int, stop <-chan struct{}, call func(ctx context.Context) error) ([]time.Duration, error) {
	lat, err := openLoopTurns(max, stop, call)
	return lat[0], err
}

// openLoopTurns is openLoop taking turns, each call at readRate: arrival i
// calls calls[i mod len(calls)], and lat[k] holds the latencies of
// calls[k]. Calls that take turns see the same moments of whatever else
// loads the machine.
func openLoopTurns(max int, stop <-chan struct{}, calls ...func(ctx context.Context) error) (lat [][]time.Duration, firstErr error) {
	interval := time.Second / time.Duration(readRate*len(calls))
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	lat = make([][]time.Duration, len(calls))
	tick := time.NewTicker(interval)
	defer tick.Stop()
	start := time.Now()
	launched := 0
	for max <= 0 || launched < max {
		select {
		case <-stop:
			wg.Wait()
			return lat, firstErr
		case <-tick.C:
		}
		// Launch every call due by now: a late tick does not lose calls.
		due := int(time.Since(start)/interval) + 1
		for ; launched < due && (max <= 0 || launched < max); launched++ {
			intended := start.Add(time.Duration(launched) * interval)
			k := launched % len(calls)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			wg.Go(func() {
				defer cancel()
				err := calls[k](ctx)
				d := time.Since(intended)
				mu.Lock()
				defer mu.Unlock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				lat[k] = append(lat[k], d)
			})
		}
	}
	wg.Wait()
	return lat, firstErr
}

// reportOpenLoop reports the open-loop latency percentiles and returns p99.
func reportOpenLoop(b *testing.B, lat []time.Duration) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	p99 := percentile(lat, 99)
	b.ReportMetric(float64(len(lat)), "reads")
	b.ReportMetric(float64(percentile(lat, 50).Microseconds()), "p50-µs")
	b.ReportMetric(float64(p99.Microseconds()), "p99-µs")
	return p99
}
