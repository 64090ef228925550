package chaos

import (
	"encoding/json"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// TestReplayHistory re-checks a saved history (STOCKD_CHAOS_HISTORY=path to
// a failed run's history.json) and, for each SKU porcupine rejects, prints
// its operations in revision order with the model's state after each
// acknowledged one: the first read that disagrees is usually the bug.
func TestReplayHistory(t *testing.T) {
	path := os.Getenv("STOCKD_CHAOS_HISTORY")
	if path == "" {
		t.Skip("set STOCKD_CHAOS_HISTORY to a saved history.json")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ops []op
	if err := json.Unmarshal(b, &ops); err != nil {
		t.Fatal(err)
	}
	skus := map[string]bool{}
	for _, o := range ops {
		if o.Kind == opReadLin && len(o.Reads) == 1 {
			skus[o.Reads[0].SKU] = true
		}
	}
	// SKUs some cart touches are checked as connected sets, the others
	// one by one (the workload's split of LinSKUs and CartSKUs).
	inCart := map[string]bool{}
	for _, o := range ops {
		if len(o.Lines) > 1 {
			for _, l := range o.Lines {
				inCart[l.SKU] = true
			}
		}
	}
	var list, carts []string
	for s := range skus {
		if inCart[s] {
			carts = append(carts, s)
		} else {
			list = append(list, s)
		}
	}
	sort.Strings(carts)
	for _, r := range checkCartsLinearizable(ops, carts, 30, time.Minute) {
		t.Logf("%s: %v (%d ops)", r.sku, r.result, r.ops)
	}
	for _, r := range checkLinearizable(ops, list, 30, time.Minute) {
		t.Logf("%s: %v (%d ops)", r.sku, r.result, r.ops)
		if r.result != porcupine.Illegal {
			continue
		}
		var mine []op
		for _, o := range ops {
			if (o.Kind == opReadLin && len(o.Reads) == 1 && o.Reads[0].SKU == r.sku) ||
				(o.Kind != opReadLin && o.Kind != opReadLocal && len(o.Lines) == 1 && o.Lines[0].SKU == r.sku) {
				mine = append(mine, o)
			}
		}
		// A read at revision R reflects the write at R: writes first.
		sort.SliceStable(mine, func(i, j int) bool {
			if mine[i].Revision != mine[j].Revision {
				return mine[i].Revision < mine[j].Revision
			}
			return mine[i].Kind != opReadLin && mine[j].Kind == opReadLin
		})
		st := linModel(30).Init().(linState)
		for _, o := range mine {
			out := linOutput{outcome: o.Outcome, code: codeOf(o.Err)}
			if o.Kind == opReadLin {
				out.read = o.Reads[0]
			}
			mark := ""
			if o.Outcome == outOK { // refusals carry no revision
				ok, next := linStep(st, o, out)
				if !ok {
					mark = "  <-- disagrees with the model replayed in revision order"
				}
				st = next.(linState)
			}
			t.Logf("rev %6d call %8.3fs ret %8.3fs c%d node%d %-9s %-8s %-10s v%d val %d reads %+v err %q resolved %q | model on_hand %d reserved %d committed %d%s",
				o.Revision, float64(o.Call)/1e9, float64(o.Return)/1e9, o.Client, o.Node+1, o.Kind, o.ID, o.Outcome,
				o.Version, o.Value, o.Reads, o.Err, o.Resolved, st.onHand, st.reserved(), st.committed, mark)
		}
	}
}
