package store_test

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// deadRow is a rejected row as a test states it.
type deadRow struct {
	rev    store.Revision
	source string
	row    uint32
	key    string
	field  string // the reason's field prefix
}

// rejectedAre checks Rejected(limit): the rows newest first and the counts.
func rejectedAre(limit int, rows []deadRow, counts ...store.RejectedCount) step {
	return checkStep(fmt.Sprintf("rejected rows (limit %d)", limit), func(t *testing.T, m *store.Machine, where string) {
		gotRows, gotCounts := m.Rejected(limit)
		var got []deadRow
		for _, r := range gotRows {
			field, _, _ := strings.Cut(r.Reason, ": ")
			got = append(got, deadRow{r.Revision, r.Source, r.Row, r.Key, field})
			if want := store.Timestamp(t0 + int64(r.Revision)*int64(time.Second)); r.At != want {
				t.Errorf("%s: got row %+v at t0%+v, want t0%+v (its entry's time)", where, r, time.Duration(int64(r.At)-t0), time.Duration(int64(want)-t0))
			}
		}
		if !reflect.DeepEqual(got, rows) && (len(got) != 0 || len(rows) != 0) {
			t.Errorf("%s: got rows %+v, want %+v", where, got, rows)
		}
		if !reflect.DeepEqual(gotCounts, counts) && (len(gotCounts) != 0 || len(counts) != 0) {
			t.Errorf("%s: got counts %+v, want %+v", where, gotCounts, counts)
		}
	})
}

// secondly spaces steps one second apart, so entry n is applied at t0+n s.
func secondly(steps []step) []step {
	out := make([]step, len(steps))
	for i, s := range steps {
		if s.cmd != nil {
			s.laterBy = time.Second
		}
		out[i] = s
	}
	return out
}

func TestScenarioDeadLetters(t *testing.T) {
	runAll(t, []scenario{
		{name: "rejected rows of every ERP batch are kept newest first and counted by field", steps: secondly(with(reserveWorld,
			// Entries 1-6 are the world, 7 and 8 this hold and confirm.
			ok(reserve("web", "r1", 0, line("rose", 1))), ok(confirm("web", "r1", "o1")),
			ok(setStock(row("rose", "zz", 1, 1), row("rose", "ams", 1, 0), row("rose", "ams", 9, 2), row("rose", "ams", 1, 1))).
				rowsAre(rejected("rows[0].location"), rejected("rows[1].version"), applied(2, 9), stale("rows[3].version", 2, 9)),
			ok(adjust(delta("d1", "rose", "zz", 1, 0), delta("", "rose", "ams", 1, 0), delta("d2", "rose", "ams", 1, 0))).
				rowsAre(rejected("rows[0].location"), rejected("rows[1].delta_id"), applied(2, 10)),
			ok(setIncomingCmd(incLine("PO9", "rose", "zz", 5, 0, day, 1))).rowsAre(rejected("lines[0].location")),
			ok(ackCmd(ackBooked(1), ackBooked(42))).rowsAre(ackApplied(), rejected("acks[1].seq")),
			// A batch refused as a whole has no rows to keep.
			fails(setStock(), store.ErrInvalid, "rows"),
			rejectedAre(100, []deadRow{
				{12, "ack_orders", 1, "42", "acks[1].seq"},
				{11, "set_incoming", 0, "PO9", "lines[0].location"},
				{10, "adjust_stock", 1, "", "rows[1].delta_id"},
				{10, "adjust_stock", 0, "d1", "rows[0].location"},
				{9, "set_stock", 1, "rose@ams", "rows[1].version"},
				{9, "set_stock", 0, "rose@zz", "rows[0].location"},
			},
				store.RejectedCount{Reason: "acks[].seq", Count: 1}, store.RejectedCount{Reason: "lines[].location", Count: 1},
				store.RejectedCount{Reason: "rows[].delta_id", Count: 1}, store.RejectedCount{Reason: "rows[].location", Count: 2},
				store.RejectedCount{Reason: "rows[].version", Count: 1}),
			rejectedAre(2, []deadRow{{12, "ack_orders", 1, "42", "acks[1].seq"}, {11, "set_incoming", 0, "PO9", "lines[0].location"}},
				store.RejectedCount{Reason: "acks[].seq", Count: 1}, store.RejectedCount{Reason: "lines[].location", Count: 1},
				store.RejectedCount{Reason: "rows[].delta_id", Count: 1}, store.RejectedCount{Reason: "rows[].location", Count: 2},
				store.RejectedCount{Reason: "rows[].version", Count: 1}),
			restoresCleanly(),
		))},
		{name: "nothing rejected, nothing kept", steps: with(reserveWorld,
			ok(setStock(row("rose", "ams", 10, 1))).rowsAre(stale("rows[0].version", 1, 10)),
			rejectedAre(0, nil),
		)},
	})
}

// TestDeadLetterRingEvictsOldestAt10000 fills the list past MaxRejectedRows:
// the oldest rows go, the counts keep every rejection, and a restored
// machine keeps the order and evicts the same rows next.
func TestDeadLetterRingEvictsOldestAt10000(t *testing.T) {
	if store.MaxRejectedRows != 10000 {
		t.Fatalf("input MaxRejectedRows: got %d, want 10000 (the API documents it)", store.MaxRejectedRows)
	}
	m := store.New(store.Config{})
	apply := func(ms []*store.Machine, cmd *logv1.Command) {
		t.Helper()
		idx := ms[0].AppliedIndex() + 1
		for _, x := range ms {
			if res := x.Apply(idx, store.Timestamp(t0+int64(idx)), cmd); res.Err != nil {
				t.Fatalf("input %v: got %v, want ok", cmd.GetKind(), res.Err)
			}
		}
	}
	apply([]*store.Machine{m}, loc("ams"))
	batch := func(prefix string, n int) *logv1.Command {
		rows := make([]*logv1.StockCount, n)
		for i := range rows {
			rows[i] = row(prefix+strconv.Itoa(i), "zz", 1, 1)
		}
		return setStock(rows...)
	}
	apply([]*store.Machine{m}, batch("a", store.MaxRows))
	apply([]*store.Machine{m}, batch("b", 5))
	rows, counts := m.Rejected(store.MaxRejectedRows)
	if len(rows) != store.MaxRejectedRows {
		t.Fatalf("input %d rejected rows: got %d kept, want %d", store.MaxRows+5, len(rows), store.MaxRejectedRows)
	}
	wantKeys := []string{"b4@zz", "b3@zz", "b2@zz", "b1@zz", "b0@zz", "a9999@zz"}
	for i, k := range wantKeys {
		if rows[i].Key != k {
			t.Errorf("input %d rejected rows: got row %d %+v, want key %s", store.MaxRows+5, i, rows[i], k)
		}
	}
	if last := rows[len(rows)-1]; last.Key != "a5@zz" || last.Row != 5 || last.Revision != 2 {
		t.Errorf("input %d rejected rows: got oldest kept %+v, want a5@zz, row 5 of revision 2 (a0-a4 evicted)", store.MaxRows+5, last)
	}
	if want := []store.RejectedCount{{Reason: "rows[].location", Count: uint64(store.MaxRows + 5)}}; !reflect.DeepEqual(counts, want) {
		t.Errorf("input %d rejected rows: got counts %+v, want %+v", store.MaxRows+5, counts, want)
	}
	if got, _ := m.Rejected(0); len(got) != 100 || got[0].Key != "b4@zz" {
		t.Errorf("input Rejected(0): got %d rows starting %+v, want the newest 100", len(got), got[0])
	}

	back, err := restored(m, store.Config{})
	if err != nil {
		t.Fatalf("input the full list: got restore error %v, want ok", err)
	}
	if got, _ := back.Rejected(store.MaxRejectedRows); !reflect.DeepEqual(got, rows) {
		t.Fatalf("input the full list restored: got rows differing from the original, want the same in the same order")
	}
	apply([]*store.Machine{m, back}, batch("c", 2))
	a, ac := m.Rejected(store.MaxRejectedRows)
	b, bc := back.Rejected(store.MaxRejectedRows)
	if !reflect.DeepEqual(a, b) || !reflect.DeepEqual(ac, bc) || a[len(a)-1].Key != "a7@zz" || digest(m) != digest(back) {
		t.Errorf("input two more rows after a restore (I4): got oldest %+v and %+v, want both a7@zz and equal lists", a[len(a)-1], b[len(b)-1])
	}
}

// TestRestoreRefusesBrokenDeadLetters: a row from no known source, rows
// counted less often than kept, and counts out of order are refused.
func TestRestoreRefusesBrokenDeadLetters(t *testing.T) {
	m := run(t, store.Config{}, with(reserveWorld,
		ok(setStock(row("rose", "zz", 1, 1), row("rose", "ams", 1, 0))),
	))
	recs := mustRecords(t, m)
	edit := func(f func(rec *logv1.SnapshotRecord) bool) [][]byte {
		out := append([][]byte(nil), recs...)
		for i, r := range recs {
			var rec logv1.SnapshotRecord
			if err := unmarshalRecord(r, &rec); err != nil {
				t.Fatal(err)
			}
			if f(&rec) {
				out[i] = marshalRecord(t, &rec)
				return out
			}
		}
		t.Fatalf("input records: got none to edit")
		return nil
	}
	for name, stream := range map[string][][]byte{
		"an unknown source": edit(func(rec *logv1.SnapshotRecord) bool {
			if r := rec.GetRejectedRow(); r != nil {
				r.Source = "elsewhere"
				return true
			}
			return false
		}),
		"a count below the rows kept": edit(func(rec *logv1.SnapshotRecord) bool {
			if c := rec.GetRejectedCount(); c != nil && c.GetReason() == "rows[].version" {
				c.Reason = "rows[].zzz"
				return true
			}
			return false
		}),
		"a row from a later revision": edit(func(rec *logv1.SnapshotRecord) bool {
			if r := rec.GetRejectedRow(); r != nil {
				r.Revision = 99
				return true
			}
			return false
		}),
		"counts out of order": append(recs[:len(recs)-2:len(recs)-2], recs[len(recs)-1], recs[len(recs)-2]),
	} {
		if err := store.New(store.Config{}).Restore(sliceSource(stream)); !errors.Is(err, store.ErrCorruptSnapshot) {
			t.Errorf("input dead letters with %s: got %v, want %v", name, err, store.ErrCorruptSnapshot)
		}
	}
	if err := store.New(store.Config{}).Restore(sliceSource(recs)); err != nil {
		t.Fatalf("input the unedited stream: got %v, want ok", err)
	}
}
