package main

import (
	"cmp"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/stockdv1"
)

// fakeExports records, per fake, the ExportStock requests and how the fake
// answers them. fakeState belongs to fake_test.go, so the record lives here.
var fakeExports = struct {
	sync.Mutex
	m map[*fakeState]*fakeExport
}{m: map[*fakeState]*fakeExport{}}

type fakeExport struct {
	requests []*stockdv1.ExportStockRequest
	// page is the counters per message (0: the request's page_size, or 10,000).
	page int
	// revisionDrift gives every message after the first another revision.
	revisionDrift bool
}

func exportOf(st *fakeState) *fakeExport {
	fakeExports.Lock()
	defer fakeExports.Unlock()
	e := fakeExports.m[st]
	if e == nil {
		e = &fakeExport{}
		fakeExports.m[st] = e
	}
	return e
}

// ExportStock sends the counters the request selects, sorted by item then
// location, at the current revision; committed is always 0 in the fake.
func (f *fakeErp) ExportStock(req *stockdv1.ExportStockRequest, stream stockdv1.Erp_ExportStockServer) error {
	st := f.st
	e := exportOf(st)
	st.mu.Lock()
	e.requests = append(e.requests, req)
	page := cmp.Or(e.page, int(req.GetPageSize()), 10000)
	rev := st.revision
	var cs []*stockdv1.StockCounter
	for k, c := range st.counters {
		if req.GetItem() != "" && k.item != req.GetItem() || req.GetLocation() != "" && k.location != req.GetLocation() {
			continue
		}
		cs = append(cs, &stockdv1.StockCounter{Item: k.item, Location: k.location, OnHandBaseUnits: c.onHand,
			Version: c.version, ReservedBaseUnits: c.reserved, OversoldBaseUnits: max(0, c.reserved-max(0, c.onHand))})
	}
	drift := e.revisionDrift
	st.mu.Unlock()
	slices.SortFunc(cs, func(a, b *stockdv1.StockCounter) int {
		return cmp.Or(cmp.Compare(a.GetItem(), b.GetItem()), cmp.Compare(a.GetLocation(), b.GetLocation()))
	})
	for start := 0; start == 0 || start < len(cs); start += page {
		m := &stockdv1.ExportStockResponse{Counters: cs[start:min(start+page, len(cs))], Revision: rev}
		if drift && start > 0 {
			m.Revision++
		}
		if err := stream.Send(m); err != nil {
			return err
		}
	}
	return nil
}

// seedCounters declares ams and fra and sets the fake's revision and
// copies of counters.
func seedCounters(st *fakeState, rev uint64, counters map[counterKey]*fakeCounter) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.locations["ams"], st.locations["fra"] = "Amsterdam", "Frankfurt"
	st.revision = rev
	for k, c := range counters {
		cc := *c
		st.counters[k] = &cc
	}
}

// exportSample has a negative count, a counter the ERP never versioned, an
// item needing CSV quotes and a hold.
var exportSample = map[counterKey]*fakeCounter{
	{"ROSE", "fra"}:     {onHand: 5, version: 3},
	{"ROSE", "ams"}:     {onHand: 40, reserved: 4, version: 7},
	{"TULIP", "ams"}:    {onHand: -2, version: 9},
	{"BOX, 12", "fra"}:  {onHand: 6, version: 1},
	{"RECEIVED", "ams"}: {onHand: 3},
}

func TestExportWritesImportCSVSortedAtOneRevision(t *testing.T) {
	st, addr := startFake(t)
	seedCounters(st, 42, exportSample)
	exportOf(st).page = 2
	code, stdout, stderr := runCLI(t, addr, "export")
	if code != 0 {
		t.Fatalf("export: got exit %d, stderr %q, want 0", code, stderr)
	}
	want := `item,location,on_hand,version
"BOX, 12",fra,6,1
RECEIVED,ams,3,
ROSE,ams,40,7
ROSE,fra,5,3
TULIP,ams,-2,9
`
	if stdout != want {
		t.Errorf("export: got stdout\n%s\nwant\n%s", stdout, want)
	}
	if want := "export: 5 counters at revision 42\n"; stderr != want {
		t.Errorf("export: got stderr %q, want %q", stderr, want)
	}
	if reqs := exportOf(st).requests; len(reqs) != 1 || !proto.Equal(reqs[0], &stockdv1.ExportStockRequest{}) {
		t.Errorf("export: got requests %v, want one without filters", reqs)
	}
}

func TestExportAllColumnsToFileWithFilters(t *testing.T) {
	st, addr := startFake(t)
	seedCounters(st, 7, exportSample)
	path := filepath.Join(t.TempDir(), "out.csv")
	code, stdout, stderr := runCLI(t, addr, "export", path, "--all-columns", "--item", "ROSE", "--location", "ams",
		"--min-revision", "6", "--linearizable")
	if code != 0 || stdout != "" {
		t.Fatalf("export FILE: got exit %d, stdout %q, stderr %q; want 0 and nothing on stdout", code, stdout, stderr)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if got, want := string(b), "item,location,on_hand,version,reserved,committed\nROSE,ams,40,7,4,0\n"; got != want {
		t.Errorf("export --all-columns: got\n%s\nwant\n%s", got, want)
	}
	wantReq := &stockdv1.ExportStockRequest{Item: "ROSE", Location: "ams", MinRevision: 6, Linearizable: true}
	if reqs := exportOf(st).requests; len(reqs) != 1 || !proto.Equal(reqs[0], wantReq) {
		t.Errorf("export: got requests %v, want [%v]", reqs, wantReq)
	}
}

// TestExportImportRoundTrip exports one fake node and imports the file into
// another: every counter arrives with its count, and its version when it
// had one (a counter without gets the import's time).
func TestExportImportRoundTrip(t *testing.T) {
	src, srcAddr := startFake(t)
	seedCounters(src, 11, exportSample)
	path := filepath.Join(t.TempDir(), "stock.csv")
	if code, _, stderr := runCLI(t, srcAddr, "export", path); code != 0 {
		t.Fatalf("export: got exit %d (%s), want 0", code, stderr)
	}
	dst, dstAddr := startFake(t)
	seedCounters(dst, 1, nil)
	if code, stdout, stderr := runCLI(t, dstAddr, "import", path); code != 0 {
		t.Fatalf("import of the export: got exit %d\nstdout:\n%s\nstderr:\n%s\nwant 0", code, stdout, stderr)
	}
	dst.mu.Lock()
	defer dst.mu.Unlock()
	if len(dst.counters) != len(exportSample) {
		t.Errorf("after import: got %d counters, want %d", len(dst.counters), len(exportSample))
	}
	for k, want := range exportSample {
		got := dst.counters[k]
		switch {
		case got == nil:
			t.Errorf("%s@%s: missing after import", k.item, k.location)
		case got.onHand != want.onHand:
			t.Errorf("%s@%s: got on_hand %d, want %d", k.item, k.location, got.onHand, want.onHand)
		case want.version != 0 && got.version != want.version:
			t.Errorf("%s@%s: got version %d, want %d", k.item, k.location, got.version, want.version)
		case want.version == 0 && got.version < 1_600_000_000_000_000_000:
			t.Errorf("%s@%s: got version %d, want the import's Unix-nanosecond time", k.item, k.location, got.version)
		}
	}
}

func TestExportRefusesPagesOfTwoRevisions(t *testing.T) {
	st, addr := startFake(t)
	seedCounters(st, 5, exportSample)
	e := exportOf(st)
	e.page, e.revisionDrift = 2, true
	path := filepath.Join(t.TempDir(), "out.csv")
	code, _, stderr := runCLI(t, addr, "export", path)
	if code != 1 || !strings.Contains(stderr, "message 1 at revision 6, want 5") {
		t.Errorf("export of pages at two revisions: got exit %d, stderr %q; want 1 naming the revisions", code, stderr)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("export of pages at two revisions: got %s with stat error %v, want no file", path, err)
	}
}

func TestExportUsage(t *testing.T) {
	_, addr := startFake(t)
	for _, args := range [][]string{{"export", "a.csv", "b.csv"}, {"export", "--min-revision", "x"}} {
		if code, _, stderr := runCLI(t, addr, args...); code != 2 {
			t.Errorf("stockctl %v: got exit %d (%s), want 2", args, code, stderr)
		}
	}
}

func TestExportEmpty(t *testing.T) {
	st, addr := startFake(t)
	seedCounters(st, 3, nil)
	code, stdout, stderr := runCLI(t, addr, "export", "--item", "NONE")
	if code != 0 || stdout != "item,location,on_hand,version\n" || stderr != "export: 0 counters at revision 3\n" {
		t.Errorf("export of nothing: got exit %d stdout %q stderr %q, want 0, the header alone and revision 3", code, stdout, stderr)
	}
}
