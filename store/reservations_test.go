package store_test

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/stockd/stockd/store"
)

// Machine.Reservations: one channel's reservations by state or deadline
// window, in id order, in pages.

// listWorld holds reservations in every state on two channels.
func listWorld(t *testing.T) *store.Machine {
	t.Helper()
	return run(t, store.Config{}, with(reserveWorld,
		ok(reserve("web", "h3", 10*time.Minute, line("rose", 1))),
		ok(reserve("web", "h1", time.Minute, line("rose", 1))),
		ok(reserve("web", "h2", 5*time.Minute, line("rose", 1))),
		ok(reserve("web", "c1", 0, line("rose", 1))), ok(confirm("web", "c1", "o1")),
		ok(reserve("web", "c2", 0, line("rose", 1))), ok(confirm("web", "c2", "o2")), ok(cancelOrder("web", "c2")),
		ok(reserve("web", "x1", 0, line("rose", 1))), ok(release("web", "x1")),
		ok(reserve("web", "e1", time.Second, line("rose", 1))),
		ok(reserve("rep", "h0", 0, line("rose", 1))),
		tick(2*time.Second),
	))
}

func ids(page []store.Reservation) []string {
	var out []string
	for _, r := range page {
		out = append(out, string(r.ID))
	}
	return out
}

func TestReservationsListing(t *testing.T) {
	m := listWorld(t)
	for _, tc := range []struct {
		name string
		q    store.ReservationQuery
		want []string
		more bool
	}{
		{"every state of one channel in id order", store.ReservationQuery{Channel: "web"}, []string{"c1", "c2", "e1", "h1", "h2", "h3", "x1"}, false},
		{"another channel sees only its own", store.ReservationQuery{Channel: "rep"}, []string{"h0"}, false},
		{"an undeclared channel is empty", store.ReservationQuery{Channel: "ghost"}, nil, false},
		{"held only", store.ReservationQuery{Channel: "web", State: store.StateHeld}, []string{"h1", "h2", "h3"}, false},
		{"cancelled only", store.ReservationQuery{Channel: "web", State: store.StateCancelled}, []string{"c2"}, false},
		{"expired only", store.ReservationQuery{Channel: "web", State: store.StateExpired}, []string{"e1"}, false},
		{"a first page", store.ReservationQuery{Channel: "web", Limit: 3}, []string{"c1", "c2", "e1"}, true},
		{"the next page", store.ReservationQuery{Channel: "web", Limit: 3, After: "e1"}, []string{"h1", "h2", "h3"}, true},
		{"the last page", store.ReservationQuery{Channel: "web", Limit: 3, After: "h3"}, []string{"x1"}, false},
		{"a page that ends exactly", store.ReservationQuery{Channel: "web", Limit: 7}, []string{"c1", "c2", "e1", "h1", "h2", "h3", "x1"}, false},
		{"after a missing id", store.ReservationQuery{Channel: "web", After: "d"}, []string{"e1", "h1", "h2", "h3", "x1"}, false},
		// Log time is t0+2s: h1 is due at t0+1m, h2 at t0+5m, h3 at t0+10m.
		{"expiring within a window", store.ReservationQuery{Channel: "web", ExpiringWithinNanos: int64(5*time.Minute - 2*time.Second)}, []string{"h1", "h2"}, false},
		{"expiring just short of a deadline", store.ReservationQuery{Channel: "web", ExpiringWithinNanos: int64(5*time.Minute - 2*time.Second - 1)}, []string{"h1"}, false},
		{"expiring and paged", store.ReservationQuery{Channel: "web", ExpiringWithinNanos: int64(time.Hour), Limit: 2}, []string{"h1", "h2"}, true},
		{"expiring in a state other than held", store.ReservationQuery{Channel: "web", ExpiringWithinNanos: int64(time.Hour), State: store.StateConfirmed}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			page, more := m.Reservations(tc.q)
			if got := ids(page); !slices.Equal(got, tc.want) || more != tc.more {
				t.Errorf("input %+v: got %v more %v, want %v more %v", tc.q, got, more, tc.want, tc.more)
			}
			for _, r := range page {
				one, err := m.Reservation(r.Channel, r.ID)
				if err != nil || !reflect.DeepEqual(one, r) {
					t.Errorf("input %+v: got %+v in the page, want %+v (%v) as Reservation answers", tc.q, r, one, err)
				}
			}
		})
	}
}

func TestReservationsPagesAreCopiesAndLimited(t *testing.T) {
	steps := with(reserveWorld)
	for i := range 1100 {
		steps = append(steps, ok(reserve("rep", fmt.Sprintf("r%04d", i), 0, line("rose", 1))))
		if i == 25 {
			steps = append(steps, ok(setStock(row("rose", "ber", 5000, 2))))
		}
	}
	m := run(t, store.Config{}, steps)
	page, more := m.Reservations(store.ReservationQuery{Channel: "rep"})
	if len(page) != 100 || !more || page[0].ID != "r0000" || page[99].ID != "r0099" {
		t.Fatalf("input limit 0: got %d (%v .. %v) more %v, want 100 (r0000 .. r0099) and more", len(page), page[0].ID, page[len(page)-1].ID, more)
	}
	page, more = m.Reservations(store.ReservationQuery{Channel: "rep", Limit: 5000})
	if len(page) != 1000 || !more || page[999].ID != "r0999" {
		t.Fatalf("input limit 5000: got %d more %v, want 1000 and more", len(page), more)
	}
	page, more = m.Reservations(store.ReservationQuery{Channel: "rep", Limit: 1000, After: page[999].ID})
	if len(page) != 100 || more || page[0].ID != "r1000" {
		t.Fatalf("input after r0999: got %d more %v first %v, want 100 from r1000 and no more", len(page), more, page[0].ID)
	}
	page[0].Lines[0].Allocations[0].Quantity = 99
	page[0].Lines[0].Quantity = 99
	if r, err := m.Reservation("rep", "r1000"); err != nil || r.Lines[0].Quantity != 1 || r.Lines[0].Allocations[0].Quantity != 1 {
		t.Fatalf("input a page changed by its caller: got %+v (%v), want the machine's reservation unchanged", r, err)
	}
}
