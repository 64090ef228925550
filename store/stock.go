package store

import (
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/logv1"
)

// setStock applies absolute ERP counts row by row, then the batch's absorbed
// mark. Each row is applied, ignored as stale, or rejected on its own.
func (st *state) setStock(c *logv1.SetStock) Result {
	if r := checkSetStock(c); r != nil {
		return Result{Err: r}
	}
	cat := st.catalog.Load()
	rows := make([]RowResult, len(c.GetRows()))
	var seen seenLocations
	for i, row := range c.GetRows() {
		rows[i] = st.setStockRow(cat, i, row, c.GetSameVersionStale())
		st.countRow(&seen, rows[i].Status, row.GetLocation())
	}
	st.stats.erpSeen(&seen, Timestamp(st.now.Load()))
	st.recordRejected(sourceSetStock, rows, func(i int) string { // deadletter.go
		return c.GetRows()[i].GetItem() + "@" + c.GetRows()[i].GetLocation()
	})
	st.absorb(c.GetAbsorbedMark())
	return Result{Rows: rows}
}

// sameStale (SetStock.same_version_stale) ignores a row under the held
// version whatever its count; without it only the same count is stale and a
// different one is rejected.
func (st *state) setStockRow(cat *catalog, i int, row *logv1.StockCount, sameStale bool) RowResult {
	if r := checkRowTarget(cat, i, row.GetItem(), row.GetLocation()); r != nil {
		return rejectedRow(r)
	}
	if row.GetVersion() == 0 {
		return rejectedRow(invalid(indexed("rows", i, "version"), "must be > 0"))
	}
	item, loc := ItemID(row.GetItem()), LocationID(row.GetLocation())
	sh := st.shardFor(item)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if ct := sh.items[item].counterAt(loc); ct != nil {
		v := row.GetVersion()
		switch {
		case v < ct.version:
			return staleRow(ct, indexed("rows", i, "version")+": "+strconv.FormatUint(v, 10)+
				" is older than the held version "+strconv.FormatUint(ct.version, 10))
		case v == ct.version && Units(row.GetOnHandBaseUnits()) == ct.onHand:
			return staleRow(ct, indexed("rows", i, "version")+": version "+strconv.FormatUint(v, 10)+" already applied")
		case v == ct.version && sameStale:
			return staleRow(ct, indexed("rows", i, "version")+": version "+strconv.FormatUint(v, 10)+
				" already applied (on_hand now "+strconv.FormatInt(int64(ct.onHand), 10)+")")
		case v == ct.version:
			r := invalid(indexed("rows", i, "version"), "version "+strconv.FormatUint(v, 10)+
				" already holds on_hand "+strconv.FormatInt(int64(ct.onHand), 10))
			res := rejectedRow(r)
			res.Version, res.OnHand = ct.version, ct.onHand
			return res
		}
	}
	ct := sh.ensureCounter(cat, item, loc)
	before := ct.available(0)
	ct.onHand, ct.version = Units(row.GetOnHandBaseUnits()), row.GetVersion()
	st.touch(item, ct)
	st.stats.dropped(before, ct)
	return RowResult{Status: RowApplied, Version: ct.version, OnHand: ct.onHand}
}

// adjustStock applies signed deltas row by row, each once by its delta id.
// Applied and stale rows are remembered for the retry window; a rejected row
// is not, so once its cause is fixed a resend applies it (once).
func (st *state) adjustStock(now Timestamp, c *logv1.AdjustStock) Result {
	if r := checkRows(len(c.GetRows())); r != nil {
		return Result{Err: r}
	}
	cat := st.catalog.Load()
	rows := make([]RowResult, len(c.GetRows()))
	var seen seenLocations
	for i, row := range c.GetRows() {
		rows[i] = st.adjustRow(now, cat, i, row)
		st.countRow(&seen, rows[i].Status, row.GetLocation())
	}
	st.stats.erpSeen(&seen, now)
	st.recordRejected(sourceAdjustStock, rows, func(i int) string { return c.GetRows()[i].GetDeltaId() })
	return Result{Rows: rows}
}

func (st *state) adjustRow(now Timestamp, cat *catalog, i int, row *logv1.StockAdjustment) RowResult {
	if r := checkID(indexed("rows", i, "delta_id"), row.GetDeltaId()); r != nil {
		return rejectedRow(r)
	}
	if d := st.deltas[row.GetDeltaId()]; d != nil {
		if proto.Equal(d.row, row) {
			return d.result
		}
		return rejectedRow(reject(ErrIdempotencyConflict, indexed("rows", i, "delta_id"),
			"delta id "+strconv.Quote(row.GetDeltaId())+" was used before with a different payload"))
	}
	if r := checkRowTarget(cat, i, row.GetItem(), row.GetLocation()); r != nil {
		return rejectedRow(r)
	}
	if row.GetDeltaBaseUnits() == 0 {
		return rejectedRow(invalid(indexed("rows", i, "delta_base_units"), "must not be 0"))
	}
	if r := checkText(indexed("rows", i, "reason"), row.GetReason()); r != nil {
		return rejectedRow(r)
	}
	item, loc := ItemID(row.GetItem()), LocationID(row.GetLocation())
	sh := st.shardFor(item)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	var res RowResult
	ct := sh.items[item].counterAt(loc)
	switch {
	case ct != nil && row.GetVersion() != 0 && row.GetVersion() <= ct.version:
		res = staleRow(ct, indexed("rows", i, "version")+": "+strconv.FormatUint(row.GetVersion(), 10)+
			" is not newer than the held version "+strconv.FormatUint(ct.version, 10))
	default:
		var onHand Units
		if ct != nil {
			onHand = ct.onHand
		}
		next, ok := addUnits(onHand, Units(row.GetDeltaBaseUnits()))
		if !ok {
			return rejectedRow(reject(ErrOverflow, indexed("rows", i, "delta_base_units"), "on_hand would overflow"))
		}
		ct = sh.ensureCounter(cat, item, loc)
		before := ct.available(0)
		ct.onHand = next
		ct.version = max(ct.version, row.GetVersion())
		st.touch(item, ct)
		st.stats.dropped(before, ct)
		res = RowResult{Status: RowApplied, Version: ct.version, OnHand: ct.onHand}
	}
	d := &delta{row: proto.CloneOf(row), result: res, prunableAt: now}
	d.pruneSeq = st.enqueuePrune(pruneItem{at: now, kind: pruneDelta, deltaID: row.GetDeltaId()})
	st.deltas[row.GetDeltaId()] = d
	return res
}

// countRow counts an ERP row's outcome and, unless rejected, its location as
// reached (stats.go).
func (st *state) countRow(seen *seenLocations, status RowStatus, loc string) {
	if st.stats == nil {
		return
	}
	st.stats.addRows(status, 1)
	if status != RowRejected {
		seen.add(LocationID(loc))
	}
}

// absorb moves every confirmed order with sequence <= mark out of committed:
// the ERP's counts now include it (or it refused it). The mark never passes
// the last entry issued, and never moves back.
func (st *state) absorb(mark uint64) {
	mark = min(mark, st.nextOrderSeq-1)
	if mark <= st.absorbedMark {
		return
	}
	st.omu.Lock()
	defer st.omu.Unlock()
	st.absorbedMark = mark
	for st.absorbedPos < len(st.orders) && st.orders[st.absorbedPos].seq <= mark {
		o := st.orders[st.absorbedPos]
		// A cancelled or refused order's units left committed when it was
		// cancelled or refused; a cancellation entry holds none.
		if o.holdsCommitted() {
			for _, l := range o.lines {
				if l.poLine != "" {
					continue // waiting on incoming, never committed (backorder.go)
				}
				sh := st.shardFor(l.item)
				sh.mu.Lock()
				if ct := sh.items[l.item].counterAt(l.location); ct != nil {
					ct.committed -= l.quantity
					st.touch(l.item, ct)
				}
				sh.mu.Unlock()
			}
			o.absorbed = true
		}
		st.absorbedPos++
	}
}

// checkRowTarget checks a row's item and location ids and that the location is declared.
func checkRowTarget(cat *catalog, i int, item, loc string) *Rejection {
	// Field names are built only for a bad row: a million-row backfill
	// commit spent half its apply time building them for good ones.
	if !validID(item) || !validID(loc) {
		if r := firstOf(checkID(indexed("rows", i, "item"), item), checkID(indexed("rows", i, "location"), loc)); r != nil {
			return r
		}
	}
	if _, ok := cat.locations[LocationID(loc)]; !ok {
		return reject(ErrUnknownLocation, indexed("rows", i, "location"), "unknown location "+strconv.Quote(loc))
	}
	return nil
}

func rejectedRow(r *Rejection) RowResult { return RowResult{Status: RowRejected, Reason: r.Error()} }

func staleRow(ct *counter, reason string) RowResult {
	return RowResult{Status: RowIgnoredStale, Reason: reason, Version: ct.version, OnHand: ct.onHand}
}

// ensureCounter returns the counter at (item, loc), creating the item and the
// counter as needed. The caller holds sh.mu for writing; the pointer is valid
// until the next insertion into the item.
//
// A new counter points at its shard's copy of the location id
// (locationRef), so a million counters share a few strings instead of each
// keeping the one its command was decoded with. The slice grows by exactly one: items hold a handful of
// locations, and append's doubling would leave a quarter of it unused.
func (sh *shard) ensureCounter(cat *catalog, item ItemID, loc LocationID) *counter {
	is := sh.items[item]
	if is == nil {
		is = &itemState{}
		sh.items[item] = is
	}
	i, ok := is.findCounter(loc)
	if !ok {
		is.counters = insertExact(is.counters, i, counter{loc: sh.locationRef(cat, loc)})
	}
	return &is.counters[i]
}

// insertExact inserts v at i into a new array of exactly len(s)+1 elements.
func insertExact[T any](s []T, i int, v T) []T {
	out := make([]T, len(s)+1)
	copy(out, s[:i])
	out[i] = v
	copy(out[i+1:], s[i:])
	return out
}

// addUnits adds with an overflow check.
func addUnits(a, b Units) (Units, bool) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		return 0, false
	}
	return s, true
}

// mulUnits multiplies non-negative quantities with an overflow check.
func mulUnits(a, b Units) (Units, bool) {
	if a == 0 || b == 0 {
		return 0, true
	}
	p := a * b
	if a < 0 || b < 0 || p/b != a {
		return 0, false
	}
	return p, true
}
