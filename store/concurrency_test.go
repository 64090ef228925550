package store_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stockd/stockd/store"
)

// TestI5ReadsDuringApply runs readers on other goroutines while one goroutine
// applies a generated log (run it with -race). Every figure a reader sees is
// non-negative (I1), and the applied index a reader sees never goes back (I5).
func TestI5ReadsDuringApply(t *testing.T) {
	log := genLog(21, 3000)
	m := store.New(genConfig)
	m.ApplyEntry(1, log[0])
	done := make(chan struct{})
	errs := make(chan error, 2)
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Go(func() {
			var a store.SKUAvailability
			last := store.Revision(0)
			for n := 0; ; n++ {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				rev := m.AppliedIndex()
				if rev < last {
					errs <- fmt.Errorf("reader %d (I5): got applied index %d after %d, want it never to decrease", r, rev, last)
					return
				}
				last = rev
				ch := store.ChannelID(genChannels[n%len(genChannels)])
				if err := m.Availability(ch, store.SKU(fmt.Sprintf("i%d", n%50)), &a); err != nil {
					errs <- fmt.Errorf("reader %d: availability %s: got %v, want ok", r, ch, err)
					return
				}
				for _, l := range a.Locations {
					if l.Available < 0 || l.Oversold < 0 {
						errs <- fmt.Errorf("reader %d (I1): got %+v, want nothing negative", r, l)
						return
					}
				}
				id := store.ReservationID(fmt.Sprintf("r%d", n%150))
				if res, err := m.Reservation(ch, id); err != nil && !errors.Is(err, store.ErrUnknownReservation) ||
					err == nil && (res.Channel != ch || res.ID != id) {
					errs <- fmt.Errorf("reader %d: reservation %s/%s: got %+v, %v, want it or unknown", r, ch, id, res, err)
					return
				}
				page, _ := m.Reservations(store.ReservationQuery{Channel: ch, Limit: 5, After: id})
				for i, res := range page {
					if res.Channel != ch || res.ID <= id || i > 0 && res.ID <= page[i-1].ID {
						errs <- fmt.Errorf("reader %d: reservations of %s after %s: got %+v, want that channel's in id order", r, ch, id, page)
						return
					}
				}
				// The generator declares and retires one spare location and channel (catalog_test.go).
				if got := len(m.Locations()); got < len(genLocations) || got > len(genLocations)+1 {
					errs <- fmt.Errorf("reader %d: got %d locations, want %d or one more", r, got, len(genLocations))
					return
				}
				if got := len(m.Channels()); got < len(genChannels) || got > len(genChannels)+1 {
					errs <- fmt.Errorf("reader %d: got %d channels, want %d or one more", r, got, len(genChannels))
					return
				}
				for _, k := range m.SKUs("") {
					if k.Factor < 1 || k.Factor > store.MaxPackFactor {
						errs <- fmt.Errorf("reader %d: got sku mapping %+v, want a factor in [1, %d]", r, k, store.MaxPackFactor)
						return
					}
				}
				if gs := m.LocationGroups(); len(gs) > 1 {
					errs <- fmt.Errorf("reader %d: got groups %+v, want at most one", r, gs)
					return
				}
				bs := m.Buffers("")
				for i, b := range bs {
					if b.Units <= 0 || i > 0 && b.Item < bs[i-1].Item {
						errs <- fmt.Errorf("reader %d: got buffer rules %+v, want positive ones sorted by item", r, bs)
						return
					}
				}
				// genLog's backorder share sends incoming lines (determinism_backorder_test.go).
				for _, in := range m.Incoming("") {
					if in.Backordered < 0 || in.Backordered > in.Quantity-in.Received {
						errs <- fmt.Errorf("reader %d: got incoming line %+v, want 0 <= backordered <= quantity - received", r, in)
						return
					}
				}
				// The outbox and the dead-letter list (outbox.go, deadletter.go).
				os := m.OutboxStatus()
				if os.OldestPendingSeq >= os.NextSeq && os.OldestPendingSeq != 0 || os.AbsorbedMark >= os.NextSeq {
					errs <- fmt.Errorf("reader %d: got outbox status %+v, want the oldest pending and the mark below the next seq", r, os)
					return
				}
				entries := m.Outbox(uint64(n%20), 20)
				for i, e := range entries {
					if e.Outcome != 0 || e.Seq <= uint64(n%20) || i > 0 && e.Seq <= entries[i-1].Seq || len(e.Lines) == 0 {
						errs <- fmt.Errorf("reader %d: outbox after %d: got %+v, want pending entries with lines in seq order", r, n%20, entries)
						return
					}
				}
				ref := fmt.Sprintf("o%d", n%3)
				if o, err := m.Order(ch, ref); err != nil && !errors.Is(err, store.ErrUnknownOrder) ||
					err == nil && (o.OrderRef != ref || o.Channel != ch || o.Kind != store.OutboxOrder) {
					errs <- fmt.Errorf("reader %d: order %s/%s: got %+v, %v, want it or unknown", r, ch, ref, o, err)
					return
				}
				dead, counts := m.Rejected(20)
				for i, d := range dead {
					if i > 0 && d.Revision > dead[i-1].Revision || d.Reason == "" {
						errs <- fmt.Errorf("reader %d: got rejected rows %+v, want newest first with reasons", r, dead)
						return
					}
				}
				if len(dead) > 0 && len(counts) == 0 {
					errs <- fmt.Errorf("reader %d: got rejected rows %+v without counts", r, dead)
					return
				}
				if d, live := m.NextDeadline(); live && d <= 0 {
					errs <- fmt.Errorf("reader %d: got next deadline %d, want a positive time", r, d)
					return
				}
			}
		})
	}
	for i := 1; i < len(log); i++ {
		m.ApplyEntry(store.Revision(i+1), log[i])
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}
