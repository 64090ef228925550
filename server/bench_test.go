package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

// benchServer serves a seeded machine on 127.0.0.1 over TCP behind the full
// chain, logging at info (the production hot path), and returns a client
// connection to it. opts add to the chain (WithGRPCMetrics).
func benchServer(b *testing.B, gm *grpcprom.ServerMetrics) *grpc.ClientConn {
	b.Helper()
	m := store.New(store.DefaultConfig())
	p := newFakeProposer(m)
	logger := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv := New(Config{Proposer: p, Reader: m, Logger: logger})
	addr := serveTCP(b, srv, ServerOptionsFor(ChainConfig{Logger: logger, GRPCMetrics: gm})...)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatalf("grpc.NewClient: %v", err)
	}
	b.Cleanup(func() {
		if err := conn.Close(); err != nil {
			b.Errorf("close client: %v", err)
		}
	})
	h := &harness{m: m, p: p, inv: stockdv1.NewInventoryClient(conn), erp: stockdv1.NewErpClient(conn), adm: stockdv1.NewAdminClient(conn)}
	h.seed(b)
	return conn
}

// latencies holds one preallocated sample slice per caller goroutine, so the
// hot path records without locks or allocation. A goroutine that outruns its
// slice overwrites its oldest samples.
type latencies struct {
	slots []latencySlot
	next  atomic.Int32
}

// latencySlot is one goroutine's samples, padded so neighbours do not share a
// cache line.
type latencySlot struct {
	samples []time.Duration
	n       int
	_       [64]byte
}

func newLatencies(callers, perCaller int) *latencies {
	l := &latencies{slots: make([]latencySlot, callers)}
	for i := range l.slots {
		l.slots[i].samples = make([]time.Duration, perCaller)
	}
	return l
}

// slot hands each goroutine its own index, once.
func (l *latencies) slot() int { return int(l.next.Add(1)) - 1 }

func (l *latencies) record(slot int, d time.Duration) {
	s := &l.slots[slot]
	s.samples[s.n%len(s.samples)] = d
	s.n++
}

// report adds p50 and p99 latency, in microseconds, to b's results.
func (l *latencies) report(b *testing.B) {
	var all []time.Duration
	for _, s := range l.slots {
		all = append(all, s.samples[:min(s.n, len(s.samples))]...)
	}
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	b.ReportMetric(float64(all[len(all)*50/100].Nanoseconds())/1e3, "p50-us")
	b.ReportMetric(float64(all[len(all)*99/100].Nanoseconds())/1e3, "p99-us")
}

// benchCallers runs call serially (callers=1, b.Loop) and from 4 and 64
// goroutines (RunParallel), reporting allocations and p50/p99 latency.
func benchCallers(b *testing.B, call func(ctx context.Context) error) {
	ctx := context.Background()
	b.Run("callers=1", func(b *testing.B) {
		b.ReportAllocs()
		lat := newLatencies(1, 1<<20)
		for b.Loop() {
			start := time.Now()
			if err := call(ctx); err != nil {
				b.Fatal(err)
			}
			lat.record(0, time.Since(start))
		}
		lat.report(b)
	})
	for _, callers := range []int{4, 64} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			procs := runtime.GOMAXPROCS(0)
			p := max(1, callers/procs) // RunParallel starts p*GOMAXPROCS goroutines
			b.SetParallelism(p)
			lat := newLatencies(p*procs, 2*b.N/(p*procs)+1024)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				slot := lat.slot()
				for pb.Next() {
					start := time.Now()
					if err := call(ctx); err != nil {
						b.Error(err)
						return
					}
					lat.record(slot, time.Since(start))
				}
			})
			b.StopTimer()
			lat.report(b)
		})
	}
}

func BenchmarkHealthCheck(b *testing.B) {
	client := healthpb.NewHealthClient(benchServer(b, nil))
	req := &healthpb.HealthCheckRequest{}
	benchCallers(b, func(ctx context.Context) error {
		resp, err := client.Check(ctx, req)
		if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("health: got %s, want SERVING", resp.GetStatus())
		}
		return err
	})
}

func BenchmarkGetAvailability1SKU(b *testing.B) { benchGetAvailability(b, nil) }

// BenchmarkGetAvailability1SKUMetrics is BenchmarkGetAvailability1SKU with
// the gRPC metrics in the chain, as cmd/stockd serves.
func BenchmarkGetAvailability1SKUMetrics(b *testing.B) {
	benchGetAvailability(b, NewGRPCMetrics())
}

func benchGetAvailability(b *testing.B, gm *grpcprom.ServerMetrics) {
	client := stockdv1.NewInventoryClient(benchServer(b, gm))
	req := &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: []string{"ROSE"}}
	benchCallers(b, func(ctx context.Context) error {
		resp, err := client.GetAvailability(ctx, req)
		if err == nil && resp.GetSkus()[0].GetAvailableSkuUnits() != 15 {
			return fmt.Errorf("ROSE on web: got %d, want 15", resp.GetSkus()[0].GetAvailableSkuUnits())
		}
		return err
	})
}

// BenchmarkUnaryChain is the interceptor chain's own cost per call, without
// network or handler work: at info level (the production hot path) and at
// debug level (every call logged, to a discarding handler), open and with
// auth (a storefront token, already cached, and its channel check), without
// and with the gRPC metrics.
func BenchmarkUnaryChain(b *testing.B) {
	a, err := NewAuthenticator(AuthFile{Principals: []AuthPrincipal{
		{Name: "web", Role: RoleStorefront, Channel: "web", TokenSHA256: HashToken("web-token")},
	}})
	if err != nil {
		b.Fatal(err)
	}
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
		for _, auth := range []*Authenticator{nil, a} {
			for _, metrics := range []bool{false, true} {
				b.Run(fmt.Sprintf("level=%s/auth=%t/metrics=%t", level, auth != nil, metrics), func(b *testing.B) {
					logger := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: level}))
					var gm *grpcprom.ServerMetrics
					if metrics {
						gm = NewGRPCMetrics()
					}
					unary, _ := interceptors(logger, auth, gm)
					info := &grpc.UnaryServerInfo{FullMethod: stockdv1.Inventory_GetAvailability_FullMethodName}
					req, resp := &stockdv1.GetAvailabilityRequest{Channel: "web"}, &stockdv1.GetAvailabilityResponse{}
					// Built once, innermost first, as grpc chains them.
					chained := grpc.UnaryHandler(func(context.Context, any) (any, error) { return resp, nil })
					for i := len(unary) - 1; i >= 0; i-- {
						next, icp := chained, unary[i]
						chained = func(ctx context.Context, req any) (any, error) { return icp(ctx, req, info, next) }
					}
					ctx := grpc.NewContextWithServerTransportStream(context.Background(), methodStream(info.FullMethod))
					ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer web-token"))
					b.ReportAllocs()
					for b.Loop() {
						if _, err := chained(ctx, req); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}

// methodStream is the least grpc.ServerTransportStream that lets
// grpc.Method answer outside a real server.
type methodStream string

func (m methodStream) Method() string             { return string(m) }
func (methodStream) SetHeader(metadata.MD) error  { return nil }
func (methodStream) SendHeader(metadata.MD) error { return nil }
func (methodStream) SetTrailer(metadata.MD) error { return nil }

// BenchmarkServerSideRead is the server-side time of GetAvailability (1 SKU,
// 1 caller): from the outermost interceptor in to the response out, the whole
// chain and handler, as a grpc_server_handling_seconds histogram would see
// it. Writes (Reserve then Release of the same SKU) are applied to the same
// machine at 8,000 commands/s meanwhile, as on a follower under write load.
//
//	go test -run '^$' -bench ServerSideRead -benchtime 5s ./server/
func BenchmarkServerSideRead(b *testing.B) {
	m := store.New(store.DefaultConfig())
	p := newFakeProposer(m)
	logger := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv := New(Config{Proposer: p, Reader: m, Logger: logger})
	server := newLatencies(1, 1<<22)
	timer := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := next(ctx, req)
		if info.FullMethod == stockdv1.Inventory_GetAvailability_FullMethodName {
			server.record(0, time.Since(start)) // one caller: one writer of slot 0
		}
		return resp, err
	}
	addr := serveTCP(b, srv, append([]grpc.ServerOption{grpc.ChainUnaryInterceptor(timer)}, ServerOptions(logger)...)...)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatalf("grpc.NewClient: %v", err)
	}
	defer conn.Close()
	h := &harness{m: m, p: p, inv: stockdv1.NewInventoryClient(conn), erp: stockdv1.NewErpClient(conn), adm: stockdv1.NewAdminClient(conn)}
	h.seed(b)

	// 8,000 commands/s: every 5 ms, 20 Reserve+Release pairs.
	stop := make(chan struct{})
	writerDone := make(chan error, 1)
	var written atomic.Int64
	go func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		ctx := context.Background()
		for n := 0; ; {
			select {
			case <-stop:
				writerDone <- nil
				return
			case <-tick.C:
			}
			for range 20 {
				n++
				id := "w-" + fmt.Sprint(n)
				if _, err := p.Propose(ctx, &logv1.Command{Kind: &logv1.Command_Reserve{Reserve: &logv1.Reserve{Channel: "web", ReservationId: id,
					Lines: []*logv1.ReserveLine{{Sku: "ROSE", QuantitySkuUnits: 1}}}}}); err != nil {
					writerDone <- err
					return
				}
				if _, err := p.Propose(ctx, &logv1.Command{Kind: &logv1.Command_Release{Release: &logv1.Release{Channel: "web", ReservationId: id}}}); err != nil {
					writerDone <- err
					return
				}
				written.Add(2)
			}
		}
	}()
	client := stockdv1.NewInventoryClient(conn)
	req := &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: []string{"ROSE"}}
	ctx := context.Background()
	calls := newLatencies(1, 1<<22)
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		if _, err := client.GetAvailability(ctx, req); err != nil {
			b.Fatal(err)
		}
		calls.record(0, time.Since(start))
	}
	b.StopTimer()
	close(stop)
	if err := <-writerDone; err != nil {
		b.Fatalf("writer: %v", err)
	}
	b.ReportMetric(float64(written.Load())/b.Elapsed().Seconds(), "writes/s")
	server.report(b)
	var all []time.Duration
	all = append(all, calls.slots[0].samples[:min(calls.slots[0].n, len(calls.slots[0].samples))]...)
	slices.Sort(all)
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)*99/100].Nanoseconds())/1e3, "client-p99-us")
	}
}

// BenchmarkGetAvailability100SKUs is the server's own work for one
// storefront read of 100 SKUs at 2 locations, per view: the handler and the
// marshalling of its answer (its messages then back to the pool, as the
// server's codec does), without network or chain. It reports the answer's
// bytes.
func BenchmarkGetAvailability100SKUs(b *testing.B) {
	h := newHarness(b, withLogLevel(slog.LevelInfo))
	h.seed(b)
	var rows []*stockdv1.StockCount
	skus := make([]string, 100)
	for i := range skus {
		skus[i] = fmt.Sprintf("SKU-%03d", i)
		for _, loc := range []string{"WH1", "WH2"} {
			rows = append(rows, &stockdv1.StockCount{Item: skus[i], Location: loc, OnHandBaseUnits: int64(i), Version: 1})
		}
	}
	if _, err := h.erp.SetStock(testContext(b), &stockdv1.SetStockRequest{Rows: rows}); err != nil {
		b.Fatal(err)
	}
	inv := &inventory{s: h.srv}
	for _, view := range []stockdv1.AvailabilityView{stockdv1.AvailabilityView_AVAILABILITY_VIEW_FULL, stockdv1.AvailabilityView_AVAILABILITY_VIEW_BASIC} {
		b.Run(strings.TrimPrefix(view.String(), "AVAILABILITY_VIEW_"), func(b *testing.B) {
			req := &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: skus, View: view}
			ctx := context.Background()
			var size int
			b.ReportAllocs()
			for b.Loop() {
				resp, err := inv.GetAvailability(ctx, req)
				if err != nil {
					b.Fatal(err)
				}
				out, err := proto.Marshal(resp)
				if err != nil {
					b.Fatal(err)
				}
				size = len(out)
				returnAnswer(resp) // as the server's codec does once marshalled
			}
			b.ReportMetric(float64(size), "answer-bytes")
		})
	}
}
