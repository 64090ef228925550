package store_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

func bfChunk(gen string, n uint32, rows ...*logv1.StockCount) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_BackfillChunk{BackfillChunk: &logv1.BackfillChunk{GenerationId: gen, Chunk: n, Rows: rows}}}
}

func bfCommit(gen string, chunks uint32, prune bool, mark uint64) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_BackfillCommit{BackfillCommit: &logv1.BackfillCommit{
		GenerationId: gen, Chunks: chunks, Prune: prune, AbsorbedMark: mark}}}
}

// bfMachine is a machine with locations l0, l1, channel c0 over both, and
// counts i1@l0=5, i1@l1=6, i2@l0=7 at version 1.
type bfMachine struct {
	t   *testing.T
	m   *store.Machine
	idx store.Revision
}

// bfSummary reads a commit's summary, also after the Result's round trip
// through its wire form (a follower's forwarded commit), which must not
// change it.
func bfSummary(t *testing.T, res store.Result) store.BackfillSummary {
	t.Helper()
	sum, ok := store.BackfillSummaryOf(res)
	if !ok {
		t.Fatalf("commit answer %s: got no backfill summary", describe(res))
	}
	wire, ok := store.BackfillSummaryOf(store.DecodeResult(store.EncodeResult(res)))
	if !ok || !reflect.DeepEqual(wire, sum) {
		t.Fatalf("commit summary after EncodeResult and DecodeResult: got %+v (%v), want %+v", wire, ok, sum)
	}
	return sum
}

func newBFMachine(t *testing.T) *bfMachine {
	b := &bfMachine{t: t, m: store.New(store.Config{})}
	b.mustApply(loc("l0"))
	b.mustApply(loc("l1"))
	b.mustApply(channel("c0", 0, "l0", "l1"))
	b.mustApply(setStock(row("i1", "l0", 5, 1), row("i1", "l1", 6, 1), row("i2", "l0", 7, 1)))
	return b
}

func (b *bfMachine) apply(cmd *logv1.Command) store.Result {
	b.idx++
	return b.m.Apply(b.idx, store.Timestamp(t0+int64(b.idx)*int64(time.Second)), cmd)
}

func (b *bfMachine) mustApply(cmd *logv1.Command) store.Result {
	b.t.Helper()
	res := b.apply(cmd)
	if res.Err != nil {
		b.t.Fatalf("apply %v: got %v, want accepted", cmd, res.Err)
	}
	return res
}

func (b *bfMachine) refused(cmd *logv1.Command, field string) {
	b.t.Helper()
	res := b.apply(cmd)
	var rej *store.Rejection
	if !errors.As(res.Err, &rej) || !errors.Is(res.Err, store.ErrInvalid) || rej.Field != field {
		b.t.Fatalf("apply %v: got %v, want ErrInvalid naming %q", cmd, res.Err, field)
	}
}

// figure is item's (on_hand, reserved, oversold) at loc for channel c0.
func (b *bfMachine) figure(item, at string) [3]int64 {
	b.t.Helper()
	var a store.SKUAvailability
	if err := b.m.Availability("c0", store.SKU(item), &a); err != nil {
		b.t.Fatalf("availability %s: %v", item, err)
	}
	for _, l := range a.Locations {
		if string(l.Location) == at {
			return [3]int64{int64(l.OnHand), int64(l.Reserved), int64(l.Oversold)}
		}
	}
	b.t.Fatalf("availability %s: no location %s in %+v", item, at, a)
	return [3]int64{}
}

func (b *bfMachine) onHandIs(item, at string, want int64) {
	b.t.Helper()
	if got := b.figure(item, at)[0]; got != want {
		b.t.Errorf("on_hand of %s@%s: got %d, want %d", item, at, got, want)
	}
}

func TestBackfillAppliesAllRowsAtCommitOnly(t *testing.T) {
	b := newBFMachine(t)
	b.mustApply(bfChunk("g1", 0, row("i1", "l0", 50, 2), row("i3", "l1", 8, 2)))
	b.onHandIs("i1", "l0", 5) // a reader between chunks sees the old figures
	b.onHandIs("i3", "l1", 0)
	b.mustApply(bfChunk("g1", 1, row("i2", "l0", 70, 1), row("i1", "l1", 9, 0), row("i2", "l1", 4, 3)))
	b.onHandIs("i1", "l0", 5)
	b.onHandIs("i2", "l1", 0)
	res := b.mustApply(bfCommit("g1", 2, false, 0))
	// i2@l0 version 1 with a different count is rejected (equal version), i1@l1 version 0 too.
	sum := bfSummary(t, res)
	if sum.Applied != 3 || sum.IgnoredStale != 0 || sum.Rejected != 2 || len(sum.RejectedRows) != 2 {
		t.Fatalf("commit: got %+v, want 3 applied, 2 rejected (rows 2 and 3)", sum)
	}
	if r := sum.RejectedRows; r[0].Row != 2 || r[1].Row != 3 || !strings.HasPrefix(r[1].Reason, "rows[3].version") {
		t.Errorf("rejected rows: got %+v, want rows 2 and 3, numbered across the generation (rows[3].version)", r)
	}
	b.onHandIs("i1", "l0", 50)
	b.onHandIs("i3", "l1", 8)
	b.onHandIs("i2", "l1", 4)
	b.onHandIs("i2", "l0", 7)
	b.onHandIs("i1", "l1", 6)
	rows, _ := b.m.Rejected(10)
	if len(rows) != 2 || rows[0].Source != "backfill" || rows[0].Row != 3 || rows[0].Key != "i1@l1" || rows[1].Row != 2 {
		t.Errorf("dead letters: got %+v, want rows 3 (i1@l1) then 2 from source backfill", rows)
	}
	// The staging is gone: committing again is refused.
	b.refused(bfCommit("g1", 2, false, 0), "generation_id")
}

func TestBackfillPruneZeroesOnlyWhatTheGenerationLacked(t *testing.T) {
	for _, prune := range []bool{false, true} {
		t.Run("prune="+strconv.FormatBool(prune), func(t *testing.T) {
			b := newBFMachine(t)
			b.mustApply(reserve("c0", "r1", time.Minute, lineAt("i2", 3, "l0")))
			b.mustApply(bfChunk("g", 0, row("i1", "l0", 9, 2)))
			res := b.mustApply(bfCommit("g", 1, prune, 0))
			b.onHandIs("i1", "l0", 9)
			if !prune {
				if res.Count != 0 {
					t.Errorf("pruned without prune: got %d, want 0", res.Count)
				}
				b.onHandIs("i1", "l1", 6)
				b.onHandIs("i2", "l0", 7)
				return
			}
			if res.Count != 2 {
				t.Errorf("pruned: got %d, want 2 (i1@l1, i2@l0)", res.Count)
			}
			b.onHandIs("i1", "l1", 0)
			if got, want := b.figure("i2", "l0"), [3]int64{0, 3, 3}; got != want {
				t.Errorf("i2@l0 (on_hand, reserved, oversold) after prune: got %v, want %v (the hold stays, exposure shows)", got, want)
			}
			// The version is unchanged: version 1 is stale-or-rejected, version 2 applies.
			r := b.mustApply(setStock(row("i1", "l1", 6, 1), row("i2", "l0", 4, 2)))
			if r.Rows[0].Status != store.RowRejected || r.Rows[1].Status != store.RowApplied {
				t.Errorf("counts after prune: got %s, want rejected (equal version, other count) then applied", describe(r))
			}
		})
	}
}

func TestBackfillNewGenerationDiscardsTheStaging(t *testing.T) {
	b := newBFMachine(t)
	b.mustApply(bfChunk("g1", 0, row("i1", "l0", 11, 2)))
	b.mustApply(bfChunk("g1", 1, row("i1", "l1", 12, 2)))
	b.mustApply(bfChunk("g2", 0, row("i2", "l0", 13, 2)))
	b.refused(bfCommit("g1", 2, false, 0), "generation_id")
	b.refused(bfCommit("g2", 2, false, 0), "chunks")
	b.onHandIs("i2", "l0", 7) // a refused commit applies nothing
	res := b.mustApply(bfCommit("g2", 1, false, 0))
	if sum := bfSummary(t, res); sum.Applied != 1 || sum.IgnoredStale+sum.Rejected != 0 {
		t.Fatalf("commit g2: got %+v, want one row applied", sum)
	}
	b.onHandIs("i1", "l0", 5)
	b.onHandIs("i1", "l1", 6)
	b.onHandIs("i2", "l0", 13)
}

func TestBackfillInterruptedGenerationLeavesStateUntouched(t *testing.T) {
	b := newBFMachine(t)
	ref := newBFMachine(t)
	for n := range uint32(3) {
		b.mustApply(bfChunk("g1", n, row("i1", "l0", 100+int64(n), 5), row("i9", "l1", 1, 5)))
		ref.mustApply(tickCmd())
	}
	b.mustApply(setStock(row("i2", "l0", 8, 2)))
	ref.mustApply(setStock(row("i2", "l0", 8, 2)))
	for _, it := range [][2]string{{"i1", "l0"}, {"i1", "l1"}, {"i2", "l0"}, {"i9", "l1"}} {
		if got, want := b.figure(it[0], it[1]), ref.figure(it[0], it[1]); got != want {
			t.Errorf("%s@%s with an uncommitted generation: got %v, want %v as without it", it[0], it[1], got, want)
		}
	}
	// A later generation replaces it; its commit does not include the old rows.
	b.mustApply(bfChunk("g2", 0, row("i2", "l1", 1, 1)))
	if sum := bfSummary(t, b.mustApply(bfCommit("g2", 1, false, 0))); sum.Applied != 1 || sum.IgnoredStale+sum.Rejected != 0 {
		t.Errorf("commit g2: got %+v, want only g2's row, applied", sum)
	}
	b.onHandIs("i1", "l0", 5)
}

func TestBackfillChunkOutOfOrderIsRefusedAndDiscardsTheStaging(t *testing.T) {
	cases := []struct {
		name string
		cmd  *logv1.Command
	}{
		{"skipped chunk", bfChunk("g1", 3, row("i1", "l0", 1, 2))},
		{"repeated chunk", bfChunk("g1", 1, row("i1", "l0", 1, 2))},
		{"other generation", bfChunk("g2", 2, row("i1", "l0", 1, 2))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBFMachine(t)
			b.mustApply(bfChunk("g1", 0, row("i1", "l0", 1, 2)))
			b.mustApply(bfChunk("g1", 1, row("i1", "l1", 1, 2)))
			b.refused(c.cmd, "chunk")
			b.refused(bfCommit("g1", 2, false, 0), "generation_id")
			b.onHandIs("i1", "l0", 5)
		})
	}
	b := newBFMachine(t)
	b.refused(bfChunk("g1", 1, row("i1", "l0", 1, 2)), "chunk") // nothing staged
}

func TestBackfillValidate(t *testing.T) {
	many := make([]*logv1.StockCount, store.MaxRows+1)
	for i := range many {
		many[i] = row("i", "l0", 1, 1)
	}
	cases := []struct {
		cmd   *logv1.Command
		field string
	}{
		{bfChunk("", 0, row("i", "l0", 1, 1)), "generation_id"},
		{bfChunk("g", 0), "rows"},
		{bfChunk("g", 0, many...), "rows"},
		{bfCommit("", 1, false, 0), "generation_id"},
		{bfCommit("g", 0, false, 0), "chunks"},
	}
	for _, c := range cases {
		var rej *store.Rejection
		if err := store.Validate(c.cmd); !errors.As(err, &rej) || rej.Field != c.field {
			t.Errorf("Validate(%.80v): got %v, want ErrInvalid naming %q", c.cmd, err, c.field)
		}
	}
	for _, c := range []*logv1.Command{bfChunk("g", 0, row("i", "l0", 1, 1)), bfCommit("g", 1, true, 0)} {
		if got := store.CommandFeature(c); got != 2 {
			t.Errorf("CommandFeature(%v): got %d, want 2", c, got)
		}
	}
}

func TestBackfillStagingSurvivesSnapshot(t *testing.T) {
	b := newBFMachine(t)
	big := make([]*logv1.StockCount, store.MaxRows)
	for i := range big {
		big[i] = row("b"+strconv.Itoa(i), "l"+strconv.Itoa(i%2), int64(i), 1)
	}
	b.mustApply(bfChunk("g1", 0, big...))
	b.mustApply(bfChunk("g1", 1, row("i1", "l0", 42, 2), row("i1", "l1", 43, 0)))
	r, err := restored(b.m, store.Config{})
	if err != nil {
		t.Fatalf("restore with a staging: %v", err)
	}
	if got, want := digest(r), digest(b.m); got != want {
		t.Fatalf("digest after restore: got %s, want %s", got, want)
	}
	rb := &bfMachine{t: t, m: r, idx: b.idx}
	want := b.mustApply(bfCommit("g1", 2, true, 0))
	got := rb.mustApply(bfCommit("g1", 2, true, 0))
	if describe(got) != describe(want) {
		t.Errorf("commit on the restored machine: got %.300s, want %.300s", describe(got), describe(want))
	}
	// i1@l1 version 0 is rejected; i2@l0 pruned.
	if sum := bfSummary(t, got); sum.Applied != store.MaxRows+1 || sum.Rejected != 1 || sum.Pruned != 1 {
		t.Errorf("commit after restore: got %+v, want %d applied, 1 rejected, 1 pruned", sum, store.MaxRows+1)
	}
	rb.onHandIs("i1", "l0", 42)
	if g, w := digest(r), digest(b.m); g != w {
		t.Errorf("digest after commit: got %s, want %s", g, w)
	}
	// The digest covers the staging: a machine without it differs.
	c := newBFMachine(t)
	d := newBFMachine(t)
	d.mustApply(bfChunk("g", 0, row("i1", "l0", 1, 9)))
	c.mustApply(tickCmd())
	if digest(c.m) == digest(d.m) {
		t.Errorf("digest with and without a staging: both %s, want different", digest(c.m))
	}
}

// bfGen makes backfill commands for the determinism logs from its own
// random stream, so the other generators' sequences stay as they were:
// mostly well-ordered chunks and commits of two generations, sometimes out of
// order or mismatched, a prune now and then. Rows name items of their own
// (b0..b29), so the other generators' items change only by a prune.
type bfGen struct {
	r      *rand.Rand
	gen    int
	chunks uint32
}

func (g *bfGen) command() *logv1.Command {
	switch k := g.r.IntN(10); {
	case k < 6:
		var rows []*logv1.StockCount
		for range 1 + g.r.IntN(4) {
			rows = append(rows, row("b"+strconv.Itoa(g.r.IntN(30)), genLocations[g.r.IntN(len(genLocations))],
				int64(g.r.IntN(60))-5, uint64(g.r.IntN(9))))
		}
		if g.r.IntN(4) == 0 {
			g.gen, g.chunks = g.r.IntN(2), 0
		}
		n := g.chunks
		if g.r.IntN(8) == 0 {
			n += uint32(g.r.IntN(3)) // out of order sometimes
		}
		g.chunks++
		return bfChunk("g"+strconv.Itoa(g.gen), n, rows...)
	default:
		n := g.chunks
		if g.r.IntN(5) == 0 {
			n = uint32(g.r.IntN(3))
		}
		g.chunks = 0
		return bfCommit("g"+strconv.Itoa(g.gen), n, g.r.IntN(6) == 0, 0)
	}
}

// bfLog is a log of locations, a channel, counts, holds and backfill
// commands (bfGen) over items b0..b29.
func bfLog(seed uint64, n int) []*logv1.Entry {
	r := rand.New(rand.NewPCG(seed, 0xbf0))
	g := &bfGen{r: rand.New(rand.NewPCG(seed, 0xbf))}
	var setup []*logv1.Command
	for _, l := range genLocations {
		setup = append(setup, loc(l))
	}
	setup = append(setup, channel("c0", 0, genLocations...))
	log := []*logv1.Entry{entry(t0, setup...)}
	clock := t0
	for i := range n {
		clock += int64(r.IntN(2000)) * int64(time.Millisecond)
		var cmd *logv1.Command
		switch k := r.IntN(10); {
		case k < 6:
			cmd = g.command()
		case k < 8:
			cmd = setStock(row("b"+strconv.Itoa(r.IntN(30)), genLocations[r.IntN(len(genLocations))], int64(r.IntN(40)), uint64(r.IntN(9))))
		default:
			cmd = reserve("c0", "r"+strconv.Itoa(i), 30*time.Second, line("b"+strconv.Itoa(r.IntN(30)), 1+int64(r.IntN(5))))
		}
		log = append(log, entry(clock, cmd))
	}
	return log
}

func TestBackfillDeterministicAndSnapshotAnywhere(t *testing.T) {
	log := bfLog(3, 1500)
	full := store.New(genConfig)
	want := applyLog(full, log, 0)
	seen := map[string]int{}
	for _, e := range want {
		for _, r := range e {
			seen[sentinelName(r.Err)]++
			if r.Count > 0 {
				seen["pruned"]++
			}
			if len(r.Rows) > 0 && r.Err == nil {
				seen["rows"]++
			}
		}
	}
	if seen["pruned"] == 0 || seen["invalid argument"] == 0 || seen["rows"] == 0 {
		t.Fatalf("input bfLog(3): got outcomes %v, want prunes, refusals and row answers", seen)
	}
	other := store.New(genConfig)
	applyLog(other, log, 0)
	sameRecords(t, "two machines, one backfill log", other, full)
	for cut := 1; cut < len(log); cut += len(log) / 9 {
		prefix := store.New(genConfig)
		applyLog(prefix, log[:cut], 0)
		tail, err := restored(prefix, genConfig)
		if err != nil {
			t.Fatalf("input snapshot at entry %d: got restore error %v, want ok", cut, err)
		}
		got := applyLog(tail, log, cut)
		for i := range got {
			if !reflect.DeepEqual(got[i], want[cut+i]) {
				t.Fatalf("input snapshot at %d, entry %d: got %+v, want %+v", cut, cut+i, got[i], want[cut+i])
			}
		}
		sameRecords(t, fmt.Sprintf("snapshot at %d plus tail", cut), tail, full)
	}
}

func TestBackfillCommitAnswersWithABoundedSummary(t *testing.T) {
	b := newBFMachine(t)
	var rows []*logv1.StockCount
	for i := range 250 {
		rows = append(rows, row("n"+strconv.Itoa(i), "nowhere", 1, 1), row("k"+strconv.Itoa(i), "l0", 1, 1))
	}
	b.mustApply(bfChunk("g1", 0, rows...))
	sum := bfSummary(t, b.mustApply(bfCommit("g1", 1, false, 0)))
	if sum.Applied != 250 || sum.Rejected != 250 || len(sum.RejectedRows) != store.MaxBackfillRejected {
		t.Fatalf("250 unknown-location rows among 500: got %d applied, %d rejected, %d named; want 250, 250, %d",
			sum.Applied, sum.Rejected, len(sum.RejectedRows), store.MaxBackfillRejected)
	}
	for k, r := range sum.RejectedRows {
		if r.Row != uint64(2*k) || !strings.HasPrefix(r.Reason, "rows["+strconv.Itoa(2*k)+"].location") {
			t.Fatalf("rejected row %d: got %+v, want row %d naming rows[%d].location", k, r, 2*k, 2*k)
		}
	}
	// The same generation again: every known row is stale now.
	b.mustApply(bfChunk("g2", 0, rows...))
	sum = bfSummary(t, b.mustApply(bfCommit("g2", 1, false, 0)))
	if sum.Applied != 0 || sum.IgnoredStale != 250 || sum.Rejected != 250 {
		t.Errorf("the generation resent: got %+v, want 250 stale, 250 rejected", sum)
	}
}

// A staging is written in records of MaxRows rows whatever its chunks were,
// so a restored staging (kept by record) writes the same stream again.
func TestBackfillStagingRecordsIgnoreChunkBoundaries(t *testing.T) {
	b := newBFMachine(t)
	sizes := []int{3, store.MaxRows, 5}
	k := 0
	for n, size := range sizes {
		var rows []*logv1.StockCount
		for range size {
			rows = append(rows, row("s"+strconv.Itoa(k), "l"+strconv.Itoa(k%2), int64(k), 1))
			k++
		}
		b.mustApply(bfChunk("g1", uint32(n), rows...))
	}
	r, err := restored(b.m, store.Config{})
	if err != nil {
		t.Fatalf("restore with chunks of %v rows: %v", sizes, err)
	}
	r2, err := restored(r, store.Config{})
	if err != nil {
		t.Fatalf("restore of the restored machine: %v", err)
	}
	if d, d1, d2 := digest(b.m), digest(r), digest(r2); d1 != d || d2 != d {
		t.Fatalf("digests with chunks of %v rows: got %s after one restore, %s after two, want %s", sizes, d1, d2, d)
	}
	rb := &bfMachine{t: t, m: r2, idx: b.idx}
	want := bfSummary(t, b.mustApply(bfCommit("g1", uint32(len(sizes)), false, 0)))
	got := bfSummary(t, rb.mustApply(bfCommit("g1", uint32(len(sizes)), false, 0)))
	if !reflect.DeepEqual(got, want) || got.Applied != uint64(k) {
		t.Errorf("commit on the restored machine: got %+v, want %+v with %d applied", got, want, k)
	}
	if g, w := digest(r2), digest(b.m); g != w {
		t.Errorf("digest after commit: got %s, want %s", g, w)
	}
}

// A commit creates the counters of items it names for the first time in one
// go (createNewItems); the outcome must be the rows applied one by one, as
// SetStock applies them, whatever the order of the rows.
func TestBackfillNewItemsEndAsSetStock(t *testing.T) {
	var rows []*logv1.StockCount
	for _, l := range []string{"l1", "l0"} { // location by location: an item's rows are apart
		for i := range 5 {
			rows = append(rows, row("n"+strconv.Itoa(i), l, int64(10*i+len(l)), 2))
		}
	}
	rows = append(rows,
		row("n1", "l0", 99, 1), // older than the row before: stale
		row("n2", "l1", 50, 3), // newer: applied over it
		row("n3", "zz", 1, 1),  // unknown location: rejected, no counter
		row("n9", "l0", 7, 0),  // version 0: rejected, n9 never exists
		row("n8", "l1", 4, 1),  // an item with one counter
		row("i1", "l0", 55, 2), // an item that exists
		row("n8", "l1", 5, 1),  // equal version, other count: rejected
		row("", "l0", 1, 1),    // no item: rejected
		row("n7", "l0", -3, 1), // a negative count is kept
	)
	bf, ref := newBFMachine(t), newBFMachine(t)
	bf.mustApply(bfChunk("g", 0, rows...))
	sum := bfSummary(t, bf.mustApply(bfCommit("g", 1, false, 0)))
	set := ref.mustApply(setStock(rows...))
	var want store.BackfillSummary
	for i, r := range set.Rows {
		switch r.Status {
		case store.RowApplied:
			want.Applied++
		case store.RowIgnoredStale:
			want.IgnoredStale++
		case store.RowRejected:
			want.Rejected++
			want.RejectedRows = append(want.RejectedRows, store.BackfillRejectedRow{Row: uint64(i), Reason: r.Reason})
		}
	}
	if !reflect.DeepEqual(sum, want) {
		t.Errorf("commit summary: got %+v, want %+v as SetStock of the same rows", sum, want)
	}
	for _, item := range []string{"n0", "n1", "n2", "n3", "n4", "n7", "n8", "n9", "i1", "i2"} {
		var got, want store.SKUAvailability
		if err := bf.m.Availability("c0", store.SKU(item), &got); err != nil {
			t.Fatalf("availability %s after backfill: %v", item, err)
		}
		if err := ref.m.Availability("c0", store.SKU(item), &want); err != nil {
			t.Fatalf("availability %s after SetStock: %v", item, err)
		}
		got.ModRevision, want.ModRevision = 0, 0
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s after backfill: got %+v, want %+v as after SetStock", item, got, want)
		}
	}
}
