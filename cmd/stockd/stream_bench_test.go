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

	"github.com/stockd/stockd/api/stockdv1"
)

// BenchmarkReserveStream compares Inventory.ReserveStream with unary Reserve
// in one run, each on its own single node (fsync on) so that each mode's
// commands per entry come from that node's proposer stats: unary at 64
// concurrent callers, one stream with 256 requests in flight, and 8 streams
// with 256 in flight each.
//
//	go test -run '^$' -bench ReserveStream -benchtime 5s ./cmd/stockd/
func BenchmarkReserveStream(b *testing.B) {
	type mode struct {
		name    string
		streams int // 0: unary
	}
	modes := []mode{{"unary/callers=64", 0}, {"stream/streams=1/inflight=256", 1}, {"stream/streams=8/inflight=256", 8}}
	nodes := make([]*proc, len(modes))
	for i := range modes {
		nodes[i] = startBenchNode(b)
	}
	var ids atomic.Int64
	for i, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			c := dial(b, nodes[i].addr)
			if m.streams == 0 {
				runCallers(b, 64, func(ctx context.Context) error {
					id := ids.Add(1)
					_, err := c.inv.Reserve(ctx, benchReserve(id))
					return err
				})
				return
			}
			runStreams(b, c, m.streams, 256, &ids)
		})
	}
	for i, m := range modes {
		nodes[i].stop()
		st := nodes[i].waitLog("proposer stats", 5*time.Second)
		if entries, commands := num(st["entries"]), num(st["commands"]); entries > 0 {
			// Printed rather than logged: a parent benchmark cannot report metrics.
			fmt.Printf("%s: %d commands in %d entries, %.1f commands/entry\n", m.name, commands, entries, float64(commands)/float64(entries))
		}
	}
}

func benchReserve(id int64) *stockdv1.ReserveRequest {
	return &stockdv1.ReserveRequest{Channel: "web", ReservationId: "s-" + strconv.FormatInt(id, 10),
		Lines: []*stockdv1.ReserveLine{{Sku: benchSKUs[id%int64(len(benchSKUs))], Quantity: 1}}}
}

// runStreams sends b.N reserves over n streams, each keeping up to inflight
// requests unanswered, and reports throughput and per-request latency.
func runStreams(b *testing.B, c *clients, n, inflight int, ids *atomic.Int64) {
	b.Helper()
	var next atomic.Int64
	lat := make([][]time.Duration, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	b.ResetTimer()
	for g := range n {
		wg.Go(func() {
			errs <- oneStream(c, b.N, inflight, &next, ids, &lat[g])
		})
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	reportLatency(b, lat)
}

// oneStream drives one ReserveStream until the shared counter passes total.
func oneStream(c *clients, total, inflight int, next, ids *atomic.Int64, lat *[]time.Duration) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := c.inv.ReserveStream(ctx)
	if err != nil {
		return err
	}
	window := make(chan struct{}, inflight)
	var mu sync.Mutex
	started := map[string]time.Time{}
	recvErr := make(chan error, 1)
	go func() {
		for {
			resp, err := st.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			if e := resp.GetError(); e != nil {
				recvErr <- fmt.Errorf("request %s: code %d: %s", resp.GetRequestId(), e.GetCode(), e.GetMessage())
				return
			}
			mu.Lock()
			*lat = append(*lat, time.Since(started[resp.GetRequestId()]))
			delete(started, resp.GetRequestId())
			mu.Unlock()
			<-window
		}
	}()
	for next.Add(1) <= int64(total) {
		select {
		case window <- struct{}{}:
		case err := <-recvErr:
			return err
		}
		id := ids.Add(1)
		rid := strconv.FormatInt(id, 10)
		mu.Lock()
		started[rid] = time.Now()
		mu.Unlock()
		if err := st.Send(&stockdv1.ReserveStreamRequest{RequestId: rid, Op: &stockdv1.ReserveStreamRequest_Reserve{Reserve: benchReserve(id)}}); err != nil {
			return err
		}
	}
	if err := st.CloseSend(); err != nil {
		return err
	}
	if err := <-recvErr; err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if len(window) != 0 {
		return fmt.Errorf("stream ended with %d requests unanswered", len(window))
	}
	return nil
}
