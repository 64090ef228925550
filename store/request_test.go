package store_test

import (
	"bytes"
	"errors"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/stockd/stockd/store"
)

// TestReserveFromANewerBuildIsRememberedWhole guards I3 and I4 for a Reserve
// carrying a field this build does not know (a newer build proposed it): the
// machine keeps that request whole rather than in its compact form, so the
// snapshot record still carries the field, a restored machine writes the
// same stream, and retries are judged on the fields this build knows.
func TestReserveFromANewerBuildIsRememberedWhole(t *testing.T) {
	m := store.New(store.Config{})
	for i, r := range m.ApplyEntry(1, entry(t0, loc("ams"), channel("web", 0, "ams"), setStock(row("rose", "ams", 10, 1)))) {
		if r.Err != nil {
			t.Fatalf("setup command %d: got %v, want ok", i, r.Err)
		}
	}
	unknown := protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 7)
	first := reserve("web", "r1", 0, line("rose", 2))
	first.GetReserve().ProtoReflect().SetUnknown(unknown)
	if r := m.Apply(2, store.Timestamp(t0), first); r.Err != nil || r.Reservation.State != store.StateHeld {
		t.Fatalf("input %v: got %s, want a new hold", first, describe(r))
	}

	for _, mm := range []*store.Machine{m, mustRestore(t, m)} {
		if r := mm.Apply(3, store.Timestamp(t0), reserve("web", "r1", 0, line("rose", 2))); r.Err != nil || r.Reservation.State != store.StateHeld {
			t.Errorf("input the same reserve without the unknown field: got %s, want the first answer", describe(r))
		}
		r := mm.Apply(4, store.Timestamp(t0), reserve("web", "r1", 0, line("rose", 3)))
		var rej *store.Rejection
		if !errors.As(r.Err, &rej) || !errors.Is(r.Err, store.ErrIdempotencyConflict) || rej.Field != "lines[0].quantity" {
			t.Errorf("input reserve r1 with quantity 3: got %s, want %v naming lines[0].quantity", describe(r), store.ErrIdempotencyConflict)
		}
	}

	recs, err := records(m)
	if err != nil {
		t.Fatal(err)
	}
	kept := false
	for _, rec := range recs {
		kept = kept || bytes.Contains(rec, unknown)
	}
	if !kept {
		t.Errorf("snapshot of a hold whose request carries unknown field 99: got no record with it, want the request record to keep it")
	}
	again, err := records(mustRestore(t, m))
	if err != nil {
		t.Fatal(err)
	}
	if !equalRecords(recs, again) {
		t.Errorf("snapshot of the restored machine: got a stream other than the original's, want the same bytes")
	}
}

func mustRestore(t *testing.T, m *store.Machine) *store.Machine {
	t.Helper()
	out, err := restored(m, store.Config{})
	if err != nil {
		t.Fatalf("restore: got %v, want ok", err)
	}
	return out
}

func equalRecords(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}
