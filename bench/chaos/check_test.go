package chaos

import (
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// Each checker is shown to catch what it claims to catch: a fabricated
// history with the bug fails it, the same history without the bug passes.

func noneLower(string) bool { return true }

func TestCheckReadsCatchesOversell(t *testing.T) {
	good := []op{{Kind: opReadLocal, Outcome: outOK, Reads: []skuRead{{SKU: "a", OnHand: 10, Reserved: 6, Committed: 4, Available: 0}}}}
	if v := checkReads(good, noneLower); len(v) != 0 {
		t.Fatalf("checkReads(promised 10 of on_hand 10): got %v, want no violation", v)
	}
	for name, rd := range map[string]skuRead{
		"promised beyond on hand (I1)":         {SKU: "a", OnHand: 10, Reserved: 7, Committed: 4, Oversold: 1},
		"available not on_hand minus promised": {SKU: "a", OnHand: 10, Reserved: 2, Available: 9},
		"shortfall hidden, not exposed":        {SKU: "a", OnHand: 5, Reserved: 7, Oversold: 0},
		"negative available":                   {SKU: "a", OnHand: 0, Available: -1},
	} {
		t.Run(name+" is caught", func(t *testing.T) {
			h := []op{{Kind: opReadLin, Outcome: outOK, Reads: []skuRead{rd}}}
			if v := checkReads(h, noneLower); len(v) == 0 {
				t.Fatalf("checkReads(%+v): got no violation, want one", rd)
			}
		})
	}
	t.Run("an ERP count below promised on a SKU the ERP may lower is exposure, not oversell", func(t *testing.T) {
		rd := skuRead{SKU: "a", OnHand: 5, Reserved: 7, Oversold: 2}
		h := []op{{Kind: opReadLin, Outcome: outOK, Reads: []skuRead{rd}}}
		if v := checkReads(h, func(string) bool { return false }); len(v) != 0 {
			t.Fatalf("checkReads(%+v): got %v, want no violation", rd, v)
		}
	})
}

func TestCheckMonotonicCatchesRevisionGoingBack(t *testing.T) {
	read := func(client, node int, rev, minRev uint64) op {
		return op{Kind: opReadLocal, Outcome: outOK, Client: client, Node: node, Revision: rev, MinRev: minRev}
	}
	if v := checkMonotonic([]op{read(0, 0, 5, 0), read(0, 0, 5, 0), read(0, 1, 3, 0), read(1, 0, 4, 0)}); len(v) != 0 {
		t.Fatalf("checkMonotonic(non-decreasing per client and node): got %v, want none", v)
	}
	if v := checkMonotonic([]op{read(0, 0, 5, 0), read(0, 0, 4, 0)}); len(v) != 1 {
		t.Fatalf("checkMonotonic(5 then 4 on one node): got %v, want one violation", v)
	}
	if v := checkMonotonic([]op{read(0, 2, 4, 7)}); len(v) != 1 {
		t.Fatalf("checkMonotonic(revision 4 answering min_revision 7): got %v, want one violation", v)
	}
}

func TestCheckAcksCatchesLostAcknowledgement(t *testing.T) {
	lines := []line{{SKU: "a", Qty: 2}}
	h := []op{
		{Kind: opReserve, ID: "r1", Lines: lines, Outcome: outOK},
		{Kind: opReserve, ID: "r2", Lines: lines, Outcome: outOK},
		{Kind: opRelease, ID: "r2", Lines: lines, Outcome: outOK},
		{Kind: opReserve, ID: "r3", Lines: lines, Outcome: outUnknown},
		{Kind: opReserve, ID: "r4", Lines: lines, Outcome: outRefused, Err: "rpc error: code = FailedPrecondition desc = insufficient"},
	}
	held := resView{Found: true, State: "HELD", Lines: map[string]int64{"a": 2}}
	released := resView{Found: true, State: "RELEASED", Lines: map[string]int64{"a": 2}}
	good := map[string]resView{"r1": held, "r2": released}
	if v := checkAcks(h, []map[string]resView{good, good}); len(v) != 0 {
		t.Fatalf("checkAcks(every ack present): got %v, want none", v)
	}
	for name, node2 := range map[string]map[string]resView{
		"an acknowledged reserve missing on one node": {"r2": released},
		"an acknowledged release undone":              {"r1": held, "r2": held},
		"an acknowledged reserve with other lines":    {"r1": {Found: true, State: "HELD", Lines: map[string]int64{"a": 1}}, "r2": released},
		"a refused reserve that became a hold (I3)":   {"r1": held, "r2": released, "r4": held},
	} {
		t.Run(name+" is caught", func(t *testing.T) {
			if v := checkAcks(h, []map[string]resView{good, node2}); len(v) == 0 {
				t.Fatalf("checkAcks(node2 %v): got no violation, want one", node2)
			}
		})
	}
}

func TestCheckDigestsCatchesDivergence(t *testing.T) {
	settled, v := checkDigests([]memberView{{"n1", 9, "aa"}, {"n2", 9, "aa"}, {"n3", 9, "aa"}})
	if !settled || len(v) != 0 {
		t.Fatalf("checkDigests(equal): got settled %v, %v; want settled, none", settled, v)
	}
	if settled, _ := checkDigests([]memberView{{"n1", 9, "aa"}, {"n2", 8, "bb"}}); settled {
		t.Fatalf("checkDigests(applied 9 and 8): got settled, want not yet")
	}
	if _, v := checkDigests([]memberView{{"n1", 9, "aa"}, {"n2", 9, "bb"}}); len(v) != 1 {
		t.Fatalf("checkDigests(same index, other digest): got %v, want one violation", v)
	}
	a := map[string]skuRead{"x": {SKU: "x", OnHand: 3, Available: 3}}
	b := map[string]skuRead{"x": {SKU: "x", OnHand: 4, Available: 4}}
	if v := checkFinalFigures([]map[string]skuRead{a, b}, noneLower); len(v) != 1 {
		t.Fatalf("checkFinalFigures(nodes disagree): got %v, want one violation", v)
	}
}

// at builds an operation of client c from call to ret (ms).
func at(c int, call, ret int64, o op) op {
	o.Client, o.Call, o.Return = c, call*int64(time.Millisecond), ret*int64(time.Millisecond)
	return o
}

func reserveOp(id string, q int64, out outcome) op {
	o := op{Kind: opReserve, ID: id, Lines: []line{{SKU: "s", Qty: q}}, Outcome: out}
	if out == outRefused {
		o.Err = "rpc error: code = FailedPrecondition desc = insufficient stock"
	}
	return o
}

func readOp(onHand, reserved, committed int64) op {
	return op{Kind: opReadLin, Outcome: outOK, Reads: []skuRead{{SKU: "s", OnHand: onHand, Reserved: reserved, Committed: committed}}}
}

func linVerdict(t *testing.T, h []op) porcupine.CheckResult {
	t.Helper()
	r := checkLinearizable(h, []string{"s"}, 5, 10*time.Second)
	return r[0].result
}

func TestLinearizabilityCatchesBrokenHistories(t *testing.T) {
	// on hand 5 at the start.
	for _, tc := range []struct {
		name string
		h    []op
		want porcupine.CheckResult
	}{
		{name: "sequential reserve, read, release, read is legal", want: porcupine.Ok, h: []op{
			at(0, 0, 1, reserveOp("r1", 3, outOK)),
			at(1, 2, 3, readOp(5, 3, 0)),
			at(0, 4, 5, op{Kind: opRelease, ID: "r1", Lines: []line{{SKU: "s", Qty: 3}}, Outcome: outOK}),
			at(1, 6, 7, readOp(5, 0, 0)),
		}},
		{name: "two reserves that together oversell are caught (I1)", want: porcupine.Illegal, h: []op{
			at(0, 0, 1, reserveOp("r1", 3, outOK)),
			at(1, 2, 3, reserveOp("r2", 3, outOK)),
		}},
		{name: "a refusal while stock was there is caught", want: porcupine.Illegal, h: []op{
			at(0, 0, 1, reserveOp("r1", 3, outRefused)),
		}},
		{name: "a stale read served as linearizable is caught", want: porcupine.Illegal, h: []op{
			at(0, 0, 1, reserveOp("r1", 3, outOK)),
			at(1, 2, 3, readOp(5, 0, 0)),
		}},
		{name: "an unknown reserve may or may not have applied", want: porcupine.Ok, h: []op{
			at(0, 0, 1, reserveOp("r1", 3, outUnknown)),
			at(1, 2, 3, readOp(5, 0, 0)),
			at(1, 4, 5, readOp(5, 3, 0)),
		}},
		{name: "an unknown reserve seen applied then gone is caught", want: porcupine.Illegal, h: []op{
			at(0, 0, 1, reserveOp("r1", 3, outUnknown)),
			at(1, 2, 3, readOp(5, 3, 0)),
			at(1, 4, 5, readOp(5, 0, 0)),
		}},
		{name: "an older ERP version applied over a newer one is caught", want: porcupine.Illegal, h: []op{
			at(0, 0, 1, op{Kind: opSetStock, Lines: []line{{SKU: "s"}}, Version: 3, Value: 9, Outcome: outOK}),
			at(0, 2, 3, op{Kind: opSetStock, Lines: []line{{SKU: "s"}}, Version: 2, Value: 7, Outcome: outOK}),
		}},
		{name: "an adjustment applied twice is caught", want: porcupine.Illegal, h: []op{
			at(0, 0, 1, op{Kind: opAdjust, ID: "d1", Lines: []line{{SKU: "s"}}, Value: 2, Outcome: outOK}),
			at(1, 2, 3, readOp(9, 0, 0)),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := linVerdict(t, tc.h); got != tc.want {
				var b strings.Builder
				for _, o := range tc.h {
					b.WriteString(string(o.Kind) + " ")
				}
				t.Fatalf("history %s: got %v, want %v", b.String(), got, tc.want)
			}
		})
	}
}

func TestProxyCutsAndHeals(t *testing.T) {
	// Covered end to end by TestChaos; here only that a refused link
	// refuses and a healed one forwards again.
	echo := listenEcho(t)
	p, err := newProxy("test", echo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if got := roundTrip(t, p.addr()); got != "ping" {
		t.Fatalf("round trip through an up link: got %q, want ping", got)
	}
	p.set(linkRefuse, 0)
	if got := roundTrip(t, p.addr()); got != "" {
		t.Fatalf("round trip through a refused link: got %q, want nothing", got)
	}
	p.set(linkUp, 0)
	if got := roundTrip(t, p.addr()); got != "ping" {
		t.Fatalf("round trip after heal: got %q, want ping", got)
	}
}
