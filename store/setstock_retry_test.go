package store_test

import (
	"testing"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// TestSetStockRetryAfterAdjustIsStale is the regression scenario of a
// fault-harness finding (bench/chaos, seed 1795917697793875867): an ERP
// adapter's SetStock row was applied, its answer was lost in a leader
// change, an adjustment moved the count, and the adapter's retry of the same
// row was answered REJECTED ("version 21 already holds on_hand 110") and
// dead-lettered, though it had applied. SetStock has no request id; since
// feature version 3 the server proposes it with same_version_stale, and a
// row under the held version is IGNORED_STALE whatever its count. Entries of
// older builds (no flag) keep their old answer, so a replayed log applies as
// it did. Either way the answer carries the held version and count, the
// retry changes nothing, and only the rejection is dead-lettered.
func TestSetStockRetryAfterAdjustIsStale(t *testing.T) {
	for _, tc := range []struct {
		name        string
		flag        bool
		afterAdj    store.RowStatus
		feature     uint32
		deadLetters int
	}{
		{"same_version_stale (feature 3)", true, store.RowIgnoredStale, 3, 0},
		{"an older entry without it", false, store.RowRejected, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
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
			set := setStock(row("ROSE", "ams", 113, 21))
			set.GetSetStock().SameVersionStale = tc.flag
			if got := store.CommandFeature(set); got != tc.feature {
				t.Fatalf("feature of the set: got %d, want %d", got, tc.feature)
			}
			apply("location", loc("ams"))
			if r := apply("set v21", set).Rows[0]; r.Status != store.RowApplied {
				t.Fatalf("set v21: got %+v, want applied", r)
			}
			for _, retry := range []struct {
				name   string
				before *logv1.Command
				status store.RowStatus
				onHand store.Units
			}{
				{"retry of the applied row", nil, store.RowIgnoredStale, 113},
				{"retry after an adjustment of -3", adjust(delta("d1", "ROSE", "ams", -3, 0)), tc.afterAdj, 110},
			} {
				if retry.before != nil {
					apply(retry.name+": adjust", retry.before)
				}
				r := apply(retry.name, set).Rows[0]
				if r.Status != retry.status || r.Version != 21 || r.OnHand != retry.onHand {
					t.Fatalf("%s: got status %v version %d on_hand %d (%s), want status %v with the held version 21 and on_hand %d",
						retry.name, r.Status, r.Version, r.OnHand, r.Reason, retry.status, retry.onHand)
				}
				if got, _ := m.Counters("ROSE", "ams"); len(got) != 1 || got[0].OnHand != retry.onHand || got[0].Version != 21 {
					t.Fatalf("%s: counters now %+v, want on_hand %d at version 21 (the retry changes nothing)", retry.name, got, retry.onHand)
				}
			}
			if rows, _ := m.Rejected(10); len(rows) != tc.deadLetters {
				t.Fatalf("dead letters: got %d (%+v), want %d", len(rows), rows, tc.deadLetters)
			}
		})
	}
}
