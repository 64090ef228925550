package store_test

import (
	"errors"
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
