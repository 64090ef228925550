package store

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/stockd/stockd/api/logv1"
)

// The dead-letter list (issue 5 item 1): every rejected row of an ERP batch
// (SetStock, AdjustStock, SetIncoming, AckOrders) is kept in a ring of the
// most recent MaxRejectedRows, and counted for all time by its reason key,
// the field at fault without indexes ("rows[].version"). Both are replicated
// state: they are decided in apply and written to snapshots.

// MaxRejectedRows bounds the dead-letter list; the oldest row is evicted first.
const MaxRejectedRows = 10000

// Sources of rejected rows, as RejectedRow.Source names them.
const (
	sourceSetStock    = "set_stock"
	sourceAdjustStock = "adjust_stock"
	sourceSetIncoming = "set_incoming"
	sourceAckOrders   = "ack_orders"
)

// defaultRejectedPage is what Rejected returns without a limit.
const defaultRejectedPage = 100

// deadLetters is the ring and the counts. Changed on the apply goroutine
// under st.omu; read under it.
type deadLetters struct {
	// rows holds at most MaxRejectedRows; once full, rows[next] is the oldest.
	rows   []RejectedRow
	next   int
	counts map[string]uint64
}

func (d *deadLetters) add(r RejectedRow) {
	if len(d.rows) < MaxRejectedRows {
		d.rows = append(d.rows, r)
		return
	}
	d.rows[d.next] = r
	d.next = (d.next + 1) % MaxRejectedRows
}

func (d *deadLetters) count(reason string, n uint64) {
	if d.counts == nil {
		d.counts = make(map[string]uint64)
	}
	d.counts[reason] += n
}

// at returns the k-th row, oldest first.
func (d *deadLetters) at(k int) *RejectedRow {
	return &d.rows[(d.next+k)%len(d.rows)]
}

// ordered copies the rows oldest first.
func (d *deadLetters) ordered() []RejectedRow {
	out := make([]RejectedRow, len(d.rows))
	for k := range out {
		out[k] = *d.at(k)
	}
	return out
}

// sortedCounts copies the counts sorted by reason.
func (d *deadLetters) sortedCounts() []RejectedCount {
	out := make([]RejectedCount, 0, len(d.counts))
	for _, r := range slices.Sorted(maps.Keys(d.counts)) {
		out = append(out, RejectedCount{Reason: r, Count: d.counts[r]})
	}
	return out
}

// recordRejected keeps the batch's rejected rows in the dead-letter list, at
// the entry's revision and time; key names row i ("ITEM@LOCATION", the delta
// id, the po line id, the seq).
func (st *state) recordRejected(source string, rows []RowResult, key func(i int) string) {
	locked := false
	for i, r := range rows {
		if r.Status != RowRejected {
			continue
		}
		if !locked {
			st.omu.Lock()
			defer st.omu.Unlock()
			locked = true
		}
		st.deadLetters.add(RejectedRow{Revision: st.index, At: Timestamp(st.now.Load()), Source: source, Row: uint32(i), Key: key(i), Reason: r.Reason})
		st.deadLetters.count(reasonKey(r.Reason), 1)
	}
}

// reasonKey is the field a row's reason names ("rows[3].version: ..."),
// indexes removed ("rows[].version"); "other" if the reason names none.
func reasonKey(reason string) string {
	field, _, ok := strings.Cut(reason, ": ")
	if !ok || field == "" {
		return "other"
	}
	var b strings.Builder
	in := false
	for i := 0; i < len(field); i++ {
		c := field[i]
		switch {
		case c == '[':
			in = true
		case c == ']':
			in = false
		case in && c >= '0' && c <= '9':
			continue
		case in || !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.'):
			return "other"
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Rejected returns up to limit of the most recent rejected ERP rows, newest
// first, and the counts of all rejections by reason, sorted by reason. limit
// <= 0 means 100; at most MaxRejectedRows are kept. Safe from any goroutine;
// the answers are copies.
func (m *Machine) Rejected(limit int) ([]RejectedRow, []RejectedCount) {
	if limit <= 0 {
		limit = defaultRejectedPage
	}
	st := m.st.Load()
	st.omu.RLock()
	defer st.omu.RUnlock()
	d := &st.deadLetters
	n := min(limit, len(d.rows))
	rows := make([]RejectedRow, n)
	for k := range rows {
		rows[k] = *d.at(len(d.rows) - 1 - k)
	}
	return rows, d.sortedCounts()
}

// writeDeadLetters emits the rows oldest first, then the counts by reason.
func writeDeadLetters(w *recordWriter, rows []RejectedRow, counts []RejectedCount) {
	rr := &logv1.RejectedRowRecord{}
	rec := &logv1.SnapshotRecord{Kind: &logv1.SnapshotRecord_RejectedRow{RejectedRow: rr}}
	for i := range rows {
		r := &rows[i]
		rr.Revision, rr.AtUnixNanos, rr.Source, rr.Row, rr.Key, rr.Reason = uint64(r.Revision), int64(r.At), r.Source, r.Row, r.Key, r.Reason
		w.write(rec)
	}
	cr := &logv1.RejectedCountRecord{}
	rec = &logv1.SnapshotRecord{Kind: &logv1.SnapshotRecord_RejectedCount{RejectedCount: cr}}
	for _, c := range counts {
		cr.Reason, cr.Count = c.Reason, c.Count
		w.write(rec)
	}
}

// restoreRejectedRow appends one row to the list; rows come oldest first,
// in the order they were applied.
func (st *state) restoreRejectedRow(rec *logv1.RejectedRowRecord) error {
	r := RejectedRow{Revision: Revision(rec.GetRevision()), At: Timestamp(rec.GetAtUnixNanos()), Source: rec.GetSource(),
		Row: rec.GetRow(), Key: rec.GetKey(), Reason: rec.GetReason()}
	d := &st.deadLetters
	switch r.Source {
	case sourceSetStock, sourceAdjustStock, sourceSetIncoming, sourceAckOrders, sourceBackfill:
	default:
		return fmt.Errorf("rejected row from unknown source %q", r.Source)
	}
	switch n := len(d.rows); {
	case n == MaxRejectedRows:
		return fmt.Errorf("more than %d rejected rows", MaxRejectedRows)
	case n > 0 && (r.Revision < d.rows[n-1].Revision || r.At < d.rows[n-1].At):
		return fmt.Errorf("rejected row at revision %d time %d out of order", r.Revision, r.At)
	case uint64(r.Revision) > st.applied.Load() || int64(r.At) > st.now.Load() || (r.Row >= MaxRows && r.Source != sourceBackfill):
		return fmt.Errorf("rejected row %d at revision %d time %d is past the snapshot", r.Row, r.Revision, r.At)
	}
	d.rows = append(d.rows, r)
	return nil
}

// restoreRejectedCount records one count; they come sorted by reason, after the rows.
func (st *state) restoreRejectedCount(rec *logv1.RejectedCountRecord) error {
	d := &st.deadLetters
	reason := rec.GetReason()
	switch {
	case rec.GetCount() == 0 || reason == "":
		return fmt.Errorf("rejection count %q is %d", reason, rec.GetCount())
	case d.counts[reason] != 0:
		return fmt.Errorf("rejection count %q twice", reason)
	}
	for r := range d.counts {
		if reason < r {
			return fmt.Errorf("rejection count %q out of order", reason)
		}
	}
	d.count(reason, rec.GetCount())
	return nil
}

// checkDeadLetters checks that every kept row is counted under its reason.
func (st *state) checkDeadLetters() error {
	kept := make(map[string]uint64)
	for _, r := range st.deadLetters.rows {
		kept[reasonKey(r.Reason)]++
	}
	for _, k := range slices.Sorted(maps.Keys(kept)) {
		if st.deadLetters.counts[k] < kept[k] {
			return fmt.Errorf("%d rejected rows kept under %q, counted %d", kept[k], k, st.deadLetters.counts[k])
		}
	}
	return nil
}
