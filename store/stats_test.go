package store_test

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// TestStatsCountDecisions: the cumulative counts follow what Apply decided,
// retries answered from memory are not counted twice, and the counts are no
// part of the state (equal digests with and without them).
func TestStatsCountDecisions(t *testing.T) {
	m := store.New(store.DefaultConfig())
	idx := store.Revision(0)
	ts := t0
	apply := func(cmds ...*logv1.Command) []store.Result {
		idx++
		return m.ApplyEntry(idx, entry(ts, cmds...))
	}
	apply(loc("ams"), loc("fra"), channel("web", 0, "ams", "fra"))
	// 3 rows applied; then one stale and one rejected (unknown location).
	apply(setStock(row("ROSE", "ams", 5, 1), row("ROSE", "fra", 1, 1), row("TULIP", "ams", 2, 1)))
	ts += int64(time.Second)
	apply(setStock(row("ROSE", "ams", 5, 1), row("ROSE", "nowhere", 1, 1)))
	apply(adjust(delta("d1", "TULIP", "fra", 4, 0)))

	// Accepted: r1 (4 of ROSE@ams), r2 (ROSE@ams to 0, TULIP@ams to 0 too),
	// r3 with a short TTL. Refused: too many, unknown channel, retry of r1 with
	// another payload. A same-payload retry of r1 and of the refusal count
	// nothing.
	res := apply(
		reserve("web", "r1", 0, lineAt("ROSE", 4, "ams")),
		reserve("web", "r2", 0, lineAt("ROSE", 1, "ams"), lineAt("TULIP", 2, "ams")),
		reserve("web", "r3", time.Second, lineAt("TULIP", 1, "fra")),
		reserve("web", "big", 0, line("ROSE", 100)),
		reserve("nope", "x", 0, line("ROSE", 1)),
		reserve("web", "r1", 0, lineAt("ROSE", 3, "ams")),
		reserve("web", "r1", 0, lineAt("ROSE", 4, "ams")),
		reserve("web", "big", 0, line("ROSE", 100)),
	)
	for i, want := range []error{nil, nil, nil, store.ErrInsufficientStock, store.ErrUnknownChannel, store.ErrIdempotencyConflict, nil, store.ErrInsufficientStock} {
		if !errors.Is(res[i].Err, want) {
			t.Fatalf("reserve %d: got %s, want err %v", i, describe(res[i]), want)
		}
	}
	ts += int64(2 * time.Second) // r3 expires at the next entry
	apply(tickCmd())
	// ROSE@fra drops to 0 by an ERP count: the third to-zero event.
	apply(setStock(row("ROSE", "fra", 0, 2)))

	got := m.Stats()
	want := store.Stats{
		ReservesAccepted: 3,
		ReservesRefused: []store.ReasonCount{
			{Reason: "idempotency_conflict", Count: 1},
			{Reason: "insufficient_stock", Count: 1},
			{Reason: "unknown_channel", Count: 1},
		},
		HoldsExpired:    1,
		AvailableToZero: 3,
		ERPRowsApplied:  5, ERPRowsStale: 1, ERPRowsRejected: 1,
		ERPUpdates: []store.LocationTime{
			{Location: "ams", At: store.Timestamp(t0 + int64(time.Second))},
			{Location: "fra", At: store.Timestamp(ts)},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("stats after the script:\n got %+v\nwant %+v", got, want)
	}

	// The counts are not state: a machine restored from this one's snapshot
	// has the same digest and fresh counts.
	fresh := store.New(store.DefaultConfig())
	recs, err := records(m)
	if err != nil {
		t.Fatalf("records: %v", err)
	}
	if err := fresh.Restore(sliceSource(recs)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	d1, _ := m.Digest()
	d2, _ := fresh.Digest()
	if d1 != d2 {
		t.Fatalf("digest after restore: got %x, want %x", d2, d1)
	}
	if st := fresh.Stats(); st.ReservesAccepted != 0 || len(st.ERPUpdates) != 0 {
		t.Fatalf("stats of a restored machine: got %+v, want zero", st)
	}
}

// TestRefusalReasonNamesEverySentinel: each sentinel has its own reason, so
// a new sentinel without a name fails here rather than counting as "other".
func TestRefusalReasonNamesEverySentinel(t *testing.T) {
	seen := map[string]error{}
	for _, err := range []error{store.ErrInvalid, store.ErrUnknownChannel, store.ErrUnknownLocation,
		store.ErrUnknownReservation, store.ErrInsufficientStock, store.ErrNotHeld, store.ErrLocationNotVisible,
		store.ErrIdempotencyConflict, store.ErrOverflow, store.ErrUnknownSKU, store.ErrRevisionChanged,
		store.ErrInUse, store.ErrUnknownLocationGroup, store.ErrNotConfirmed, store.ErrAbsorbed,
		store.ErrUnknownIncoming, store.ErrUnknownOrder} {
		r := store.RefusalReason(fmt.Errorf("wrapped: %w", err))
		if r == "other" || seen[r] != nil {
			t.Errorf("RefusalReason(%v): got %q, want a reason of its own", err, r)
		}
		seen[r] = err
	}
	if r := store.RefusalReason(fmt.Errorf("plain")); r != "other" {
		t.Errorf("RefusalReason(plain error): got %q, want other", r)
	}
}
