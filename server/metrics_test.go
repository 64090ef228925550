package server

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

// metricsHarness is a harness whose chain carries the gRPC metrics, with a
// registry holding them and a StoreCollector over the machine; the
// collector's wall clock is the fake leader clock, so ages are exact.
func metricsHarness(t *testing.T) (*harness, *prometheus.Registry) {
	t.Helper()
	gm := NewGRPCMetrics()
	h := newHarness(t, withGRPCMetrics(gm))
	reg := prometheus.NewRegistry()
	reg.MustRegister(gm, NewStoreCollector(h.m, func() time.Time { return time.Unix(0, h.p.now.Load()) }))
	return h, reg
}

// metricValue is the value of the sample of family name whose labels
// include every name=value pair in labels; it fails if there is none.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	samples:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(m, labels[i], labels[i+1]) {
					continue samples
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	t.Fatalf("metric %s%v: no such sample", name, labels)
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

func checkMetric(t *testing.T, reg *prometheus.Registry, want float64, name string, labels ...string) {
	t.Helper()
	if got := metricValue(t, reg, name, labels...); got != want {
		t.Errorf("metric %s%v: got %v, want %v", name, labels, got, want)
	}
}

// TestMetricsCountReservesByOutcome: after N accepted and M refused
// reservations through the handlers, the counters read N and M by reason;
// a same-payload retry counts nothing more.
func TestMetricsCountReservesByOutcome(t *testing.T) {
	h, reg := metricsHarness(t)
	h.seed(t) // ROSE: 10 at WH1, 5 at WH2
	ctx := testContext(t)
	const accepted, short, unknownChannel = 7, 3, 2
	for i := range accepted {
		if _, err := h.inv.Reserve(ctx, reserveReq(fmt.Sprintf("ok-%d", i), 1)); err != nil {
			t.Fatalf("Reserve ok-%d of 1: %v", i, err)
		}
	}
	for i := range short {
		_, err := h.inv.Reserve(ctx, reserveReq(fmt.Sprintf("short-%d", i), 100))
		checkStatus(t, "Reserve 100 of 8", err, codes.FailedPrecondition, "")
	}
	for i := range unknownChannel {
		req := reserveReq(fmt.Sprintf("nochan-%d", i), 1)
		req.Channel = "nope"
		_, err := h.inv.Reserve(ctx, req)
		checkStatus(t, "Reserve on channel nope", err, codes.NotFound, "")
	}
	// Retries with the same payload are answered from memory: not counted.
	if _, err := h.inv.Reserve(ctx, reserveReq("ok-0", 1)); err != nil {
		t.Fatalf("retry of ok-0: %v", err)
	}
	_, err := h.inv.Reserve(ctx, reserveReq("short-0", 100))
	checkStatus(t, "retry of short-0", err, codes.FailedPrecondition, "")

	checkMetric(t, reg, accepted, "stockd_reserves_accepted_total")
	checkMetric(t, reg, short, "stockd_reserves_refused_total", "reason", "insufficient_stock")
	checkMetric(t, reg, unknownChannel, "stockd_reserves_refused_total", "reason", "unknown_channel")
	// The gRPC metrics saw every call, the retries included.
	checkMetric(t, reg, accepted+1, "grpc_server_handled_total", "grpc_method", "Reserve", "grpc_code", "OK")
	checkMetric(t, reg, short+1, "grpc_server_handled_total", "grpc_method", "Reserve", "grpc_code", "FailedPrecondition")
	checkMetric(t, reg, accepted+short+unknownChannel+2, "grpc_server_handling_seconds", "grpc_method", "Reserve")
}

// TestMetricsHoldsExpiredToZeroAndOutbox: expiry, available-to-zero events
// and the outbox backlog with the age of its oldest unacknowledged entry.
func TestMetricsHoldsExpiredToZeroAndOutbox(t *testing.T) {
	h, reg := metricsHarness(t)
	h.seed(t)
	ctx := testContext(t)
	// Two short holds that expire; they take WH1 from 10 to 0 (one to-zero).
	for _, id := range []string{"a", "b"} {
		req := reserveReq(id, 5)
		req.Ttl = durationpb.New(time.Second)
		if _, err := h.inv.Reserve(ctx, req); err != nil {
			t.Fatalf("Reserve %s: %v", id, err)
		}
	}
	checkMetric(t, reg, 1, "stockd_available_to_zero_total")
	checkMetric(t, reg, 0, "stockd_holds_expired_total")
	h.p.advance(2 * time.Second)
	// The next entry's time passes both deadlines; it is held and confirmed.
	if _, err := h.inv.Reserve(ctx, reserveReq("c", 2)); err != nil {
		t.Fatalf("Reserve c: %v", err)
	}
	checkMetric(t, reg, 2, "stockd_holds_expired_total")

	checkMetric(t, reg, 0, "stockd_outbox_backlog_entries")
	checkMetric(t, reg, 0, "stockd_outbox_oldest_unacked_age_seconds")
	if _, err := h.inv.Confirm(ctx, &stockdv1.ConfirmRequest{Channel: "web", ReservationId: "c", OrderRef: "o-1"}); err != nil {
		t.Fatalf("Confirm c: %v", err)
	}
	h.p.advance(90 * time.Second)
	checkMetric(t, reg, 1, "stockd_outbox_backlog_entries")
	checkMetric(t, reg, 90, "stockd_outbox_oldest_unacked_age_seconds")
}

// TestMetricsCountERPRows: rows applied, stale and rejected, and the age of
// the last ERP update per declared location.
func TestMetricsCountERPRows(t *testing.T) {
	h, reg := metricsHarness(t)
	h.seed(t) // 2 rows applied at t0
	ctx := testContext(t)
	h.p.advance(10 * time.Second)
	resp, err := h.erp.SetStock(ctx, &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{
		{Item: "ROSE", Location: "WH1", OnHandBaseUnits: 10, Version: 1}, // stale: already held
		{Item: "ROSE", Location: "WH9", OnHandBaseUnits: 1, Version: 1},  // rejected: unknown location
		{Item: "TULIP", Location: "WH1", OnHandBaseUnits: 4, Version: 1}, // applied
	}})
	if err != nil {
		t.Fatalf("SetStock: %v", err)
	}
	if _, err := h.erp.AdjustStock(ctx, &stockdv1.AdjustStockRequest{Rows: []*stockdv1.StockAdjustment{
		{DeltaId: "d1", Item: "TULIP", Location: "WH1", DeltaBaseUnits: -4}, // applied, to zero
	}}); err != nil {
		t.Fatalf("AdjustStock: %v", err)
	}
	h.p.advance(5 * time.Second)
	checkMetric(t, reg, 4, "stockd_erp_rows_total", "outcome", "applied")
	checkMetric(t, reg, 1, "stockd_erp_rows_total", "outcome", "stale")
	checkMetric(t, reg, 1, "stockd_erp_rows_total", "outcome", "rejected")
	checkMetric(t, reg, 1, "stockd_available_to_zero_total")
	checkMetric(t, reg, 5, "stockd_erp_update_age_seconds", "location", "WH1")
	checkMetric(t, reg, 15, "stockd_erp_update_age_seconds", "location", "WH2")
	if got := fmt.Sprint(resp.GetRows()); !strings.Contains(got, "WH9") {
		t.Errorf("SetStock rows: got %s, want the WH9 row rejected by name", got)
	}
	// A location never named by the ERP has no age series.
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			if hasLabel(m, "location", "WH9") {
				t.Errorf("metric %s: got a series for undeclared location WH9, want none", f.GetName())
			}
		}
	}
}

var _ StatsReader = (*store.Machine)(nil)
