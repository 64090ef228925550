package store

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/stockd/stockd/api/logv1"
)

// Full backfill (issue 5 item 3). A generation is staged chunk by chunk
// (BackfillChunk) and applied at once by its BackfillCommit, so readers never
// see half a catalog. One generation is staged at a time:
//
//   - chunk 0 of any generation replaces whatever is staged (a new generation,
//     or the same one started over);
//   - chunk n > 0 must name the staged generation and be its next chunk; any
//     other chunk discards the staging and is refused (ErrInvalid, "chunk");
//   - a commit must name the staged generation and its chunk count, else it is
//     refused ("generation_id" or "chunks") and the staging is left as it is;
//   - a generation never committed changes nothing visible; the next chunk 0
//     replaces it.
//
// Rows are checked at commit, one by one, exactly as SetStock checks them
// (setStockRow), numbered across the generation ("rows[12345].version"), and
// rejected rows go to the dead-letter list with source "backfill". With prune,
// every counter at a declared location that no row of the generation named
// (whatever that row's status) gets on_hand 0 with its version unchanged: a
// later count needs a newer version to set it again, and an older or
// equal-version count of the pruned figure stays stale or rejected as before.
// Holds and committed units of a pruned counter are kept; its oversold
// exposure shows.
//
// A commit answers with a summary, not one RowResult per row: a million row
// answers cost ~50 MB on every replica, and ~15 MB on the wire when a follower
// forwarded the commit (over gRPC's 4 MB message limit, so the forward
// failed). The summary travels in the fields every Result already has, so
// EncodeResult and DecodeResult carry it unchanged; BackfillSummaryOf reads
// it:
//
//   - Rows[0], Rows[1], Rows[2]: one row per status (RowApplied,
//     RowIgnoredStale, RowRejected) whose Version is how many rows of the
//     generation got that status;
//   - Rows[3:]: the first MaxBackfillRejected rejected rows in row order, each
//     with its Reason and its row number across the generation in Version;
//   - Count: the number of counters whose on_hand the prune changed.

// sourceBackfill names backfill rows in the dead-letter list.
const sourceBackfill = "backfill"

// MaxBackfillRejected bounds the rejected rows a commit's summary names.
const MaxBackfillRejected = 100

// BackfillSummary is a BackfillCommit's answer (BackfillSummaryOf).
type BackfillSummary struct {
	// Applied, IgnoredStale and Rejected count the generation's rows by status.
	Applied, IgnoredStale, Rejected uint64
	// RejectedRows are the first MaxBackfillRejected rejected rows, in row order.
	RejectedRows []BackfillRejectedRow
	// Pruned is the number of counters whose on_hand the prune changed.
	Pruned uint32
}

// BackfillRejectedRow is one rejected row of a generation: its number across
// the generation (0-based) and why ("rows[12345].version: ...").
type BackfillRejectedRow struct {
	Row    uint64
	Reason string
}

// BackfillSummaryOf reads the summary of a BackfillCommit's Result, also one
// that went through EncodeResult and DecodeResult. ok is false when r is not
// shaped as one (a refusal, or another command's answer).
func BackfillSummaryOf(r Result) (s BackfillSummary, ok bool) {
	if r.Err != nil || len(r.Rows) < 3 || r.Rows[0].Status != RowApplied ||
		r.Rows[1].Status != RowIgnoredStale || r.Rows[2].Status != RowRejected {
		return BackfillSummary{}, false
	}
	s = BackfillSummary{Applied: r.Rows[0].Version, IgnoredStale: r.Rows[1].Version, Rejected: r.Rows[2].Version, Pruned: r.Count}
	for _, row := range r.Rows[3:] {
		s.RejectedRows = append(s.RejectedRows, BackfillRejectedRow{Row: row.Version, Reason: row.Reason})
	}
	return s, true
}

// backfillStaging is the generation staged but not committed. Apply-goroutine
// only; rows are values, never changed once staged, kept in the slices they
// were staged in (one per chunk, or per snapshot record after a restore), so
// staging never copies what it staged before.
type backfillStaging struct {
	generation string
	chunks     uint32
	parts      [][]stagedRow
	rows       int // the rows in parts
}

// each calls f with every staged row and its number across the generation, in order.
func (b *backfillStaging) each(f func(i int, r *stagedRow)) {
	i := 0
	for _, p := range b.parts {
		for j := range p {
			f(i, &p[j])
			i++
		}
	}
}

// stagedRow is one staged count. A value, not a *logv1.StockCount: a million
// of them are 48 MB in one allocation per chunk instead of a million 96-byte
// messages for the collector to allocate and scan; the location is the
// catalog's copy of the string when the location is declared.
type stagedRow struct {
	item     string
	location string
	onHand   int64
	version  uint64
}

// stockCount is r as the message setStockRow and the snapshot take, in m.
func (r *stagedRow) stockCount(m *logv1.StockCount) *logv1.StockCount {
	m.Item, m.Location, m.OnHandBaseUnits, m.Version = r.item, r.location, r.onHand, r.version
	return m
}

func validateBackfillChunk(c *logv1.BackfillChunk) *Rejection {
	if r := checkID("generation_id", c.GetGenerationId()); r != nil {
		return r
	}
	return checkRows(len(c.GetRows()))
}

func validateBackfillCommit(c *logv1.BackfillCommit) *Rejection {
	if r := checkID("generation_id", c.GetGenerationId()); r != nil {
		return r
	}
	if c.GetChunks() == 0 {
		return invalid("chunks", "must be >= 1")
	}
	return nil
}

// backfillChunk stages one chunk.
func (st *state) backfillChunk(c *logv1.BackfillChunk) Result {
	if r := validateBackfillChunk(c); r != nil {
		return Result{Err: r}
	}
	gen, n := c.GetGenerationId(), c.GetChunk()
	switch b := st.backfill; {
	case n == 0:
		st.backfill = &backfillStaging{generation: gen}
	case b == nil:
		return Result{Err: invalid("chunk", "chunk "+strconv.FormatUint(uint64(n), 10)+" of generation "+
			strconv.Quote(gen)+" but no generation is staged")}
	case b.generation != gen || b.chunks != n:
		st.backfill = nil
		return Result{Err: invalid("chunk", "chunk "+strconv.FormatUint(uint64(n), 10)+" of generation "+
			strconv.Quote(gen)+" does not follow chunk "+strconv.FormatUint(uint64(b.chunks)-1, 10)+
			" of staged generation "+strconv.Quote(b.generation)+"; the staging is discarded")}
	}
	b := st.backfill
	cat := st.catalog.Load()
	part := make([]stagedRow, len(c.GetRows()))
	for i, row := range c.GetRows() {
		part[i] = stagedRow{item: row.GetItem(), location: string(cat.intern(LocationID(row.GetLocation()))),
			onHand: row.GetOnHandBaseUnits(), version: row.GetVersion()}
	}
	b.parts = append(b.parts, part)
	b.rows += len(part)
	b.chunks++
	return Result{}
}

// backfillCommit applies the staged generation in this one command.
func (st *state) backfillCommit(c *logv1.BackfillCommit) Result {
	if r := validateBackfillCommit(c); r != nil {
		return Result{Err: r}
	}
	b := st.backfill
	switch {
	case b == nil || b.generation != c.GetGenerationId():
		staged := "no generation is staged"
		if b != nil {
			staged = "the staged generation is " + strconv.Quote(b.generation)
		}
		return Result{Err: invalid("generation_id", "generation "+strconv.Quote(c.GetGenerationId())+" is not staged: "+staged)}
	case b.chunks != c.GetChunks():
		return Result{Err: invalid("chunks", strconv.FormatUint(uint64(c.GetChunks()), 10)+" chunks committed, "+
			strconv.FormatUint(uint64(b.chunks), 10)+" staged")}
	}
	cat := st.catalog.Load()
	st.createNewItems(cat, b)
	// Rows[0:3] count by status (see the top of this file); rejected rows follow.
	sum := []RowResult{{Status: RowApplied}, {Status: RowIgnoredStale}, {Status: RowRejected}}
	var msg logv1.StockCount
	var seen seenLocations
	b.each(func(i int, row *stagedRow) {
		r := st.setStockRow(cat, i, row.stockCount(&msg), false)
		switch r.Status {
		case RowApplied:
			sum[0].Version++
			seen.add(LocationID(row.location))
		case RowIgnoredStale:
			sum[1].Version++
			seen.add(LocationID(row.location))
		case RowRejected:
			sum[2].Version++
			st.recordBackfillRejected(i, row, r.Reason)
			if len(sum) < 3+MaxBackfillRejected {
				sum = append(sum, RowResult{Status: RowRejected, Reason: r.Reason, Version: uint64(i)})
			}
		}
	})
	for _, s := range sum[:3] {
		st.stats.addRows(s.Status, s.Version)
	}
	st.stats.erpSeen(&seen, Timestamp(st.now.Load()))
	var pruned uint32
	if c.GetPrune() {
		pruned = st.pruneBackfill(cat, b)
	}
	st.absorb(c.GetAbsorbedMark())
	st.backfill = nil
	return Result{Rows: sum, Count: pruned}
}

// createNewItems gives every item the generation names that does not exist
// yet all the counters its rows will create, in one allocation, before the
// rows apply. Row by row, ensureCounter grows an item by exactly one counter
// per new location (insertExact), which is quadratic in the item's
// locations: the first load of 1,000 items x 1,000 locations copied 30 GB
// and took 5 to 6.5 s of apply on each replica, against 0.4 s for 100,000 items x
// 10 locations. A counter is made only for a row that setStockRow will apply
// to a counter that does not exist (its target is valid and its version > 0),
// so the state after the commit is the same; a reader in between sees the
// zero counter (nothing on hand) as it would have seen the item not counted
// yet. Items that exist keep growing one counter at a time.
func (st *state) createNewItems(cat *catalog, b *backfillStaging) {
	var (
		order   []ItemID
		locs    map[ItemID][]LocationID
		last    ItemID
		lastNew bool
		started bool
	)
	b.each(func(_ int, r *stagedRow) {
		item := ItemID(r.item)
		if !started || item != last {
			// Rows usually come item by item: look each item up once.
			// Only the apply goroutine writes the shards, so it reads them unlocked.
			_, exists := st.shardFor(item).items[item]
			started, last, lastNew = true, item, !exists
		}
		if !lastNew || r.version == 0 || checkID("", r.item) != nil || checkID("", r.location) != nil {
			return
		}
		loc := LocationID(r.location)
		if _, ok := cat.locations[loc]; !ok {
			return
		}
		if locs == nil {
			locs = make(map[ItemID][]LocationID)
		}
		if _, seen := locs[item]; !seen {
			order = append(order, item)
		}
		locs[item] = append(locs[item], loc)
	})
	for _, item := range order {
		l := locs[item]
		slices.Sort(l)
		l = slices.Compact(l)
		sh := st.shardFor(item)
		is := &itemState{counters: make([]counter, len(l))}
		for i, loc := range l {
			is.counters[i] = counter{loc: sh.locationRef(cat, loc)}
		}
		sh.mu.Lock()
		sh.items[item] = is
		sh.mu.Unlock()
	}
}

// recordBackfillRejected keeps rejected row i in the dead-letter list, as
// recordRejected does for a batch.
func (st *state) recordBackfillRejected(i int, row *stagedRow, reason string) {
	st.omu.Lock()
	defer st.omu.Unlock()
	st.deadLetters.add(RejectedRow{Revision: st.index, At: Timestamp(st.now.Load()), Source: sourceBackfill, Row: uint32(i),
		Key: row.item + "@" + row.location, Reason: reason})
	st.deadLetters.count(reasonKey(reason), 1)
}

// pruneBackfill zeroes on_hand of every counter at a declared location that
// no row names; it returns how many counters it changed.
func (st *state) pruneBackfill(cat *catalog, b *backfillStaging) uint32 {
	named := make(map[counterKey]struct{}, b.rows)
	b.each(func(_ int, r *stagedRow) { named[counterKey{ItemID(r.item), LocationID(r.location)}] = struct{}{} })
	var n uint32
	for i := range st.shards {
		sh := &st.shards[i]
		sh.mu.Lock()
		for id, is := range sh.items {
			for j := range is.counters {
				ct := &is.counters[j]
				if ct.onHand == 0 {
					continue
				}
				if _, ok := cat.locations[ct.location()]; !ok {
					continue
				}
				if _, ok := named[counterKey{id, ct.location()}]; ok {
					continue
				}
				before := ct.available(0)
				ct.onHand = 0
				st.touch(id, ct)
				st.stats.dropped(before, ct)
				if n < ^uint32(0) {
					n++
				}
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// writeBackfill emits the staging, if any, as records of MaxRows rows each
// (the last one fewer; one empty record for a staging without rows), every
// one carrying the generation and its chunk count. Record boundaries do not
// follow the chunks: equal stagings write equal streams.
func writeBackfill(w *recordWriter, b *backfillStaging) {
	if b == nil {
		return
	}
	br := &logv1.BackfillStagingRecord{GenerationId: b.generation, Chunks: b.chunks}
	rec := &logv1.SnapshotRecord{Kind: &logv1.SnapshotRecord_BackfillStaging{BackfillStaging: br}}
	msgs := reuseMessages[logv1.StockCount](nil, min(b.rows, MaxRows)) // reused: write encodes before it returns
	n := 0
	b.each(func(_ int, r *stagedRow) {
		r.stockCount(msgs[n])
		if n++; n == MaxRows {
			br.Rows = msgs
			w.write(rec)
			n = 0
		}
	})
	if n > 0 || b.rows == 0 {
		br.Rows = msgs[:n]
		w.write(rec)
	}
}

// restoreBackfill rebuilds the staging from its records, in order.
func (st *state) restoreBackfill(rec *logv1.BackfillStagingRecord) error {
	gen, n := rec.GetGenerationId(), rec.GetChunks()
	if gen == "" || n == 0 {
		return fmt.Errorf("backfill staging %q with %d chunks", gen, n)
	}
	b := st.backfill
	if b == nil {
		b = &backfillStaging{generation: gen, chunks: n}
		st.backfill = b
	} else if b.generation != gen || b.chunks != n {
		return fmt.Errorf("backfill staging %q/%d after %q/%d", gen, n, b.generation, b.chunks)
	}
	if uint64(b.rows)+uint64(len(rec.GetRows())) > uint64(n)*MaxRows {
		return fmt.Errorf("backfill staging %q holds %d rows in %d chunks", gen, b.rows+len(rec.GetRows()), n)
	}
	if len(rec.GetRows()) == 0 {
		return nil
	}
	part := make([]stagedRow, len(rec.GetRows()))
	for i, row := range rec.GetRows() {
		part[i] = stagedRow{item: row.GetItem(), location: row.GetLocation(), onHand: row.GetOnHandBaseUnits(), version: row.GetVersion()}
	}
	b.parts = append(b.parts, part)
	b.rows += len(part)
	return nil
}

// copyBackfill returns a snapshot's view of the staging: staged parts never
// change and appends go past the copied length, so sharing them is safe.
func copyBackfill(b *backfillStaging) *backfillStaging {
	if b == nil {
		return nil
	}
	return &backfillStaging{generation: b.generation, chunks: b.chunks, parts: b.parts[:len(b.parts):len(b.parts)], rows: b.rows}
}
