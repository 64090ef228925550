package store

import (
	"fmt"
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
// exposure shows. Result.Count is the number of counters whose on_hand the
// prune changed.

// sourceBackfill names backfill rows in the dead-letter list.
const sourceBackfill = "backfill"

// backfillStaging is the generation staged but not committed. Apply-goroutine
// only; rows are private copies, never changed once staged.
type backfillStaging struct {
	generation string
	chunks     uint32
	rows       []*logv1.StockCount
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
	for _, row := range c.GetRows() {
		b.rows = append(b.rows, &logv1.StockCount{Item: row.GetItem(), Location: row.GetLocation(),
			OnHandBaseUnits: row.GetOnHandBaseUnits(), Version: row.GetVersion()})
	}
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
	rows := make([]RowResult, len(b.rows))
	for i, row := range b.rows {
		rows[i] = st.setStockRow(cat, i, row)
	}
	st.recordRejected(sourceBackfill, rows, func(i int) string { return b.rows[i].GetItem() + "@" + b.rows[i].GetLocation() })
	var pruned uint32
	if c.GetPrune() {
		pruned = st.pruneBackfill(cat, b.rows)
	}
	st.absorb(c.GetAbsorbedMark())
	st.backfill = nil
	return Result{Rows: rows, Count: pruned}
}

// pruneBackfill zeroes on_hand of every counter at a declared location that
// no row names; it returns how many counters it changed.
func (st *state) pruneBackfill(cat *catalog, rows []*logv1.StockCount) uint32 {
	named := make(map[counterKey]struct{}, len(rows))
	for _, row := range rows {
		named[counterKey{ItemID(row.GetItem()), LocationID(row.GetLocation())}] = struct{}{}
	}
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
				if _, ok := cat.locations[ct.location]; !ok {
					continue
				}
				if _, ok := named[counterKey{id, ct.location}]; ok {
					continue
				}
				ct.onHand = 0
				st.touch(ct)
				if n < ^uint32(0) {
					n++
				}
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// writeBackfill emits the staging, if any, as records of at most MaxRows rows
// each, every one carrying the generation and its chunk count.
func writeBackfill(w *recordWriter, b *backfillStaging) {
	if b == nil {
		return
	}
	br := &logv1.BackfillStagingRecord{GenerationId: b.generation, Chunks: b.chunks}
	rec := &logv1.SnapshotRecord{Kind: &logv1.SnapshotRecord_BackfillStaging{BackfillStaging: br}}
	for i := 0; i == 0 || i < len(b.rows); i += MaxRows {
		br.Rows = b.rows[i:min(i+MaxRows, len(b.rows))]
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
	b.rows = append(b.rows, rec.GetRows()...)
	if uint64(len(b.rows)) > uint64(n)*MaxRows {
		return fmt.Errorf("backfill staging %q holds %d rows in %d chunks", gen, len(b.rows), n)
	}
	return nil
}

// copyBackfill returns a snapshot's view of the staging: staged rows never
// change and appends go past the copied length, so sharing them is safe.
func copyBackfill(b *backfillStaging) *backfillStaging {
	if b == nil {
		return nil
	}
	return &backfillStaging{generation: b.generation, chunks: b.chunks, rows: b.rows[:len(b.rows):len(b.rows)]}
}
