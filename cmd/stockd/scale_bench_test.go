package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stockd/stockd/api/stockdv1"
)

// BenchmarkScale loads 1,000,000 counters (333,334 items x 3 locations) and
// 100,000 live holds into one node, then reports resident memory per counter,
// the size of the snapshot that covers it, and how long a restart from that
// snapshot takes until the node serves. It measures one load whatever b.N is.
//
//	go test -run '^$' -bench Scale -benchtime 1x ./cmd/stockd/
//
// $STOCKD_BENCH_ARGS is added to the node's flags (e.g. "--memory-ratio 1.5").
func BenchmarkScale(b *testing.B) {
	const (
		items    = 333_334
		holds    = 100_000
		batch    = 10_000
		callers  = 64
		counters = items * 3
	)
	dir := b.TempDir()
	args := append([]string{"--snapshot-threshold", "4096", "--snapshot-interval", "1s"}, strings.Fields(os.Getenv("STOCKD_BENCH_ARGS"))...)
	p := startStockd(b, dir, args...)
	c := dial(b, p.addr)
	ctx := context.Background()
	for _, l := range []string{"ams", "fra", "lyon"} {
		if _, err := c.admin.PutLocation(ctx, &stockdv1.PutLocationRequest{Location: &stockdv1.Location{Id: l}}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := c.admin.PutChannel(ctx, &stockdv1.PutChannelRequest{Channel: &stockdv1.Channel{Id: "web", Locations: []string{"ams", "fra", "lyon"}}}); err != nil {
		b.Fatal(err)
	}
	item := func(i int) string { return "ITEM-" + strconv.Itoa(i) }
	start := time.Now()
	rows := make([]*stockdv1.StockCount, 0, batch)
	for i := 0; i < items; i++ {
		for _, l := range []string{"ams", "fra", "lyon"} {
			rows = append(rows, &stockdv1.StockCount{Item: item(i), Location: l, OnHandBaseUnits: 100, Version: 1})
		}
		if len(rows) >= batch-3 || i == items-1 {
			if _, err := c.erp.SetStock(ctx, &stockdv1.SetStockRequest{Rows: rows}); err != nil {
				b.Fatal(err)
			}
			rows = rows[:0]
		}
	}
	loadCounters := time.Since(start)

	start = time.Now()
	errs := make(chan error, callers)
	var lastRev uint64
	revs := make(chan uint64, callers)
	for g := 0; g < callers; g++ {
		go func(g int) {
			var rev uint64
			for i := g; i < holds; i += callers {
				r, err := c.inv.Reserve(ctx, &stockdv1.ReserveRequest{Channel: "web", ReservationId: "h-" + strconv.Itoa(i),
					Lines: []*stockdv1.ReserveLine{{Sku: item(i % items), Quantity: 1}}, Ttl: nil})
				if err != nil {
					errs <- err
					return
				}
				rev = max(rev, r.GetRevision())
			}
			revs <- rev
			errs <- nil
		}(g)
	}
	for g := 0; g < callers; g++ {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
		lastRev = max(lastRev, <-revs)
	}
	loadHolds := time.Since(start)

	rss := residentBytes(b, p.cmd.Process.Pid, "VmRSS")
	anon := residentBytes(b, p.cmd.Process.Pid, "RssAnon")
	// The load may end short of the snapshot threshold: stale counts (which
	// change nothing) push the log past it, so a snapshot covers every hold.
	stale := &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{{Item: item(0), Location: "ams", OnHandBaseUnits: 100, Version: 1}}}
	fill, filled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(filled)
		for {
			select {
			case <-fill:
				return
			default:
			}
			if _, err := c.erp.SetStock(ctx, stale); err != nil {
				return
			}
		}
	}()
	snapIndex, snapBytes := waitSnapshotCovering(b, dir, lastRev)
	close(fill)
	<-filled
	// A snapshot's capture and container are transient but large; what the
	// node keeps resident after one is what a long-running node shows.
	rssAfterSnapshot := residentBytes(b, p.cmd.Process.Pid, "VmRSS")
	anonAfterSnapshot := residentBytes(b, p.cmd.Process.Pid, "RssAnon")
	// Go hands freed pages back to the OS in the background, and the heap
	// governor narrows a ratio the load widened only after 5 s without a
	// collection: the settled figure is RSS once it has stopped moving
	// (within 1% over 8 s, or 60 s).
	rssSettled := settledRSS(b, p.cmd.Process.Pid, 60*time.Second)
	// The most the node was resident at any moment, snapshots included.
	peak := residentBytes(b, p.cmd.Process.Pid, "VmHWM")
	p.kill()

	start = time.Now()
	p2 := startStockd(b, dir, args...)
	p2.waitLog("replayed log tail", time.Minute)
	restart := time.Since(start)
	c2 := dial(b, p2.addr)
	av, err := c2.inv.GetAvailability(ctx, &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: []string{item(0)}, MinRevision: lastRev})
	if err != nil {
		b.Fatal(err)
	}
	if got := av.GetSkus()[0].GetLocations()[0].GetReservedBaseUnits(); got == 0 {
		b.Fatalf("reserved of %s at ams after restart: got 0, want the holds back", item(0))
	}
	p2.stop()

	b.ReportMetric(float64(rss)/counters, "RSS-B/counter")
	b.ReportMetric(float64(rss)/(1<<20), "RSS-MiB")
	b.ReportMetric(float64(rssAfterSnapshot)/counters, "RSS-B/counter-after-snapshot")
	b.ReportMetric(float64(anonAfterSnapshot)/(1<<20), "anon-MiB-after-snapshot")
	b.ReportMetric(float64(rssSettled)/counters, "RSS-B/counter-settled")
	b.ReportMetric(float64(peak)/counters, "RSS-B/counter-peak")
	b.ReportMetric(float64(anon)/(1<<20), "anon-MiB")
	b.ReportMetric(float64(snapBytes)/(1<<20), "snapshot-MiB")
	b.ReportMetric(restart.Seconds(), "restart-s")
	fmt.Printf("scale: %d counters loaded in %v, %d holds in %v, snapshot at index %d of %d: %d bytes\n",
		counters, loadCounters.Round(time.Millisecond), holds, loadHolds.Round(time.Millisecond), snapIndex, lastRev, snapBytes)
}

// settledRSS samples the process's RSS every 250 ms until the last 32
// samples (8 s) lie within 1% of each other, or until limit, and returns the
// last sample.
func settledRSS(b *testing.B, pid int, limit time.Duration) int64 {
	var window []int64
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(limit)
	for {
		window = append(window, residentBytes(b, pid, "VmRSS"))
		if len(window) > 32 {
			window = window[1:]
		}
		if len(window) == 32 && float64(slices.Max(window)-slices.Min(window)) < 0.01*float64(slices.Max(window)) || time.Now().After(deadline) {
			return window[len(window)-1]
		}
		<-tick.C
	}
}

// residentBytes reads one of a process's memory figures (VmRSS, VmHWM, RssAnon,
// RssFile) from /proc.
func residentBytes(b *testing.B, pid int, field string) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Skipf("no /proc here: %v", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatalf("no %s line", field)
	return 0
}

// waitSnapshotCovering waits until the node has a snapshot at or past index
// and returns its index and the size of its state file.
func waitSnapshotCovering(b *testing.B, dir string, index uint64) (uint64, int64) {
	var gotIndex uint64
	var size int64
	waitFor(b, 2*time.Minute, fmt.Sprintf("a snapshot at index >= %d", index), func() bool {
		metas, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*", "meta.json"))
		for _, m := range metas {
			if strings.HasSuffix(filepath.Dir(m), ".tmp") {
				continue // raft is still writing this one
			}
			raw, err := os.ReadFile(m)
			if err != nil {
				continue
			}
			var meta struct{ Index uint64 }
			st, err := os.Stat(filepath.Join(filepath.Dir(m), "state.bin"))
			if err == nil && json.Unmarshal(raw, &meta) == nil && meta.Index >= index && meta.Index > gotIndex {
				gotIndex, size = meta.Index, st.Size()
			}
		}
		return gotIndex > 0
	})
	return gotIndex, size
}
