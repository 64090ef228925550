package store_test

import (
	"slices"

	"pgregory.net/rapid"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// The outbox in the reference model (DESIGN.md "Orders flowing back"): every
// Confirm appends an order entry and every CancelOrder of an order not yet
// refused a cancellation entry, each with the next sequence. AckOrders gives
// an entry its outcome: BOOKED or REFUSED for an order (a refusal frees its
// committed units at once and gives back what waits on incoming lines), DONE
// for a cancellation. The same outcome again is stale; another outcome, an
// unknown seq or the refusal of an absorbed order is rejected. An entry is
// finished once nothing can change it any more; finished entries leave the
// front of the outbox once they are a retry window old.

// mentry is one outbox entry: an order (order set) or the cancellation of one
// (cancels set).
type mentry struct {
	seq     uint64
	order   *morder
	cancels *morder
	created int64
	outcome store.OrderOutcome
}

// appendEntry adds the next outbox entry; Confirm and CancelOrder call it.
func (md *model) appendEntry(e *mentry) {
	e.seq, e.created = md.nextSeq, md.now
	md.nextSeq++
	md.outbox = append(md.outbox, e)
}

// entryOf is the order entry of o, or nil once trimmed.
func (md *model) entryOf(o *morder) *mentry {
	for _, e := range md.outbox {
		if e.order == o {
			return e
		}
	}
	return nil
}

// finished: the entry has an outcome and, for an order, either it was
// refused, or the mark passed it with nothing left waiting on incoming
// supply, or it was cancelled and the cancellation is done.
func (md *model) finished(e *mentry) bool {
	switch {
	case e.outcome == 0:
		return false
	case e.cancels != nil || e.outcome == store.OutcomeRefused:
		return true
	case e.order.absorbed:
		return !slices.ContainsFunc(e.order.lines, func(l morderLine) bool { return l.po != "" })
	case !e.order.cancelled:
		return false
	}
	for _, c := range md.outbox {
		if c.cancels == e.order {
			return c.outcome == store.OutcomeDone
		}
	}
	return true // cancelled after a refusal: no cancellation entry
}

// trimOutbox drops finished entries a retry window old from the front.
func (md *model) trimOutbox() {
	n := 0
	for n < len(md.outbox) && md.finished(md.outbox[n]) && md.now-md.outbox[n].created >= md.window {
		n++
	}
	md.outbox = md.outbox[n:]
}

// ackOrders answers each ack on its own.
func (md *model) ackOrders(c *logv1.AckOrders) []store.RowResult {
	out := make([]store.RowResult, len(c.GetAcks()))
	for i, a := range c.GetAcks() {
		out[i] = md.ack(a.GetSeq(), store.OrderOutcome(a.GetOutcome()))
	}
	return out
}

func (md *model) ack(seq uint64, outcome store.OrderOutcome) store.RowResult {
	rejected := store.RowResult{Status: store.RowRejected}
	i := slices.IndexFunc(md.outbox, func(e *mentry) bool { return e.seq == seq })
	if i < 0 {
		if seq > 0 && seq < md.nextSeq {
			md.note("ack of a trimmed entry")
		}
		return rejected // never issued, or finished and trimmed
	}
	e := md.outbox[i]
	switch {
	case e.order != nil && outcome == store.OutcomeDone, e.cancels != nil && outcome != store.OutcomeDone:
		return rejected
	case e.outcome == outcome:
		return store.RowResult{Status: store.RowIgnoredStale}
	case e.outcome != 0:
		return rejected
	case outcome == store.OutcomeRefused && e.order.absorbed:
		return rejected
	}
	if outcome == store.OutcomeRefused && !e.order.cancelled {
		o := e.order
		for _, l := range o.lines {
			if l.po != "" {
				md.incoming[l.po].backordered -= l.qty
				md.note("refused order gave back waiting units")
				continue
			}
			md.counters[mkey{l.item, l.loc}].committed -= l.qty
			md.touch(mkey{l.item, l.loc})
		}
		o.lines = slices.DeleteFunc(o.lines, func(l morderLine) bool { return l.po != "" })
		md.note("order refused")
	}
	if outcome == store.OutcomeRefused {
		e.order.refused = true
	}
	e.outcome = outcome
	return store.RowResult{Status: store.RowApplied}
}

// outboxActions acknowledge outbox entries, mostly pending ones, and check
// the pending list and the backlog against the model.
func (p *propRun) outboxActions() map[string]func(*rapid.T) {
	return map[string]func(*rapid.T){
		"ackOrders": func(t *rapid.T) {
			var pending []uint64
			for _, e := range p.md.outbox {
				if e.outcome == 0 {
					pending = append(pending, e.seq)
				}
			}
			n := rapid.IntRange(1, 3).Draw(t, "acks")
			acks := make([]*logv1.OrderAck, n)
			for i := range acks {
				var seq uint64
				if len(pending) > 0 && rapid.IntRange(0, 3).Draw(t, "pick_pending") > 0 {
					seq = rapid.SampledFrom(pending).Draw(t, "seq")
				} else {
					seq = rapid.Uint64Range(0, p.md.nextSeq).Draw(t, "any_seq")
				}
				outcome := rapid.SampledFrom([]store.OrderOutcome{store.OutcomeBooked, store.OutcomeBooked,
					store.OutcomeRefused, store.OutcomeDone}).Draw(t, "outcome")
				acks[i] = &logv1.OrderAck{Seq: seq, Outcome: uint32(outcome), Reason: "r"}
			}
			cmd := &logv1.Command{Kind: &logv1.Command_AckOrders{AckOrders: &logv1.AckOrders{Acks: acks}}}
			res := p.apply(t, p.stamp(t), cmd)
			expectAnswer(t, cmd, res.Err, nil, "")
			expectRows(t, cmd, res.Rows, p.md.ackOrders(cmd.GetAckOrders()))
			p.checkOutbox(t)
		},
	}
}

// checkOutbox compares the pending entries (in seq order, with their kind,
// after a random seq) and the backlog figures with the model.
func (p *propRun) checkOutbox(t *rapid.T) {
	after := rapid.Uint64Range(0, p.md.nextSeq).Draw(t, "after_seq")
	var want []uint64
	var oldest *mentry
	for _, e := range p.md.outbox {
		if e.outcome != 0 {
			continue
		}
		if oldest == nil {
			oldest = e
		}
		if e.seq > after {
			want = append(want, e.seq)
		}
	}
	got := p.m.Outbox(after, 1000)
	if len(got) != len(want) {
		t.Fatalf("outbox after %d: got %d pending entries %v, want seqs %v", after, len(got), got, want)
	}
	for i, g := range got {
		e := p.md.outbox[slices.IndexFunc(p.md.outbox, func(e *mentry) bool { return e.seq == want[i] })]
		kind := store.OutboxOrder
		if e.cancels != nil {
			kind = store.OutboxCancellation
		}
		if g.Seq != want[i] || g.Kind != kind || int64(g.CreatedAt) != e.created {
			t.Fatalf("outbox after %d: entry %d is %+v, want seq %d kind %v created %d", after, i, g, want[i], kind, e.created)
		}
	}
	st := p.m.OutboxStatus()
	wantSt := store.OutboxStatus{NextSeq: p.md.nextSeq, AbsorbedMark: p.md.mark}
	for _, e := range p.md.outbox {
		if e.outcome == 0 {
			wantSt.Pending++
		}
	}
	if oldest != nil {
		wantSt.OldestPendingSeq, wantSt.OldestPendingCreatedAt = oldest.seq, store.Timestamp(oldest.created)
	}
	if st != wantSt {
		t.Fatalf("outbox status: got %+v, want %+v", st, wantSt)
	}
}
