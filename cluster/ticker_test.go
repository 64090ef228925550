package cluster

import (
	"testing"
	"time"

	"github.com/stockd/stockd/store"
)

func TestHoldsExpireWithoutTraffic(t *testing.T) {
	clk := newFakeClock()
	cfg := testConfig(t)
	cfg.Clock = clk.Now
	n := startNode(t, cfg)
	seed(t, n, 10)
	res := propose(t, n, reserve("web", "short", "ROSE", 4, time.Second))
	if res.Err != nil || res.Reservation == nil {
		t.Fatalf("reserve 4 with a 1s TTL: %+v, want a hold", res)
	}
	deadline, ok := n.machine.NextDeadline()
	if want := store.Timestamp(clk.Now().Add(time.Second).UnixNano()); !ok || deadline != want {
		t.Fatalf("NextDeadline() after a 1s hold = (%d, %v), want (%d, true)", deadline, ok, want)
	}
	before := n.Stats()

	clk.Advance(2 * time.Second)
	waitApplied(t, n, "the hold to expire", func() bool {
		r, err := n.machine.Reservation("web", "short")
		return err == nil && r.State == store.StateExpired
	})
	if after := n.Stats(); after.Commands <= before.Commands {
		t.Fatalf("Stats after expiry = %+v, before %+v: want the ticker's Tick counted", after, before)
	}
	if _, ok := n.machine.NextDeadline(); ok {
		t.Fatalf("NextDeadline() after the only hold expired: ok, want none")
	}
	// The units are free again.
	if res := propose(t, n, reserve("web", "all", "ROSE", 10, 0)); res.Err != nil {
		t.Fatalf("reserve all 10 after the hold of 4 expired: refused: %v", res.Err)
	}
}
