package main

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/stockdv1"
)

// reconcileCounters is stockd's side of the drift tests.
var reconcileCounters = map[counterKey]*fakeCounter{
	{"SAME", "ams"}:   {onHand: 10, version: 4},
	{"LOST", "ams"}:   {onHand: 8, version: 3},  // the book has v5: an update lost or in flight
	{"STALE", "fra"}:  {onHand: 2, version: 9},  // the book has v6: the file is stale
	{"ODD", "fra"}:    {onHand: -1, version: 2}, // same version, other count
	{"NOVER", "ams"}:  {onHand: 7, version: 1},  // the book gives no version
	{"EXTRA", "fra"}:  {onHand: 3, version: 1},  // not in the book
	{"PRUNED", "ams"}: {onHand: 0, version: 2},  // not in the book, 0: matches
}

// reconcileBook is the ERP's side, with a header and a row only in the file.
const reconcileBook = `item,location,on_hand,version
SAME,ams,10,4
LOST,ams,12,5
STALE,fra,4,6
ODD,fra,1,2
NOVER,ams,6
MISSING,ams,5,1
ZERO,fra,0,1
`

func TestReconcileReportsDriftPerCounter(t *testing.T) {
	st, addr := startFake(t)
	seedCounters(st, 77, reconcileCounters)
	exportOf(st).page = 3
	code, stdout, stderr := runCLI(t, addr, "reconcile", writeCSV(t, reconcileBook), "--linearizable")
	if code != 1 {
		t.Fatalf("reconcile with drift: got exit %d\nstdout:\n%s\nstderr:\n%s\nwant 1", code, stdout, stderr)
	}
	want := []string{
		"DRIFT           ITEM     LOCATION  ERP_ON_HAND  STOCKD_ON_HAND  DIFF  ERP_VERSION  STOCKD_VERSION  STOCKD_VERSION_IS",
		"on_hand         LOST     ams       12           8               -4    5            3               older",
		"on_hand         NOVER    ams       6            7               +1    -            1               unknown",
		"on_hand         ODD      fra       1            -1              -2    2            2               equal",
		"on_hand         STALE    fra       4            2               -2    6            9               newer",
		"only_in_file    MISSING  ams       5            -               -5    1            -               unknown",
		"only_in_stockd  EXTRA    fra       -            3               +3    -            1               unknown",
		"revision 77: 9 counters compared, 3 matching, 4 drifting, 1 only in file, 1 only in stockd, 17 units of drift",
	}
	if got := strings.TrimRight(stdout, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("reconcile: got\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
	if !strings.Contains(stderr, "6 of 9 counters drift (17 units)") {
		t.Errorf("reconcile: got stderr %q, want the count of drifting counters", stderr)
	}
	wantReq := &stockdv1.ExportStockRequest{Linearizable: true}
	if reqs := exportOf(st).requests; len(reqs) != 1 || !proto.Equal(reqs[0], wantReq) {
		t.Errorf("reconcile: got export requests %v, want [%v]", reqs, wantReq)
	}
}

func TestReconcileJSONIsOneObjectPerDriftLine(t *testing.T) {
	st, addr := startFake(t)
	seedCounters(st, 77, reconcileCounters)
	code, stdout, stderr := runCLI(t, addr, "--json", "reconcile", writeCSV(t, reconcileBook))
	if code != 1 {
		t.Fatalf("reconcile --json: got exit %d (%s), want 1", code, stderr)
	}
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	if len(lines) != 7 {
		t.Fatalf("reconcile --json: got %d lines\n%s\nwant 6 drift lines and a summary", len(lines), stdout)
	}
	var lost map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &lost); err != nil {
		t.Fatalf("line 1 %q: %v", lines[0], err)
	}
	wantLost := map[string]any{"kind": "on_hand", "item": "LOST", "location": "ams", "erp_on_hand": 12.0, "stockd_on_hand": 8.0,
		"diff": -4.0, "erp_version": 5.0, "stockd_version": 3.0, "stockd_version_is": "older"}
	for k, v := range wantLost {
		if lost[k] != v {
			t.Errorf("line 1 field %s: got %v, want %v (line %s)", k, lost[k], v, lines[0])
		}
	}
	var missing map[string]any
	if err := json.Unmarshal([]byte(lines[4]), &missing); err != nil {
		t.Fatalf("line 5 %q: %v", lines[4], err)
	}
	if missing["kind"] != "only_in_file" || missing["stockd_on_hand"] != nil || missing["stockd_version"] != nil {
		t.Errorf("line 5: got %s, want MISSING only in the file with null stockd figures", lines[4])
	}
	var sum reconcileSummary
	if err := json.Unmarshal([]byte(lines[6]), &sum); err != nil {
		t.Fatalf("summary %q: %v", lines[6], err)
	}
	want := reconcileSummary{Kind: "summary", Revision: 77, Compared: 9, Matching: 3, Drifting: 4, OnlyInFile: 1, OnlyInStockd: 1, DriftUnits: 17}
	if sum != want {
		t.Errorf("summary: got %+v, want %+v", sum, want)
	}
}

func TestReconcileWithoutDriftExitsZero(t *testing.T) {
	st, addr := startFake(t)
	seedCounters(st, 5, map[counterKey]*fakeCounter{{"A", "ams"}: {onHand: 1, version: 2}, {"B", "fra"}: {onHand: 0, version: 1}})
	code, stdout, stderr := runCLI(t, addr, "reconcile", writeCSV(t, "A,ams,1,3\n"))
	want := "revision 5: 2 counters compared, 2 matching, 0 drifting, 0 only in file, 0 only in stockd, 0 units of drift\n"
	if code != 0 || stdout != want || stderr != "" {
		t.Errorf("reconcile without drift: got exit %d stdout %q stderr %q, want 0 and %q", code, stdout, stderr, want)
	}
}

// TestReconcileFilterNarrowsBothSides: rows of other items in the file are
// not reported as only in the file, and the export asks for the item alone.
func TestReconcileFilterNarrowsBothSides(t *testing.T) {
	st, addr := startFake(t)
	seedCounters(st, 5, reconcileCounters)
	code, stdout, stderr := runCLI(t, addr, "reconcile", "--item", "LOST", writeCSV(t, reconcileBook))
	if code != 1 || strings.Contains(stdout, "MISSING") || !strings.Contains(stdout, "LOST") ||
		!strings.Contains(stdout, "1 counters compared, 0 matching, 1 drifting, 0 only in file, 0 only in stockd, 4 units") {
		t.Errorf("reconcile --item LOST: got exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit 1 and LOST alone", code, stdout, stderr)
	}
	if reqs := exportOf(st).requests; len(reqs) != 1 || reqs[0].GetItem() != "LOST" {
		t.Errorf("reconcile --item LOST: got export requests %v, want one for item LOST", reqs)
	}
}

func TestReconcileRefusesBadBooks(t *testing.T) {
	cases := []struct{ name, csv, want string }{
		{"a counter named twice", "A,ams,1,1\nB,ams,2\nA,ams,3,2\n", ":3: A@ams is also on line 1"},
		{"a word as count", "A,ams,1\nB,ams,lots\n", `:2: on_hand "lots" is not a whole number`},
		{"too many fields", "A,ams,1,2,3\n", "got 5 fields"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, addr := startFake(t)
			code, stdout, stderr := runCLI(t, addr, "reconcile", writeCSV(t, c.csv))
			if code != 1 || !strings.Contains(stderr, c.want) || stdout != "" {
				t.Errorf("reconcile of %q: got exit %d stdout %q stderr %q, want exit 1 and %q", c.csv, code, stdout, stderr, c.want)
			}
			if reqs := exportOf(st).requests; len(reqs) != 0 {
				t.Errorf("reconcile of %q: got %d exports, want none before the book is read", c.csv, len(reqs))
			}
		})
	}
}

func TestReconcileUsage(t *testing.T) {
	_, addr := startFake(t)
	for _, args := range [][]string{{"reconcile"}, {"reconcile", "a.csv", "b.csv"}, {"reconcile", "--bogus", "a.csv"}} {
		if code, _, stderr := runCLI(t, addr, args...); code != 2 {
			t.Errorf("stockctl %v: got exit %d (%s), want 2", args, code, stderr)
		}
	}
}

func TestCompareCounterSaturatesFarApartCounts(t *testing.T) {
	cases := []struct {
		erp, stockd, want int64
	}{
		{math.MinInt64, math.MaxInt64, math.MaxInt64},
		{math.MaxInt64, math.MinInt64, math.MinInt64},
		{-5, 3, 8},
	}
	for _, c := range cases {
		l, drift := compareCounter(bookKey{"A", "ams"}, &stockdv1.StockCount{OnHandBaseUnits: c.erp}, true,
			&stockdv1.StockCounter{OnHandBaseUnits: c.stockd})
		if !drift || l.Diff != c.want {
			t.Errorf("erp %d, stockd %d: got diff %d (drift %v), want %d", c.erp, c.stockd, l.Diff, drift, c.want)
		}
	}
	if got := absUnits(math.MinInt64); got != 1<<63 {
		t.Errorf("absUnits(MinInt64): got %d, want %d", got, uint64(1)<<63)
	}
}
