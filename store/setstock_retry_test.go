package store_test

import (
	"testing"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// TestSetStockRetryAfterAdjustAnswersItsOwnVersion is the regression
// scenario of a fault-harness finding (bench/chaos, seed
// 1795917697793875867): an ERP adapter's SetStock row was applied, its answer
// was lost in a leader change, an adjustment moved the count, and the
// adapter's retry of the same row was answered REJECTED ("version 21 already
// holds on_hand 110"). SetStock has no request id, so the retry cannot be
// told from a conflicting count under a reused version; what an adapter can
// rely on, and this test holds, is that an answer to a row whose version the
// counter already holds (IGNORED_STALE when the count matches, REJECTED when
// it moved) carries that version and the current count, so a row whose own
// version comes back was applied; and the retry changes nothing.
func TestSetStockRetryAfterAdjustAnswersItsOwnVersion(t *testing.T) {
	m := store.New(store.Config{})
	var idx store.Revision
	apply := func(what string, c *logv1.Command) store.Result {
		t.Helper()
		idx++
		res := m.Apply(idx, store.Timestamp(t0)+store.Timestamp(idx), c)
		if res.Err != nil {
			t.Fatalf("%s: %v", what, res.Err)
		}
		return res
	}
	apply("location", loc("ams"))
	if r := apply("set v21", setStock(row("ROSE", "ams", 113, 21))).Rows[0]; r.Status != store.RowApplied {
		t.Fatalf("set v21: got %+v, want applied", r)
	}
	for _, retry := range []struct {
		name   string
		before *logv1.Command
		status store.RowStatus
		onHand store.Units
	}{
		{"retry of the applied row", nil, store.RowIgnoredStale, 113},
		{"retry after an adjustment of -3", adjust(delta("d1", "ROSE", "ams", -3, 0)), store.RowRejected, 110},
	} {
		if retry.before != nil {
			apply(retry.name+": adjust", retry.before)
		}
		r := apply(retry.name, setStock(row("ROSE", "ams", 113, 21))).Rows[0]
		if r.Status != retry.status || r.Version != 21 || r.OnHand != retry.onHand {
			t.Fatalf("%s: got status %v version %d on_hand %d, want status %v with the held version 21 and on_hand %d",
				retry.name, r.Status, r.Version, r.OnHand, retry.status, retry.onHand)
		}
		if got, _ := m.Counters("ROSE", "ams"); len(got) != 1 || got[0].OnHand != retry.onHand || got[0].Version != 21 {
			t.Fatalf("%s: counters now %+v, want on_hand %d at version 21 (the retry changes nothing)", retry.name, got, retry.onHand)
		}
	}
}
