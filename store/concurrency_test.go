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
				if got := len(m.Locations()); got != len(genLocations) {
					errs <- fmt.Errorf("reader %d: got %d locations, want %d", r, got, len(genLocations))
					return
				}
				if got := len(m.Channels()); got != len(genChannels) {
					errs <- fmt.Errorf("reader %d: got %d channels, want %d", r, got, len(genChannels))
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
