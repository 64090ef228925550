package store_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// withMeta returns recs with the meta record (the first) changed by edit.
func withMeta(t *testing.T, recs [][]byte, edit func(*logv1.SnapshotMeta)) [][]byte {
	t.Helper()
	var rec logv1.SnapshotRecord
	if err := proto.Unmarshal(recs[0], &rec); err != nil || rec.GetMeta() == nil {
		t.Fatalf("input first golden record: got %v (%v), want the meta record", &rec, err)
	}
	edit(rec.GetMeta())
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&rec)
	if err != nil {
		t.Fatal(err)
	}
	return append([][]byte{b}, recs[1:]...)
}

// TestI4RestoreRejectsSequencesBehindTheirRecords: the meta record's counters
// must be ahead of every order and remembered answer the stream holds, or
// the restored machine reuses a sequence number. The golden state holds
// orders 1 and 2 and answers queued with prune sequences 1 to 7.
func TestI4RestoreRejectsSequencesBehindTheirRecords(t *testing.T) {
	recs := mustRecords(t, goldenMachine(t))

	t.Run("next_order_seq at the last order's seq is refused", func(t *testing.T) {
		stream := withMeta(t, recs, func(m *logv1.SnapshotMeta) { m.NextOrderSeq = 2 })
		m := store.New(store.Config{})
		err := m.Restore(sliceSource(stream))
		if errors.Is(err, store.ErrCorruptSnapshot) {
			return
		}
		// Accepted: the next Confirm issues order 2 a second time, and the
		// machine can no longer restore its own snapshot.
		res := m.Apply(m.AppliedIndex()+1, m.LastTime()+1, confirm("web", "r-held", "o-3"))
		_, again := restored(m, store.Config{})
		t.Errorf("input golden stream with next_order_seq 2 (orders 1 and 2 present): got restore error %v, want %v; "+
			"then confirm web/r-held got order seq %d (a duplicate) and restoring the machine's own snapshot got %v",
			err, store.ErrCorruptSnapshot, res.Reservation.OrderSeq, again)
	})

	t.Run("I4 next_prune_seq at or below a remembered answer's prune_seq is refused", func(t *testing.T) {
		cfg := store.Config{RetryWindowNanos: int64(time.Hour), MaxRecords: 8}
		stream := withMeta(t, recs, func(m *logv1.SnapshotMeta) { m.NextPruneSeq = 1 })
		m := store.New(cfg)
		err := m.Restore(sliceSource(stream))
		if errors.Is(err, store.ErrCorruptSnapshot) {
			return
		}
		// Accepted: new answers take sequences 1, 2, ... already in use. The
		// machine forgets in the order it queued them; a replica restored
		// from its snapshot forgets in sequence order: they diverge.
		apply := func(m *store.Machine, id string) {
			m.Apply(m.AppliedIndex()+1, m.LastTime()+1, reserve("web", id, 0, line("rose", 999)))
		}
		apply(m, "x1")
		apply(m, "x2")
		replica, rerr := restored(m, cfg)
		if rerr != nil {
			t.Fatalf("input golden stream with next_prune_seq 1: got restore error %v for the machine's own snapshot", rerr)
		}
		diverged := "never"
		for _, id := range []string{"x3", "x4", "x5", "x6"} {
			apply(m, id)
			apply(replica, id)
			if digest(m) != digest(replica) && diverged == "never" {
				diverged = "after refusal " + id
			}
		}
		t.Errorf("input golden stream with next_prune_seq 1 (prune_seq 1..7 present): got restore error %v, want %v; "+
			"then with MaxRecords 8 the machine and a replica restored from its snapshot diverge %s (I4)",
			err, store.ErrCorruptSnapshot, diverged)
	})
}

// withCounter returns recs with the first counter record that pick accepts
// changed by edit, or dropped when edit is nil; it fails if none is picked.
func withCounter(t *testing.T, recs [][]byte, pick func(*logv1.CounterRecord) bool, edit func(*logv1.CounterRecord)) [][]byte {
	t.Helper()
	for i, r := range recs {
		var rec logv1.SnapshotRecord
		if err := proto.Unmarshal(r, &rec); err != nil {
			t.Fatal(err)
		}
		c := rec.GetCounter()
		if c == nil || !pick(c) {
			continue
		}
		out := append([][]byte(nil), recs[:i]...)
		if edit != nil {
			edit(c)
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&rec)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, b)
		}
		return append(out, recs[i+1:]...)
	}
	t.Fatal("input golden stream: no counter record to change")
	return nil
}

// TestI1RestoreChecksCountersAgainstHoldsAndOrders: a snapshot whose
// counters disagree with its live holds or unabsorbed orders is refused,
// naming the counter, whichever way they disagree.
func TestI1RestoreChecksCountersAgainstHoldsAndOrders(t *testing.T) {
	recs := mustRecords(t, goldenMachine(t))
	if err := store.New(store.Config{}).Restore(sliceSource(recs)); err != nil {
		t.Fatalf("input golden stream as it is: got %v, want it restored", err)
	}
	reserved := func(c *logv1.CounterRecord) bool { return c.GetReservedBaseUnits() > 0 }
	committed := func(c *logv1.CounterRecord) bool { return c.GetCommittedBaseUnits() > 0 }
	idle := func(c *logv1.CounterRecord) bool {
		return c.GetReservedBaseUnits() == 0 && c.GetCommittedBaseUnits() == 0
	}
	for _, c := range []struct {
		name   string
		stream [][]byte
		want   string
	}{
		{"reserved above its holds", withCounter(t, recs, reserved, func(c *logv1.CounterRecord) { c.ReservedBaseUnits++ }), "live holds"},
		{"reserved where no hold is", withCounter(t, recs, idle, func(c *logv1.CounterRecord) { c.ReservedBaseUnits = 3 }), "reserved 3, live holds 0"},
		{"committed above its orders", withCounter(t, recs, committed, func(c *logv1.CounterRecord) { c.CommittedBaseUnits++ }), "unabsorbed orders"},
		{"committed where no order is", withCounter(t, recs, idle, func(c *logv1.CounterRecord) { c.CommittedBaseUnits = 2 }), "committed 2, unabsorbed orders 0"},
		{"negative reserved", withCounter(t, recs, idle, func(c *logv1.CounterRecord) { c.ReservedBaseUnits = -1 }), "has reserved -1"},
		{"holds on a counter that is gone", withCounter(t, recs, reserved, nil), "have no counter"},
	} {
		err := store.New(store.Config{}).Restore(sliceSource(c.stream))
		if !errors.Is(err, store.ErrCorruptSnapshot) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("input golden stream with %s: got %v, want %v naming %q", c.name, err, store.ErrCorruptSnapshot, c.want)
		}
	}
}

// TestI4RestoreRefusesModRevisionsAfterTheIndex: a counter changed "after"
// the snapshot's own index cannot come from an applied log; it is refused,
// naming the counter.
func TestI4RestoreRefusesModRevisionsAfterTheIndex(t *testing.T) {
	recs := mustRecords(t, goldenMachine(t))
	stream := withCounter(t, recs, func(*logv1.CounterRecord) bool { return true }, func(c *logv1.CounterRecord) { c.ModRevision = 1 << 40 })
	err := store.New(store.Config{}).Restore(sliceSource(stream))
	if !errors.Is(err, store.ErrCorruptSnapshot) || !strings.Contains(err.Error(), "has mod_revision 1099511627776, after the applied index") ||
		!strings.Contains(err.Error(), "counter ") {
		t.Errorf("input golden stream with a counter at mod_revision 2^40: got %v, want %v naming the counter and its mod_revision", err, store.ErrCorruptSnapshot)
	}
}
