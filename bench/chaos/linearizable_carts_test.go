package chaos

import (
	"reflect"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

func TestComponentsJoinSKUsOfOneOperation(t *testing.T) {
	h := []op{
		{Kind: opReserve, Lines: []line{{SKU: "a"}, {SKU: "b"}}},
		{Kind: opReserve, Lines: []line{{SKU: "c"}}},
		{Kind: opReserve, Lines: []line{{SKU: "d"}, {SKU: "b"}}},
		{Kind: opReadLin, Reads: []skuRead{{SKU: "e"}}},
		{Kind: opReserve, Lines: []line{{SKU: "e"}, {SKU: "hot"}}}, // outside the set: ignored
	}
	got := components(h, []string{"a", "b", "c", "d", "e"})
	want := [][]string{{"a", "b", "d"}, {"c"}, {"e"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("components(carts a+b, c, d+b, read e, e+hot): got %v, want %v", got, want)
	}
}

func cartReserve(id string, out outcome, ls ...line) op {
	o := op{Kind: opReserve, ID: id, Lines: ls, Outcome: out}
	if out == outRefused {
		o.Err = "rpc error: code = FailedPrecondition desc = insufficient stock"
	}
	return o
}

func cartRead(sku string, onHand, reserved, committed int64) op {
	return op{Kind: opReadLin, Outcome: outOK, Reads: []skuRead{{SKU: sku, OnHand: onHand, Reserved: reserved, Committed: committed}}}
}

func TestCartLinearizabilityCatchesBrokenHistories(t *testing.T) {
	a3, b2, a4 := line{SKU: "a", Qty: 3}, line{SKU: "b", Qty: 2}, line{SKU: "a", Qty: 4}
	// a and b at on hand 5.
	for _, tc := range []struct {
		name string
		h    []op
		want porcupine.CheckResult
	}{
		{name: "a cart, reads of both lines, its release and extend order is legal", want: porcupine.Ok, h: []op{
			at(0, 0, 1, cartReserve("c1", outOK, a3, b2)),
			at(1, 2, 3, cartRead("a", 5, 3, 0)),
			at(1, 4, 5, cartRead("b", 5, 2, 0)),
			at(0, 6, 7, op{Kind: opExtend, ID: "c1", Lines: []line{a3, b2}, Outcome: outOK}),
			at(0, 8, 9, op{Kind: opConfirm, ID: "c1", Lines: []line{a3, b2}, Outcome: outOK}),
			at(1, 10, 11, cartRead("b", 5, 0, 2)),
		}},
		{name: "a cart applied on one line only is caught", want: porcupine.Illegal, h: []op{
			at(0, 0, 1, cartReserve("c1", outOK, a3, b2)),
			at(1, 2, 3, cartRead("a", 5, 3, 0)),
			at(1, 4, 5, cartRead("b", 5, 0, 0)),
		}},
		{name: "a cart that oversells one of its lines is caught (I1)", want: porcupine.Illegal, h: []op{
			at(0, 0, 1, cartReserve("r1", outOK, a3)),
			at(1, 2, 3, cartReserve("c1", outOK, a3, b2)),
		}},
		{name: "a cart refused while every line fitted is caught", want: porcupine.Illegal, h: []op{
			at(0, 0, 1, cartReserve("c1", outRefused, a3, b2)),
		}},
		{name: "a cart refused for one short line is legal", want: porcupine.Ok, h: []op{
			at(0, 0, 1, cartReserve("r1", outOK, a3)),
			at(1, 2, 3, cartReserve("c1", outRefused, a4, b2)),
			at(1, 4, 5, cartRead("b", 5, 0, 0)),
		}},
		{name: "an extend acknowledged after the release is caught", want: porcupine.Illegal, h: []op{
			at(0, 0, 1, cartReserve("c1", outOK, a3, b2)),
			at(0, 2, 3, op{Kind: opRelease, ID: "c1", Lines: []line{a3, b2}, Outcome: outOK}),
			at(0, 4, 5, op{Kind: opExtend, ID: "c1", Lines: []line{a3, b2}, Outcome: outOK}),
		}},
		{name: "an unknown cart seen on one SKU must show on the other", want: porcupine.Illegal, h: []op{
			at(0, 0, 1, cartReserve("c1", outUnknown, a3, b2)),
			at(1, 2, 3, cartRead("a", 5, 3, 0)),
			at(1, 4, 5, cartRead("b", 5, 0, 0)),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := checkCartsLinearizable(tc.h, []string{"a", "b"}, 5, 10*time.Second)
			if len(r) != 1 {
				t.Fatalf("history %v: got %d connected sets, want 1", tc.h, len(r))
			}
			if r[0].result != tc.want {
				t.Fatalf("history %v: got %v, want %v", tc.h, r[0].result, tc.want)
			}
		})
	}
}

func TestSingleSKUExtendAfterReleaseIsCaught(t *testing.T) {
	h := []op{
		at(0, 0, 1, reserveOp("r1", 3, outOK)),
		at(0, 2, 3, op{Kind: opRelease, ID: "r1", Lines: []line{{SKU: "s", Qty: 3}}, Outcome: outOK}),
		at(0, 4, 5, op{Kind: opExtend, ID: "r1", Lines: []line{{SKU: "s", Qty: 3}}, Outcome: outOK}),
	}
	if got := linVerdict(t, h); got != porcupine.Illegal {
		t.Fatalf("reserve, release, extend acknowledged: got %v, want Illegal", got)
	}
	h[2].Outcome, h[2].Err = outRefused, "rpc error: code = FailedPrecondition desc = not held"
	if got := linVerdict(t, h); got != porcupine.Ok {
		t.Fatalf("reserve, release, extend refused: got %v, want Ok", got)
	}
}
