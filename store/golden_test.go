package store_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// update rewrites testdata/snapshot.golden and the fuzz seed corpora.
var update = flag.Bool("update", false, "rewrite testdata/snapshot.golden and testdata/fuzz seeds")

const goldenPath = "testdata/snapshot.golden"

// goldenLog builds a small state with one of everything a snapshot holds:
// locations, channels, buffer rules of each shape, counters (one negative),
// held, confirmed, released and expired reservations, a refusal, an applied
// and a stale delta, an absorbed order and a committed one; an extended and a
// partly released hold, a cancelled order and a remembered ReleaseAll;
// incoming lines, a backorder hold and an order line waiting on one; a
// cancellation entry, booked, refused and done outcomes, rejected rows.
func goldenLog() []*logv1.Entry {
	s := int64(time.Second)
	return []*logv1.Entry{
		entry(t0, locNamed("ams", "Amsterdam"), locNamed("fra", "Frankfurt"), locNamed("ber", "Berlin"),
			channel("web", 1, "ams", "fra"), channel("rep", 0, "fra", "ber", "ams")),
		entry(t0+1*s, buffer("rose", "", "", 1), buffer("rose", "web", "ams", 2), buffer("tulip", "", "fra", 3)),
		entry(t0+2*s, setStock(row("rose", "ams", 20, 3), row("rose", "fra", 10, 2), row("tulip", "ams", 5, 1),
			row("tulip", "fra", -2, 1), row("lily", "ber", 7, 4))),
		entry(t0+3*s, adjust(delta("d1", "tulip", "ams", 4, 0), delta("d2", "rose", "fra", 1, 1))),
		entry(t0+4*s,
			reserve("web", "r-held", time.Hour, line("rose", 3)),
			reserve("rep", "r-conf", 0, line("lily", 2)),
			reserve("web", "r-rel", 0, line("rose", 2), line("tulip", 1)),
			reserve("web", "r-exp", 5*time.Second, line("rose", 1)),
			reserve("web", "r-absorbed", 0, lineAt("rose", 4, "ams")),
			reserve("web", "r-refused", 0, line("rose", 500))),
		entry(t0+5*s, confirm("web", "r-absorbed", "o-1"), confirm("rep", "r-conf", "o-2"), release("web", "r-rel")),
		entry(t0+6*s, setStockMark(1, row("rose", "ams", 16, 4))),
		entry(t0+7*s, extendCmd("web", "r-held", "e-1", 2*time.Hour),
			reserve("web", "r-part", time.Hour, line("tulip", 3), line("tulip", 1)), releasePart("web", "r-part", "p-1", give(0, 1)),
			reserve("web", "r-cancel", 0, line("tulip", 1)), confirm("web", "r-cancel", "o-3"), cancelOrder("web", "r-cancel"),
			releaseAll("rep", "a-1")),
		// A group, a channel on it that requires mappings, a mapping, a
		// deleted one (a tombstone) and a hold of a mapped SKU.
		entry(t0+8*s, putGroup("west", "fra", "ams"), strict(groupChannel("mkt", 0, "west")),
			putSku("rose-case4", "rose", 4), putSku("old", "tulip", 2), deleteSku("old"),
			reserve("mkt", "r-case", time.Hour, line("rose-case4", 1))),
		// Incoming lines; a backorder hold and a confirmed backorder waiting
		// on one, then a receipt that serves part of the order.
		entry(t0+9*s, setStock(row("iris", "ber", 3, 1)),
			setIncomingCmd(incLine("PO-1", "iris", "ber", 10, 0, 5*day, 1), incLine("PO-2", "rose", "fra", 20, 4, 9*day, 3)),
			reserve("rep", "r-back", time.Hour, boLine("iris", 8)),
			reserve("rep", "r-waits", 0, boLineAt("iris", 2, "ber")), confirm("rep", "r-waits", "o-4"),
			setIncomingCmd(incLine("PO-1", "iris", "ber", 10, 1, 6*day, 2))),
		// The ERP's outcomes: o-2 (seq 2) booked, o-3's cancellation (seq 4)
		// done, a new order o-5 (seq 6) refused, an unknown seq; and a count
		// at an undeclared location, so the dead-letter list holds rows.
		entry(t0+10*s, reserve("web", "r-refuse", 0, line("tulip", 1)), confirm("web", "r-refuse", "o-5"),
			ackCmd(ackBooked(2), ackDone(4), ackRefused(6, "out of stock at the erp"), ackBooked(99)),
			setStock(row("rose", "zz", 1, 1))),
		entry(t0+11*s, tickCmd()),
	}
}

// goldenMachine applies goldenLog and fails the test on any unexpected answer.
func goldenMachine(t testing.TB) *store.Machine {
	t.Helper()
	m := store.New(store.Config{})
	for i, e := range goldenLog() {
		for j, r := range m.ApplyEntry(store.Revision(i+1), e) {
			refusal := i == 4 && j == 5
			if (r.Err != nil) != refusal {
				t.Fatalf("golden entry %d command %d input %v: got %s, want refusal %v", i, j, e.Commands[j], describe(r), refusal)
			}
		}
	}
	return m
}

// goldenText renders the digest and one record per line in hex.
func goldenText(recs [][]byte, digest [32]byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "digest %x\n", digest)
	for _, r := range recs {
		fmt.Fprintf(&b, "%s\n", hex.EncodeToString(r))
	}
	return b.Bytes()
}

func parseGolden(t *testing.T, text []byte) ([][]byte, string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(string(text)), "\n")
	d, ok := strings.CutPrefix(lines[0], "digest ")
	if !ok {
		t.Fatalf("input %s line 1 %q: got no digest, want \"digest <hex>\"", goldenPath, lines[0])
	}
	var recs [][]byte
	for i, l := range lines[1:] {
		r, err := hex.DecodeString(l)
		if err != nil {
			t.Fatalf("input %s line %d: got %v, want hex", goldenPath, i+2, err)
		}
		recs = append(recs, r)
	}
	return recs, d
}

// TestI4GoldenSnapshot pins the canonical record stream and its digest: a
// change to the encoding, the record order or the digest shows here, and a
// replica of another build would no longer agree with this one.
func TestI4GoldenSnapshot(t *testing.T) {
	m := goldenMachine(t)
	recs, err := records(m)
	if err != nil {
		t.Fatal(err)
	}
	d, err := m.Digest()
	if err != nil {
		t.Fatal(err)
	}
	got := goldenText(recs, d)
	if *update {
		if err := os.MkdirAll(filepath.Dir(goldenPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenPath, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("input %s: got %v, want the golden file (go test -run TestI4GoldenSnapshot -update)", goldenPath, err)
	}
	wantRecs, wantDigest := parseGolden(t, want)
	if fmt.Sprintf("%x", d) != wantDigest {
		t.Errorf("input golden log: got digest %x, want %s", d, wantDigest)
	}
	if len(recs) != len(wantRecs) {
		t.Fatalf("input golden log: got %d records, want %d", len(recs), len(wantRecs))
	}
	for i := range recs {
		if !bytes.Equal(recs[i], wantRecs[i]) {
			t.Errorf("input golden log: record %d: got %x, want %x", i, recs[i], wantRecs[i])
		}
	}

	// The pinned stream restores, and the restored machine writes it back
	// byte for byte with the same digest.
	back := store.New(store.Config{})
	if err := back.Restore(sliceSource(wantRecs)); err != nil {
		t.Fatalf("input %s: got restore error %v, want ok", goldenPath, err)
	}
	again, err := records(back)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(frame(again), frame(wantRecs)) {
		t.Errorf("input %s restored and written again: got %d records differing from the file, want the same stream", goldenPath, len(again))
	}
	if got := digest(back); got != wantDigest {
		t.Errorf("input %s restored: got digest %s, want %s", goldenPath, got, wantDigest)
	}
}

// TestGoldenStateHoldsOneOfEverything guards the golden state itself, so the
// golden file keeps covering every record kind and reservation state.
func TestGoldenStateHoldsOneOfEverything(t *testing.T) {
	m := goldenMachine(t)
	for id, want := range map[string]store.ReservationState{
		"r-held": store.StateHeld, "r-rel": store.StateReleased, "r-exp": store.StateExpired, "r-absorbed": store.StateConfirmed,
		"r-part": store.StateHeld, "r-cancel": store.StateCancelled,
	} {
		if r, err := m.Reservation("web", store.ReservationID(id)); err != nil || r.State != want {
			t.Errorf("input golden web/%s: got %+v, %v, want state %v", id, r, err, want)
		}
	}
	if r, err := m.Reservation("rep", "r-conf"); err != nil || r.State != store.StateConfirmed || r.OrderSeq != 2 {
		t.Errorf("input golden rep/r-conf: got %+v, %v, want confirmed as order 2", r, err)
	}
	var a store.SKUAvailability
	if err := m.Availability("web", "rose", &a); err != nil {
		t.Fatal(err)
	}
	// ams: on_hand 16, r-held 3, buffer (web, ams) 2, order 1 absorbed.
	if l := a.Locations[0]; l.OnHand != 16 || l.Reserved != 3 || l.Committed != 0 || l.Buffer != 2 || l.Available != 11 {
		t.Errorf("input golden web/rose@ams: got %+v, want on_hand 16 reserved 3 committed 0 buffer 2 available 11", l)
	}
	if err := m.Availability("rep", "lily", &a); err != nil {
		t.Fatal(err)
	}
	if l := a.Locations[1]; l.Location != "ber" || l.Committed != 2 || l.Available != 5 {
		t.Errorf("input golden rep/lily@ber: got %+v, want committed 2 (order 2 unabsorbed) available 5", l)
	}
	recs, err := records(m)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, r := range recs {
		var rec logv1.SnapshotRecord
		if err := unmarshalRecord(r, &rec); err != nil {
			t.Fatal(err)
		}
		kinds[fmt.Sprintf("%T", rec.GetKind())]++
		for _, op := range rec.GetReservation().GetOps() {
			kinds[fmt.Sprintf("op %d", op.GetKind())]++
		}
		if rec.GetOrder().GetCancelled() {
			kinds["cancelled order"]++
		}
		for _, l := range rec.GetOrder().GetLines() {
			if l.GetPoLineId() != "" {
				kinds["waiting order line"]++
			}
		}
		for _, l := range rec.GetReservation().GetLines() {
			for _, a := range l.GetAllocations() {
				if a.GetPoLineId() != "" {
					kinds["backorder allocation"]++
				}
			}
		}
		if rec.GetIncoming().GetBackorderedBaseUnits() > 0 {
			kinds["backordered incoming"]++
		}
		if o := rec.GetOrder(); o != nil {
			kinds[fmt.Sprintf("outbox kind %d outcome %d", o.GetKind(), o.GetOutcome())]++
		}
	}
	for _, k := range []string{"op 1", "op 2", "cancelled order", "waiting order line", "backorder allocation", "backordered incoming",
		"outbox kind 1 outcome 0", "outbox kind 1 outcome 1", "outbox kind 1 outcome 2", "outbox kind 2 outcome 3"} {
		if kinds[k] == 0 {
			t.Errorf("input golden state: got %v, want at least one %s", kinds, k)
		}
	}
	for _, k := range []string{"Meta", "Location", "Channel", "Buffer", "Counter", "Reservation", "Refusal", "Delta", "Order", "ReleaseAll",
		"Sku", "LocationGroup", "Incoming", "RejectedRow", "RejectedCount"} {
		if kinds["*logv1.SnapshotRecord_"+k] == 0 {
			t.Errorf("input golden state: got record kinds %v, want at least one %s", kinds, k)
		}
	}
}

// TestRestoresAnIssue4Snapshot: a snapshot written before the outbox had
// kinds, outcomes and cancellation entries (testdata/snapshot_issue4.golden,
// never regenerated) still restores: its orders are orders without an
// outcome, delivered again, and its cancelled order waits for no
// cancellation entry.
func TestRestoresAnIssue4Snapshot(t *testing.T) {
	const path = "testdata/snapshot_issue4.golden"
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	recs, _ := parseGolden(t, text)
	m := store.New(store.Config{RetryWindowNanos: int64(time.Minute)})
	if err := m.Restore(sliceSource(recs)); err != nil {
		t.Fatalf("input %s: got restore error %v, want ok", path, err)
	}
	var seqs []uint64
	for _, e := range m.Outbox(0, 10) {
		if e.Kind != store.OutboxOrder || e.Outcome != 0 {
			t.Errorf("input %s: got entry %+v, want an order without an outcome", path, e)
		}
		seqs = append(seqs, e.Seq)
	}
	if want := []uint64{1, 2, 3, 4}; fmt.Sprint(seqs) != fmt.Sprint(want) {
		t.Errorf("input %s: got pending seqs %v, want %v", path, seqs, want)
	}
	if e, err := m.Order("web", "o-3"); err != nil || !e.Cancelled {
		t.Errorf("input %s: got order o-3 %+v, %v, want it cancelled", path, e, err)
	}
	// Booked, and o-2 absorbed, the orders before o-4 are finished (the
	// cancelled o-3 waits for no cancellation entry): they leave after the
	// window, o-4 stays.
	next := m.AppliedIndex() + 1
	ts := m.LastTime() + store.Timestamp(time.Hour)
	if res := m.Apply(next, ts, ackCmd(ackBooked(1), ackBooked(2), ackBooked(3))); res.Err != nil || len(res.Rows) != 3 || res.Rows[2].Status != store.RowApplied {
		t.Fatalf("input %s then acks: got %s, want three applied rows", path, describe(res))
	}
	m.Apply(next+1, ts, setStockMark(3))
	m.Apply(next+2, ts, tickCmd())
	for _, ref := range []string{"o-1", "o-3"} {
		if _, err := m.Order("web", ref); !errors.Is(err, store.ErrUnknownOrder) {
			t.Errorf("input %s, %s finished an hour later: got %v, want it forgotten (%v)", path, ref, err, store.ErrUnknownOrder)
		}
	}
	if e, err := m.Order("rep", "o-4"); err != nil || e.Seq != 4 {
		t.Errorf("input %s, o-4 pending: got %+v, %v, want it kept", path, e, err)
	}
}
