package store_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// FuzzApplySequence reads its input as a sequence of commands over a small
// universe (three declared locations at most, four channels, two items sold
// as themselves and in packs, four reservation ids), so ids, counters and
// orders collide within a few steps, and applies them one per entry to a
// fresh machine. Leader time jitters and sometimes jumps back; tick steps
// move it on so holds expire and answers are pruned. After every step it
// checks what the state alone can tell:
//   - I1: no counter's reserved or committed is negative, every figure a
//     channel reads is >= 0 and its oversold exposure is exactly promised
//     beyond on_hand; a hold just admitted left promised <= on_hand - buffer
//     at each counter it took units from.
//   - I3: a command carrying a request id, applied again at once, answers
//     the same and moves nothing (of an ERP adjustment, the rows not
//     rejected: a rejected row's delta id is not remembered, so its retry
//     is a new row); a Reserve retried later, within the retry
//     window of its key's first use, answers as it first did (a refusal
//     stays a refusal) and moves nothing either.
//   - I4: a twin machine fed the same entries answers the same and has the
//     same digest, though it is now and then replaced by a restore of its own
//     snapshot (snapshot at i plus the tail); the machine's snapshot restores
//     (Restore checks reserved against live holds and committed against
//     unabsorbed orders) to the same digest.
//
// Bytes past the end read as 0, so every input is a valid sequence; the
// model-based property test (property_test.go) checks the answers
// themselves, this target checks that no sequence breaks the invariants.
func FuzzApplySequence(f *testing.F) {
	for _, s := range applySeqSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newSeqRun(t, data)
		for step := 0; step < seqMaxSteps && r.in.more(); step++ {
			r.step()
		}
	})
}

var (
	seqLocations = []string{"", "", "a", "b", "c", "zz"} // c is declared by a config step only, zz never
	seqChannels  = []string{"web", "web", "rep", "mkt", "ghost"}
	seqItems     = []string{"x", "y"}
	seqSKUs      = []string{"x", "x", "y", "x-6", "y-2", "z"} // x-6 and y-2 are packs; z is mapped by a config step only
	seqIDs       = []string{"r0", "r1", "r2", "r3"}
	seqTTLs      = []time.Duration{0, time.Second, 10 * time.Second, time.Minute, 5 * time.Minute, 500 * time.Millisecond}
)

// seqConfig prunes answers after 10 minutes of log time, which a few ticks
// pass, and never by count within a run (FuzzDecodeEntry covers the cap).
var seqConfig = store.Config{RetryWindowNanos: int64(10 * time.Minute), MaxRecords: 1 << 20}

// seqMaxSteps bounds one input's run, so every input stays fast.
const seqMaxSteps = 160

// seqBytes reads a fuzz input a byte at a time; past the end it reads 0.
type seqBytes struct{ b []byte }

func (in *seqBytes) more() bool { return len(in.b) > 0 }

func (in *seqBytes) next() byte {
	if len(in.b) == 0 {
		return 0
	}
	c := in.b[0]
	in.b = in.b[1:]
	return c
}

func (in *seqBytes) n(k int) int             { return int(in.next()) % k }
func (in *seqBytes) pick(s []string) string  { return s[in.n(len(s))] }
func (in *seqBytes) span(lo, hi int64) int64 { return lo + int64(in.next())%(hi-lo+1) }

// chance is true for one byte value in oneIn: never for 0, so bytes past the end add nothing.
func (in *seqBytes) chance(oneIn int) bool          { return in.n(oneIn) == oneIn-1 }
func (in *seqBytes) ttl() time.Duration             { return seqTTLs[in.n(len(seqTTLs))] }
func (in *seqBytes) id(prefix string, k int) string { return prefix + string(rune('0'+in.n(k))) }

type seqRun struct {
	t        *testing.T
	in       seqBytes
	m, twin  *store.Machine
	index    store.Revision
	clock    int64
	firstUse map[[2]string]store.Timestamp // log time a Reserve first named (channel, id)
	reserves []seqReserve                  // Reserves applied, for late retries
	log      []string                      // the steps so far, for failure messages
}

type seqReserve struct {
	cmd *logv1.Command
	res store.Result
}

func newSeqRun(t *testing.T, data []byte) *seqRun {
	r := &seqRun{t: t, in: seqBytes{data}, m: store.New(seqConfig), twin: store.New(seqConfig), clock: t0,
		firstUse: map[[2]string]store.Timestamp{}}
	setup := []*logv1.Command{
		loc("a"), loc("b"),
		channel("web", 0, "a", "b"), channel("rep", 1, "b", "a"), strict(channel("mkt", 0, "b")),
		putSku("x-6", "x", 6), putSku("y-2", "y", 2),
		setStock(row("x", "a", 20, 1), row("x", "b", 8, 1), row("y", "a", 5, 1), row("y", "b", 1, 1)),
		setIncomingCmd(incLine("po1", "y", "b", 10, 0, time.Hour, 1)),
	}
	for _, c := range setup {
		if res := r.apply(t0, c); res.Err != nil {
			t.Fatalf("setup %v: got %v, want ok", c, res.Err)
		}
	}
	return r
}

// step reads one command, applies it and checks the invariants.
func (r *seqRun) step() {
	in := &r.in
	var cmd *logv1.Command
	retry := false
	switch op := in.n(16); op {
	case 0:
		var rows []*logv1.StockCount
		for range 1 + in.n(2) {
			rows = append(rows, row(in.pick(seqItems), in.pick(seqLocations[2:]), in.span(-4, 40), uint64(in.span(0, 8))))
		}
		var mark uint64
		if in.chance(2) {
			mark = uint64(in.span(0, 6))
		}
		cmd = setStockMark(mark, rows...)
	case 1:
		var rows []*logv1.StockAdjustment
		for range 1 + in.n(2) {
			rows = append(rows, delta(in.id("d", 3), in.pick(seqItems), in.pick(seqLocations[2:]), in.span(-8, 8), uint64(in.n(3))*uint64(in.span(1, 9))))
		}
		cmd, retry = adjust(rows...), true
	case 2, 3, 4:
		var lines []*logv1.ReserveLine
		for range 1 + in.n(3) {
			l := lineAt(in.pick(seqSKUs), in.span(0, 8), in.pick(seqLocations))
			l.AllowBackorder = in.chance(6)
			if in.chance(8) {
				l.ExpectedModRevision = uint64(r.index) - uint64(in.n(3))
			}
			lines = append(lines, l)
		}
		cmd, retry = reserve(in.pick(seqChannels), in.pick(seqIDs), in.ttl(), lines...), true
	case 5:
		cmd, retry = confirm(in.pick(seqChannels), in.pick(seqIDs), in.id("o", 2)), true
	case 6:
		cmd, retry = release(in.pick(seqChannels), in.pick(seqIDs)), true
	case 7:
		cmd, retry = releasePart(in.pick(seqChannels), in.pick(seqIDs), in.id("p", 3), give(uint32(in.n(3)), in.span(1, 3))), true
	case 8:
		cmd, retry = extendCmd(in.pick(seqChannels), in.pick(seqIDs), in.id("e", 3), in.ttl()), true
	case 9:
		// Leader time moves on by up to about 17 minutes, or a new leader
		// starts behind by up to a minute.
		if in.chance(8) {
			r.clock -= in.span(0, 60) * int64(time.Second)
		} else {
			r.clock += in.span(0, 255) * 4 * int64(time.Second)
		}
		cmd = tickCmd()
	case 10:
		cmd = r.configCommand()
	case 11:
		cmd, retry = cancelOrder(in.pick(seqChannels), in.pick(seqIDs)), true
	case 12:
		cmd, retry = releaseAll(in.pick(seqChannels), in.id("all", 2)), true
	case 13:
		var acks []*logv1.OrderAck
		for range 1 + in.n(2) {
			acks = append(acks, &logv1.OrderAck{Seq: uint64(in.span(1, 6)), Outcome: uint32(in.span(1, 3)), Reason: "fuzz"})
		}
		cmd = ackCmd(acks...)
	case 14:
		cmd = setIncomingCmd(incLine("po1", "y", "b", in.span(0, 12), in.span(0, 12), time.Duration(in.span(0, 4))*time.Hour, uint64(in.span(1, 6))))
	case 15:
		r.lateRetry()
		return
	}
	r.clock += in.span(0, 3) * int64(time.Second)
	ts := r.clock - in.span(0, 2)*int64(time.Second)
	if in.chance(8) {
		r.restoreTwin()
	}
	res := r.applyChecked(ts, cmd)
	if retry && in.chance(3) {
		r.retryAtOnce(ts, cmd, res)
	}
}

// configCommand changes what a figure depends on: pack factors and
// mappings, channel locations and buffers, buffer rules, a third location.
func (r *seqRun) configCommand() *logv1.Command {
	in := &r.in
	switch in.n(7) {
	case 0:
		return putSku("x-6", "x", in.span(1, 12))
	case 1:
		return putSku("z", in.pick(seqItems), in.span(1, 3))
	case 2:
		return deleteSku(in.pick([]string{"z", "y-2"}))
	case 3:
		locs := [][]string{{"a", "b"}, {"b"}, {"c", "a"}, {"a", "c", "b"}}[in.n(4)]
		return channel(in.pick([]string{"web", "rep"}), in.span(0, 3), locs...)
	case 4:
		return buffer(in.pick(seqItems), in.pick([]string{"", "web", "rep", "mkt"}), in.pick([]string{"", "a", "b"}), in.span(0, 4))
	case 5:
		return loc("c")
	default:
		return strict(channel("mkt", in.span(0, 2), in.pick([]string{"b", "a", "c"})))
	}
}

// apply applies cmd to the machine and its twin at the next index.
func (r *seqRun) apply(ts int64, cmd *logv1.Command) store.Result {
	r.index++
	res := r.m.Apply(r.index, store.Timestamp(ts), cmd)
	tw := r.twin.Apply(r.index, store.Timestamp(ts), cmd)
	r.log = append(r.log, fmt.Sprintf("%d@%d %v -> %s", r.index, ts-t0, cmd, seqAnswer(res)))
	if res.Revision != r.index {
		r.fatalf("input %v: got revision %d, want %d", cmd, res.Revision, r.index)
	}
	if seqAnswer(res) != seqAnswer(tw) {
		r.fatalf("input %v (I4): got %s on the twin, want %s", cmd, seqAnswer(tw), seqAnswer(res))
	}
	if res.Err != nil && strings.HasPrefix(sentinelName(res.Err), "unclassified") {
		r.fatalf("input %v: got %v, want an error that unwraps to a sentinel", cmd, res.Err)
	}
	return res
}

// applyChecked applies cmd and checks every invariant after it.
func (r *seqRun) applyChecked(ts int64, cmd *logv1.Command) store.Result {
	fresh := false
	if c := cmd.GetReserve(); c != nil {
		key := [2]string{c.GetChannel(), c.GetReservationId()}
		_, err := r.m.Reservation(store.ChannelID(key[0]), store.ReservationID(key[1]))
		fresh = errors.Is(err, store.ErrUnknownReservation)
		if _, ok := r.firstUse[key]; !ok {
			r.firstUse[key] = store.Timestamp(max(ts, int64(r.m.LastTime())))
		}
	}
	res := r.apply(ts, cmd)
	if cmd.GetReserve() != nil {
		r.reserves = append(r.reserves, seqReserve{cmd, res})
		if fresh && res.Err == nil {
			r.checkAdmission(cmd, res)
		}
	}
	r.checkState(cmd)
	return res
}

// retryAtOnce applies cmd again at the same stamp: the same answer, nothing moved (I3).
func (r *seqRun) retryAtOnce(ts int64, cmd *logv1.Command, first store.Result) {
	before := seqStateView(r.m)
	again := r.apply(ts, cmd)
	if cmd.GetAdjustStock() != nil && !seqSameRemembered(first.Rows, again.Rows) {
		r.fatalf("input %v retried at once (I3): got rows %+v, want the first answer %+v for each row not rejected",
			cmd, again.Rows, first.Rows)
	}
	if cmd.GetAdjustStock() != nil && !seqSameRows(first.Rows, again.Rows) {
		// A rejected row is not remembered (its delta id stays free), so
		// its retry is a new row: it may now apply, or be refused as
		// reusing an id a later row of the batch took.
		r.checkState(cmd)
		return
	}
	if seqAnswer(again) != seqAnswer(first) {
		r.fatalf("input %v retried at once (I3): got %s, want the first answer %s", cmd, seqAnswer(again), seqAnswer(first))
	}
	if after := seqStateView(r.m); after != before {
		r.fatalf("input %v retried at once (I3): got state\n%s\nwant it unchanged\n%s", cmd, after, before)
	}
	r.checkState(cmd)
}

// lateRetry applies an earlier Reserve again after a tick at a later stamp.
// Within the retry window of its key's first use, no answer under that key
// has been forgotten: a refusal comes back the same (a retry never turns
// into a late success) and a hold comes back as it now stands, and either
// way nothing moves (I3).
func (r *seqRun) lateRetry() {
	if len(r.reserves) == 0 {
		return
	}
	p := r.reserves[len(r.reserves)-1-r.in.n(min(len(r.reserves), 8))]
	r.clock += r.in.span(0, 255) * 2 * int64(time.Second)
	ts := r.clock
	r.applyChecked(ts, tickCmd()) // expiry and pruning at ts happen here, not in the retry
	c := p.cmd.GetReserve()
	key := [2]string{c.GetChannel(), c.GetReservationId()}
	inWindow := int64(r.m.LastTime())-int64(r.firstUse[key]) < seqConfig.RetryWindowNanos
	before := seqStateView(r.m)
	again := r.applyChecked(ts, p.cmd)
	if !inWindow {
		return
	}
	var want string
	if p.res.Err != nil {
		want = seqAnswer(store.Result{Err: p.res.Err})
	} else {
		now, err := r.m.Reservation(store.ChannelID(key[0]), store.ReservationID(key[1]))
		want = seqAnswer(store.Result{Reservation: &now, Err: err})
	}
	if got := seqAnswer(again); got != want {
		r.fatalf("input %v retried %v later (I3): got %s, want %s", p.cmd, time.Duration(int64(r.m.LastTime())-int64(r.firstUse[key])), got, want)
	}
	if after := seqStateView(r.m); after != before {
		r.fatalf("input %v retried later (I3): got state\n%s\nwant it unchanged\n%s", p.cmd, after, before)
	}
}

// seqSameRemembered reports whether every row not rejected the first time got
// the same answer again.
func seqSameRemembered(first, again []store.RowResult) bool {
	if len(first) != len(again) {
		return false
	}
	for i := range first {
		if first[i].Status != store.RowRejected && first[i] != again[i] {
			return false
		}
	}
	return true
}

func seqSameRows(a, b []store.RowResult) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

// restoreTwin replaces the twin by a restore of its own snapshot.
func (r *seqRun) restoreTwin() {
	back, err := restored(r.twin, seqConfig)
	if err != nil {
		r.fatalf("(I4) restore of the twin's snapshot at %d: got %v, want ok", r.index, err)
	}
	r.twin = back
}

// checkAdmission: a hold just admitted took on-hand units only where
// promised still fits under on_hand - buffer (I1).
func (r *seqRun) checkAdmission(cmd *logv1.Command, res store.Result) {
	if res.Reservation == nil {
		r.fatalf("input %v: got no reservation with no error", cmd)
	}
	ch := res.Reservation.Channel
	var a store.SKUAvailability
	for _, l := range res.Reservation.Lines {
		if err := r.m.Availability(ch, l.SKU, &a); err != nil {
			r.fatalf("input %v: availability of held %s/%s: got %v, want ok", cmd, ch, l.SKU, err)
		}
		for _, al := range l.Allocations {
			if al.POLine != "" {
				continue
			}
			found := false
			for _, la := range a.Locations {
				if la.Location != al.Location {
					continue
				}
				found = true
				if la.Reserved+la.Committed > max(0, la.OnHand)-la.Buffer {
					r.fatalf("input %v (I1): admitted at %s: got reserved %d + committed %d, want <= on_hand %d - buffer %d",
						cmd, al.Location, la.Reserved, la.Committed, la.OnHand, la.Buffer)
				}
			}
			if !found {
				r.fatalf("input %v (I1): got units held at %s, which channel %s does not see", cmd, al.Location, ch)
			}
		}
	}
}

// checkState checks the figures, the twin and a restore after a step.
func (r *seqRun) checkState(cmd *logv1.Command) {
	counters, _ := r.m.Counters("", "")
	for _, c := range counters {
		if c.Reserved < 0 || c.Committed < 0 || c.Oversold() < 0 {
			r.fatalf("after %v (I1): counter %s@%s: got %+v, want reserved, committed and oversold >= 0", cmd, c.Item, c.Location, c)
		}
	}
	var a store.SKUAvailability
	for _, ch := range []store.ChannelID{"web", "rep", "mkt"} {
		for _, sku := range seqSKUs[1:] {
			if err := r.m.Availability(ch, store.SKU(sku), &a); err != nil {
				continue // unknown SKU or channel: nothing to promise
			}
			var sum store.Units
			for _, la := range a.Locations {
				exposure := max(0, la.Reserved+la.Committed-max(0, la.OnHand))
				if la.Available < 0 || la.Oversold != exposure {
					r.fatalf("after %v (I1): %s/%s at %s: got %+v, want available >= 0 and oversold %d", cmd, ch, sku, la.Location, la, exposure)
				}
				sum += la.Available
			}
			if a.Available < 0 || a.Available != sum {
				r.fatalf("after %v (I1): %s/%s: got available %d, want the sum over locations %d", cmd, ch, sku, a.Available, sum)
			}
		}
	}
	want := digest(r.m)
	if got := digest(r.twin); got != want {
		r.fatalf("after %v (I4): got twin digest %s, want %s", cmd, got, want)
	}
	back, err := restored(r.m, seqConfig)
	if err != nil {
		r.fatalf("after %v (I4): restore of the snapshot: got %v, want ok", cmd, err)
	}
	if got := digest(back); got != want {
		r.fatalf("after %v (I4): restored digest %s, want %s", cmd, got, want)
	}
}

func (r *seqRun) fatalf(format string, args ...any) {
	r.t.Helper()
	r.t.Fatalf(format+"\nsteps:\n%s", append(args, strings.Join(r.log, "\n"))...)
}

// seqAnswer renders a result without its revision, which a retry changes.
func seqAnswer(res store.Result) string {
	res.Revision = 0
	return fmt.Sprintf("%s count %d", describe(res), res.Count)
}

// seqStateView renders what commands move: counters, every reservation of the
// universe, the outbox and incoming lines. Answers kept for retries, log time
// and the dead-letter list are left out.
func seqStateView(m *store.Machine) string {
	var b strings.Builder
	counters, _ := m.Counters("", "")
	for _, c := range counters {
		fmt.Fprintf(&b, "counter %+v\n", c)
	}
	for _, ch := range seqChannels[1:] {
		for _, id := range seqIDs {
			if res, err := m.Reservation(store.ChannelID(ch), store.ReservationID(id)); err == nil {
				fmt.Fprintf(&b, "reservation %+v\n", res)
			}
		}
	}
	for _, e := range m.Outbox(0, 1000) {
		fmt.Fprintf(&b, "outbox %+v\n", e)
	}
	fmt.Fprintf(&b, "outbox status %+v\n", m.OutboxStatus())
	for _, item := range seqItems {
		fmt.Fprintf(&b, "incoming %+v\n", m.Incoming(store.ItemID(item)))
	}
	return b.String()
}

// applySeqSeeds are hand-written sequences, one byte per choice in the order
// step reads them: the op, its fields, then the stamp's advance and jitter,
// whether the twin is restored first and, for commands with a request id,
// whether it is retried at once (the last byte of each line).
func applySeqSeeds() [][]byte {
	return [][]byte{
		{ // A hold of x and a pack of x-6, retried at once; confirmed, retried; the absorbed mark passes it.
			2, 1, 0, 3, 0, 0, 0, 3, 1, 2, 0, 0, 0, 0, 3, 1, 0, 0, 2,
			5, 0, 0, 0, 1, 0, 0, 2,
			0, 0, 0, 0, 18, 2, 1, 1, 1, 0, 0,
		},
		{ // A 10 s hold of y-2 on rep expires on a tick; retried later it answers as expired; out of the window it is new.
			2, 0, 4, 2, 0, 0, 0, 2, 1, 2, 0, 0, 0, 0,
			9, 0, 75, 0, 0, 0,
			15, 0, 10,
			9, 0, 255, 0, 0, 0,
			15, 0, 0,
		},
		{ // Location c declared, web moved to (c, a) with buffer 1, x counted at c and held there; x-6 becomes a pack of 4.
			10, 5, 0, 0, 0,
			10, 3, 2, 0, 1, 0, 0, 0,
			0, 0, 0, 2, 14, 1, 0, 0, 0, 0,
			2, 0, 0, 4, 4, 0, 0, 0, 2, 0, 0, 0, 0, 2,
			10, 0, 3, 0, 0, 0,
			2, 0, 3, 1, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0,
		},
		{ // The ERP lowers on_hand below a hold (oversold exposure); partial release, extend and an adjustment, each retried.
			2, 0, 0, 8, 2, 0, 0, 0, 0, 3, 0, 0, 0, 0,
			0, 0, 0, 0, 6, 2, 0, 0, 0, 0,
			7, 0, 0, 0, 0, 2, 0, 0, 0, 2,
			8, 0, 0, 1, 4, 0, 0, 0, 2,
			1, 0, 1, 0, 0, 13, 0, 0, 0, 0, 0, 2,
		},
		{ // A cart short of y backorders on po1; the PO line changes; confirmed, cancelled, acks booked and done.
			2, 0, 2, 8, 0, 5, 0, 0, 1, 3, 0, 0, 0, 0,
			14, 10, 4, 1, 1, 0, 0, 0,
			5, 0, 1, 1, 0, 0, 0, 0,
			11, 0, 1, 0, 0, 0, 2,
			13, 0, 0, 0, 0, 0, 0,
			13, 0, 1, 2, 0, 0, 0,
		},
		{ // Two holds on rep released at once by ReleaseAll, retried; a new leader starts 30 s behind; hold and release on web.
			2, 0, 0, 2, 0, 0, 0, 2, 2, 0, 0, 0, 0, 0,
			2, 0, 2, 1, 3, 0, 0, 2, 3, 0, 0, 0, 0, 0,
			12, 2, 1, 0, 0, 0, 2,
			9, 7, 30, 0, 0, 0,
			2, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
			6, 0, 0, 0, 0, 0, 2,
		},
	}
}
