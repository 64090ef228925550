package chaos

import (
	"testing"

	"github.com/anishathalye/porcupine"
)

// The retry checkers (I3) on fabricated histories: each fails on the bug it
// claims to catch and passes the same history without it. broken_test.go
// shows them failing on stockd's deliberately broken build.

func TestCheckRetryAnswersCatchesAHoldCreatedAgain(t *testing.T) {
	first := reserveOp("r1", 2, outOK)
	first.Answer = "created_at 100"
	same := first
	refused := reserveOp("r2", 9, outRefused)
	good := []op{first, same, refused, refused}
	if v := checkRetryAnswers(good); len(v) != 0 {
		t.Fatalf("checkRetryAnswers(every retry answered as the first call): got %v, want none", v)
	}
	again := first
	again.Answer = "created_at 250"
	lateSuccess := reserveOp("r2", 9, outOK)
	lateSuccess.Answer = "created_at 300"
	for name, h := range map[string][]op{
		"a retry answered with a hold created anew":  {first, again},
		"a refused reserve that succeeds on a retry": {refused, lateSuccess},
	} {
		t.Run(name+" is caught", func(t *testing.T) {
			if v := checkRetryAnswers(h); len(v) != 1 {
				t.Fatalf("checkRetryAnswers(%+v): got %v, want one violation", h, v)
			}
		})
	}
	t.Run("calls with no recorded answer are not compared", func(t *testing.T) {
		bare := reserveOp("r1", 2, outOK)
		if v := checkRetryAnswers([]op{first, bare}); len(v) != 0 {
			t.Fatalf("checkRetryAnswers(second answer not recorded): got %v, want none", v)
		}
	})
}

func TestCheckAppliedOnceCatchesUnitsNoHoldAccountsFor(t *testing.T) {
	held := resView{Found: true, State: "HELD", Lines: map[string]int64{"a": 2, "b": 1}}
	released := resView{Found: true, State: "RELEASED", Lines: map[string]int64{"a": 5}}
	res := map[string]resView{"r1": held, "r2": released}
	figs := map[string]skuRead{"a": {SKU: "a", Reserved: 2}, "b": {SKU: "b", Reserved: 1}, "c": {SKU: "c"}}
	if v := checkAppliedOnce([]map[string]skuRead{figs, figs}, []map[string]resView{res, res}); len(v) != 0 {
		t.Fatalf("checkAppliedOnce(reserved equals the HELD lines): got %v, want none", v)
	}
	twice := map[string]skuRead{"a": {SKU: "a", Reserved: 4}, "b": {SKU: "b", Reserved: 1}, "c": {SKU: "c"}}
	if v := checkAppliedOnce([]map[string]skuRead{figs, twice}, []map[string]resView{res, res}); len(v) != 1 {
		t.Fatalf("checkAppliedOnce(node2 reserved 4 of a, its holds 2): got %v, want one violation", v)
	}
	lost := map[string]resView{"r2": released}
	if v := checkAppliedOnce([]map[string]skuRead{figs}, []map[string]resView{lost}); len(v) != 2 {
		t.Fatalf("checkAppliedOnce(units reserved, no hold at all): got %v, want two violations (a and b)", v)
	}
}

func TestCheckAcksJudgesARetryByTheFirstAnswer(t *testing.T) {
	lines := []line{{SKU: "a", Qty: 2}}
	h := []op{
		{Kind: opReserve, ID: "r1", Lines: lines, Outcome: outOK},
		{Kind: opRelease, ID: "r1", Lines: lines, Outcome: outOK},
		{Kind: opReserve, ID: "r1", Lines: lines, Outcome: outOK}, // a late duplicate
	}
	released := map[string]resView{"r1": {Found: true, State: "RELEASED", Lines: map[string]int64{"a": 2}}}
	if v := checkAcks(h, []map[string]resView{released}); len(v) != 0 {
		t.Fatalf("checkAcks(released, then a retry of the reserve answered): got %v, want none", v)
	}
	heldAgain := map[string]resView{"r1": {Found: true, State: "HELD", Lines: map[string]int64{"a": 2}}}
	if v := checkAcks(h, []map[string]resView{heldAgain}); len(v) != 1 {
		t.Fatalf("checkAcks(a released hold held again by a retry): got %v, want one violation", v)
	}
	unknownThenOK := []op{
		{Kind: opReserve, ID: "r2", Lines: lines, Outcome: outUnknown},
		{Kind: opReserve, ID: "r2", Lines: lines, Outcome: outOK},
	}
	if v := checkAcks(unknownThenOK, []map[string]resView{{}}); len(v) != 1 {
		t.Fatalf("checkAcks(a reserve acknowledged on a retry, then missing): got %v, want one violation", v)
	}
}

func TestLinearizabilityCatchesARetryAppliedAgain(t *testing.T) {
	rel := op{Kind: opRelease, ID: "r1", Lines: []line{{SKU: "s", Qty: 3}}, Outcome: outOK}
	for _, tc := range []struct {
		name string
		h    []op
		want porcupine.CheckResult
	}{
		{name: "a retry answered with the first answer is legal", want: porcupine.Ok, h: []op{
			at(0, 0, 1, reserveOp("r1", 3, outOK)),
			at(0, 2, 3, reserveOp("r1", 3, outOK)),
			at(1, 4, 5, readOp(5, 3, 0)),
			at(0, 6, 7, rel),
			at(0, 8, 9, reserveOp("r1", 3, outOK)),
			at(1, 10, 11, readOp(5, 0, 0)),
		}},
		{name: "a retry that holds the units again is caught", want: porcupine.Illegal, h: []op{
			at(0, 0, 1, reserveOp("r1", 2, outOK)),
			at(0, 2, 3, reserveOp("r1", 2, outOK)),
			at(1, 4, 5, readOp(5, 4, 0)),
		}},
		{name: "a late duplicate that holds a released id again is caught", want: porcupine.Illegal, h: []op{
			at(0, 0, 1, reserveOp("r1", 3, outOK)),
			at(0, 2, 3, rel),
			at(0, 4, 5, reserveOp("r1", 3, outOK)),
			at(1, 6, 7, readOp(5, 3, 0)),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := linVerdict(t, tc.h); got != tc.want {
				t.Fatalf("history %+v: got %v, want %v", tc.h, got, tc.want)
			}
		})
	}
}
