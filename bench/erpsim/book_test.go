package main

import (
	"math/rand/v2"
	"testing"
)

func order(seq uint64, lines ...lineView) entryView {
	return entryView{seq: seq, kind: kindOrder, channel: "web", orderRef: "o", lines: lines}
}

func line(item, loc string, units int64) lineView {
	return lineView{item: item, location: loc, units: units}
}

func TestERPSimBookMark(t *testing.T) {
	t.Run("the mark waits for every seq up to it, whatever order outcomes come in", func(t *testing.T) {
		b := NewBook([]string{"ams"}, 3)
		for _, seq := range []uint64{4, 5, 6, 7} {
			b.Deliver(order(seq))
		}
		steps := []struct {
			acked    uint64
			wantMark uint64
		}{{5, 3}, {7, 3}, {4, 5}, {6, 7}}
		for _, s := range steps {
			b.Acked(s.acked)
			if got := b.Mark(); got != s.wantMark {
				t.Fatalf("Acked(%d): got mark %d, want %d", s.acked, got, s.wantMark)
			}
		}
		if got := b.Totals.OutOfOrderOutcomes; got != 2 {
			t.Errorf("out-of-order outcomes after acks 5, 7, 4, 6: got %d, want 2", got)
		}
	})
	t.Run("a delivery seen before, or at or below the floor, is a duplicate", func(t *testing.T) {
		b := NewBook([]string{"ams"}, 3)
		for _, seq := range []uint64{2, 4, 4} {
			b.Deliver(order(seq))
		}
		if b.Totals.EntriesSeen != 1 || b.Totals.Duplicates != 2 || b.Delivered() != 4 {
			t.Errorf("deliveries 2, 4, 4 over floor 3: got seen %d duplicates %d delivered %d, want 1 2 4",
				b.Totals.EntriesSeen, b.Totals.Duplicates, b.Delivered())
		}
	})
}

func TestERPSimBookDecide(t *testing.T) {
	never := Policy{Rand: rand.New(rand.NewPCG(1, 2))}
	always := Policy{OtherLocationRate: 1, Rand: rand.New(rand.NewPCG(1, 2))}
	newBook := func() *Book {
		b := NewBook([]string{"ams", "fra"}, 0)
		b.AddCounter("rose", "ams", 5)
		b.AddCounter("rose", "fra", 10)
		return b
	}
	t.Run("a booking takes the units where stockd allocated them", func(t *testing.T) {
		b := newBook()
		b.Deliver(order(1, line("rose", "ams", 3)))
		if d := b.DecideOrder(1, never); !d.Booked {
			t.Fatalf("DecideOrder(3 rose@ams of 5): got %+v, want booked", d)
		}
		if got := b.Counter(counterKey{"rose", "ams"}).onHand; got != 2 {
			t.Errorf("rose@ams after booking 3 of 5: got %d, want 2", got)
		}
	})
	t.Run("a moved line takes from another location and counts as a take there", func(t *testing.T) {
		b := newBook()
		b.Deliver(order(1, line("rose", "ams", 3)))
		if d := b.DecideOrder(1, always); !d.Booked {
			t.Fatalf("DecideOrder(3 rose@ams, always moved): got %+v, want booked", d)
		}
		ams, fra := b.Counter(counterKey{"rose", "ams"}), b.Counter(counterKey{"rose", "fra"})
		if ams.onHand != 5 || fra.onHand != 7 || fra.takes != 3 || b.Totals.LinesMoved != 1 {
			t.Errorf("after a line moved to fra: got ams %d fra %d takes %d moved %d, want 5 7 3 1", ams.onHand, fra.onHand, fra.takes, b.Totals.LinesMoved)
		}
	})
	t.Run("an order short where stockd allocated it is refused and names the counter", func(t *testing.T) {
		b := newBook()
		b.Deliver(order(1, line("rose", "ams", 6)))
		d := b.DecideOrder(1, never)
		if d.Booked || d.Short == nil || d.Short.key != (counterKey{"rose", "ams"}) {
			t.Errorf("DecideOrder(6 rose@ams of 5): got %+v, want refused, short at rose@ams", d)
		}
	})
	t.Run("a cancellation seen before the booking refuses the order", func(t *testing.T) {
		b := newBook()
		b.Deliver(order(1, line("rose", "ams", 3)))
		b.Deliver(entryView{seq: 2, kind: kindCancellation, cancelsSeq: 1, lines: []lineView{line("rose", "ams", 3)}})
		ds := b.DecideCancellation(2, never)
		if len(ds) != 2 || ds[0].Seq != 1 || ds[0].Booked || !ds[1].Done {
			t.Fatalf("DecideCancellation(2) of undecided order 1: got %+v, want 1 refused then 2 done", ds)
		}
		if got := b.Counter(counterKey{"rose", "ams"}).onHand; got != 5 {
			t.Errorf("rose@ams: got %d, want 5 (nothing booked)", got)
		}
	})
	t.Run("a cancellation after the booking gives the units back where they were taken", func(t *testing.T) {
		b := newBook()
		b.Deliver(order(1, line("rose", "ams", 3)))
		b.DecideOrder(1, always)
		b.Deliver(entryView{seq: 2, kind: kindCancellation, cancelsSeq: 1, lines: []lineView{line("rose", "ams", 3)}})
		b.DecideCancellation(2, never)
		ams, fra := b.Counter(counterKey{"rose", "ams"}), b.Counter(counterKey{"rose", "fra"})
		if ams.onHand != 5 || fra.onHand != 10 {
			t.Errorf("after booking 3 from fra and cancelling: got ams %d fra %d, want 5 10", ams.onHand, fra.onHand)
		}
		if err := b.Balance(); err != nil {
			t.Error(err)
		}
		if out := b.Out(1); out.Totals.NetBookedUnits != 0 {
			t.Errorf("net booked units after a booking and its cancellation: got %d, want 0", out.Totals.NetBookedUnits)
		}
	})
}
