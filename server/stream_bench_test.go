package server

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

	"github.com/stockd/stockd/api/stockdv1"
)

// BenchmarkReserveThroughput compares unary Reserve from 64 callers with
// ReserveStream (one stream with 256 requests in flight, and 8 such
// streams), over bufconn behind the full chain, on a real store.Machine
// behind the batching proposer (cluster-like grouping, no raft, no fsync).
// Every op is one successful reserve of a new reservation; it reports
// reserves/s and the mean commands per log entry.
func BenchmarkReserveThroughput(b *testing.B) {
	b.Run("unary/callers=64", func(b *testing.B) {
		h := benchReserveHarness(b)
		var next atomic.Int64
		run := func(ctx context.Context) error {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return nil
				}
				resp, err := h.inv.Reserve(ctx, benchReserveRequest(i))
				if err != nil {
					return fmt.Errorf("reserve %d: %w", i, err)
				}
				if resp.GetReservation() == nil {
					return fmt.Errorf("reserve %d: got %v, want a hold", i, resp)
				}
			}
		}
		h.measure(b, 64, run)
	})
	for _, streams := range []int{1, 8} {
		b.Run(fmt.Sprintf("stream/streams=%d/inflight=256", streams), func(b *testing.B) {
			h := benchReserveHarness(b)
			var next atomic.Int64
			run := func(ctx context.Context) error {
				return benchStream(ctx, h.inv, 256, func() (int64, bool) {
					i := next.Add(1)
					return i, i <= int64(b.N)
				})
			}
			h.measure(b, streams, run)
		})
	}
}

// benchReserveHarness is a stream harness behind the batching proposer with
// a large stock of ROSE at WH1, so every reserve holds.
func benchReserveHarness(b *testing.B) *streamHarness {
	h := newStreamHarness(b, withBatching())
	h.seed(b)
	h.setStock(b, "ROSE", "WH1", 1<<50, 2)
	return h
}

func benchReserveRequest(i int64) *stockdv1.ReserveRequest {
	return &stockdv1.ReserveRequest{
		Channel: "web", ReservationId: "bench-" + strconv.FormatInt(i, 10),
		Lines: []*stockdv1.ReserveLine{{Sku: "ROSE", Quantity: 1, Location: "WH1"}},
	}
}

// measure runs run on workers goroutines until they return, timing them, and
// reports reserves/s and commands per entry.
func (h *streamHarness) measure(b *testing.B, workers int, run func(ctx context.Context) error) {
	ctx := context.Background()
	entries0, commands0 := h.batch.stats()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	entries, commands := h.batch.stats()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "reserves/s")
	if entries > entries0 {
		b.ReportMetric(float64(commands-commands0)/float64(entries-entries0), "cmds/entry")
	}
}

// benchStream sends reserves on one stream, numbered by next until it says
// stop, with at most inflight unanswered, then closes the stream; every
// answer must be a hold.
func benchStream(ctx context.Context, inv stockdv1.InventoryClient, inflight int, next func() (int64, bool)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := inv.ReserveStream(ctx)
	if err != nil {
		return fmt.Errorf("open stream: %w", err)
	}
	window := make(chan struct{}, inflight)
	sendErr := make(chan error, 1)
	go func() {
		for {
			i, ok := next()
			if !ok {
				sendErr <- st.CloseSend()
				return
			}
			select {
			case window <- struct{}{}:
			case <-ctx.Done():
				sendErr <- ctx.Err()
				return
			}
			req := &stockdv1.ReserveStreamRequest{
				RequestId: strconv.FormatInt(i, 10),
				Op:        &stockdv1.ReserveStreamRequest_Reserve{Reserve: benchReserveRequest(i)},
			}
			if err := st.Send(req); err != nil {
				sendErr <- err
				return
			}
		}
	}()
	for {
		a, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			cancel()
			<-sendErr
			return fmt.Errorf("stream: %w", err)
		}
		if a.GetReserve() == nil {
			cancel()
			<-sendErr
			return fmt.Errorf("stream request %s: got %v, want a hold", a.GetRequestId(), a)
		}
		<-window
	}
	if err := <-sendErr; err != nil {
		return fmt.Errorf("stream send: %w", err)
	}
	return nil
}

// BenchmarkReserveStreamBesideStalled: 4 streams keeping 256 reserves in
// flight each, on a server with no other stream and on one that also holds a
// stalled stream (1,024 requests read, its transport full). Each op is one
// answered reserve; compare answers/s between the two.
func BenchmarkReserveStreamBesideStalled(b *testing.B) {
	for _, stalled := range []bool{false, true} {
		b.Run(fmt.Sprintf("stalled=%t", stalled), func(b *testing.B) {
			h := newStreamHarness(b, withoutLeakCheck())
			h.seed(b)
			h.setStock(b, "BULK", "WH1", 1_000_000_000, 1)
			h.setStock(b, "STALL", "WH2", 1_000_000_000, 1)
			ctx := testContext(b)
			if stalled {
				_, unstall := h.stall(b, ctx, "stalled")
				defer unstall()
			}
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			var answered atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, 4)
			b.ResetTimer()
			start := time.Now()
			for k := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := pump(ctx, h.inv, fmt.Sprintf("busy/%d", k), &answered); err != nil {
						errs <- err
					}
				}()
			}
			waitUntil(b, fmt.Sprintf("%d answers", b.N), func() bool { return len(errs) > 0 || answered.Load() >= int64(b.N) })
			elapsed := time.Since(start)
			b.StopTimer()
			cancel()
			wg.Wait()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			b.ReportMetric(float64(answered.Load())/elapsed.Seconds(), "answers/s")
		})
	}
}
