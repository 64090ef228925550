package server

import (
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stockd/stockd/store"
)

// Metrics. The gRPC server's own come from the middleware's Prometheus
// provider (NewGRPCMetrics, in the chain through ChainConfig.GRPCMetrics); the
// domain figures the state machine decides are counted inside store.Machine
// and read at scrape time by StoreCollector, so the apply path pays a few
// atomic adds and nothing here runs per command.

// grpcHandlingBuckets are the handling-time buckets in seconds: reads take
// tens of microseconds, writes a few milliseconds (one raft commit), long
// streams land in the last bucket.
var grpcHandlingBuckets = []float64{0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// NewGRPCMetrics returns the gRPC server metrics (grpc_server_started_total,
// grpc_server_handled_total, grpc_server_msg_received_total,
// grpc_server_msg_sent_total, grpc_server_handling_seconds). Register it on
// a registry, pass it to ServerOptionsFor as ChainConfig.GRPCMetrics, and call its
// InitializeMetrics with the grpc.Server once Register has run.
func NewGRPCMetrics() *grpcprom.ServerMetrics {
	return grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
		grpcprom.WithHistogramBuckets(grpcHandlingBuckets)))
}

// StatsReader is what StoreCollector reads; *store.Machine satisfies it.
// Every method is called from the scraping goroutine, concurrently with Apply.
type StatsReader interface {
	Stats() store.Stats
	OutboxStatus() store.OutboxStatus
	Locations() []store.Location
}

// StoreCollector turns the state machine's counts and outbox figures into
// Prometheus metrics at scrape time; ages are wall-clock now minus log time.
type StoreCollector struct {
	r     StatsReader
	clock func() time.Time

	reservesAccepted, reservesRefused, holdsExpired, toZero *prometheus.Desc
	erpRows, erpAge                                         *prometheus.Desc
	outboxBacklog, outboxAge                                *prometheus.Desc
}

// NewStoreCollector returns a collector over r; clock gives the wall time
// ages are measured against (nil means time.Now). Register it on a registry.
func NewStoreCollector(r StatsReader, clock func() time.Time) *StoreCollector {
	if clock == nil {
		clock = time.Now
	}
	return &StoreCollector{
		r: r, clock: clock,
		reservesAccepted: prometheus.NewDesc("stockd_reserves_accepted_total",
			"Reserves that created a hold (a retry answered from memory is not counted again).", nil, nil),
		reservesRefused: prometheus.NewDesc("stockd_reserves_refused_total",
			"Reserves refused by the state machine, by reason (the refusal kind, e.g. insufficient_stock, unknown_sku).", []string{"reason"}, nil),
		holdsExpired: prometheus.NewDesc("stockd_holds_expired_total",
			"Holds that reached their deadline still held.", nil, nil),
		toZero: prometheus.NewDesc("stockd_available_to_zero_total",
			"Times an item's available units at a location (on_hand - reserved - committed, before buffers) dropped to 0.", nil, nil),
		erpRows: prometheus.NewDesc("stockd_erp_rows_total",
			"ERP rows (counts, adjustments, committed backfills) by outcome: applied, stale or rejected.", []string{"outcome"}, nil),
		erpAge: prometheus.NewDesc("stockd_erp_update_age_seconds",
			"Seconds since the log time of the last ERP row applied or found stale for the location; absent until one arrives after the process started.", []string{"location"}, nil),
		outboxBacklog: prometheus.NewDesc("stockd_outbox_backlog_entries",
			"Outbox entries the ERP has not acknowledged yet (no outcome reported).", nil, nil),
		outboxAge: prometheus.NewDesc("stockd_outbox_oldest_unacked_age_seconds",
			"Seconds since the oldest unacknowledged outbox entry was created (log time); 0 when none waits.", nil, nil),
	}
}

// Describe sends the descriptors of every metric Collect sends.
func (c *StoreCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.reservesAccepted, c.reservesRefused, c.holdsExpired, c.toZero,
		c.erpRows, c.erpAge, c.outboxBacklog, c.outboxAge} {
		ch <- d
	}
}

// Collect reads the machine and sends the metrics. Safe for concurrent use.
func (c *StoreCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.clock()
	st := c.r.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(c.reservesAccepted, st.ReservesAccepted)
	for _, r := range st.ReservesRefused {
		counter(c.reservesRefused, r.Count, r.Reason)
	}
	counter(c.holdsExpired, st.HoldsExpired)
	counter(c.toZero, st.AvailableToZero)
	counter(c.erpRows, st.ERPRowsApplied, "applied")
	counter(c.erpRows, st.ERPRowsStale, "stale")
	counter(c.erpRows, st.ERPRowsRejected, "rejected")

	// Only declared locations: a deleted one would otherwise age forever.
	declared := make(map[store.LocationID]bool)
	for _, l := range c.r.Locations() {
		declared[l.ID] = true
	}
	for _, u := range st.ERPUpdates {
		if declared[u.Location] {
			ch <- prometheus.MustNewConstMetric(c.erpAge, prometheus.GaugeValue, ageSeconds(now, u.At), string(u.Location))
		}
	}

	ob := c.r.OutboxStatus()
	ch <- prometheus.MustNewConstMetric(c.outboxBacklog, prometheus.GaugeValue, float64(ob.Pending))
	age := 0.0
	if ob.Pending > 0 {
		age = ageSeconds(now, ob.OldestPendingCreatedAt)
	}
	ch <- prometheus.MustNewConstMetric(c.outboxAge, prometheus.GaugeValue, age)
}

// ageSeconds is now minus the log time at, never negative (the leader's
// clock may run ahead of this node's).
func ageSeconds(now time.Time, at store.Timestamp) float64 {
	return max(0, float64(now.UnixNano()-int64(at))/1e9)
}
