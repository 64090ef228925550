package bench

import (
	"strings"
	"testing"
	"time"
)

func TestERPStorm(t *testing.T) {
	c := SpawnTest(t, 1)
	ctx := testContext(t, 60*time.Second)
	env := scenarioTestEnv(t, c, Options{SKUs: 150, Locations: 2, Seed: 1, Concurrency: 2, Duration: 1500 * time.Millisecond})
	e := &ERPStorm{BatchRows: 100, Window: 8}
	if err := e.Setup(ctx, env); err != nil {
		t.Fatalf("Setup: %v", err)
	}
	rec := newTallyRecorder()
	driveScenario(ctx, e, env, rec)
	if err := e.Verify(ctx, env); err != nil {
		t.Fatalf("Verify after %d batches: got %v, want nil", rec.okCount("push-100"), err)
	}
	if rec.okCount("push-100") == 0 || rec.okCount("get-1") == 0 {
		t.Fatalf("ops: got %d push-100 and %d get-1 successful, want some of each (errors %v)",
			rec.okCount("push-100"), rec.okCount("get-1"), rec.errorsOf())
	}
	if errs := rec.errorsOf(); len(errs) != 0 {
		t.Errorf("errors: got %v, want none", errs)
	}
	rows := e.pusher.rows.Load()
	if rows != int64(rec.okCount("push-100"))*100 {
		t.Errorf("rows acknowledged: got %d, want %d batches x 100", rows, rec.okCount("push-100"))
	}
	t.Logf("%d rows pushed (%d rounds over %d counters), %d reads", rows, rows/300, 300, rec.okCount("get-1"))

	t.Run("a counter believed sent another count fails Verify", func(t *testing.T) {
		// Counter 7 was last sent round r; the client now believes round
		// r+1 was sent and acknowledged, which stockd never saw.
		r := e.sentRound[7].Load()
		e.sentRound[7].Store(r + 1)
		e.ackedRound[7].Store(r + 1)
		err := e.Verify(ctx, env)
		e.sentRound[7].Store(r)
		e.ackedRound[7].Store(r)
		key := e.items[7/2] + "@" + e.locs[7%2]
		if err == nil || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "lost acknowledgement") {
			t.Errorf("Verify with round %d of %s believed acknowledged: got %v, want a lost acknowledgement of it", r+1, key, err)
		}
	})
	t.Run("a count other than the one sent with its version fails the check", func(t *testing.T) {
		r := e.ackedRound[7].Load()
		version := e.base + uint64(r)
		if err := e.checkCounter(7, erpStormCount(7, r)+1, version); err == nil {
			t.Errorf("checkCounter(7, count+1, %d): got nil, want an error", version)
		}
		if err := e.checkCounter(7, erpStormCount(7, r), version); err != nil {
			t.Errorf("checkCounter(7, count, %d): got %v, want nil", version, err)
		}
	})
	t.Run("Verify passes again once the ledger is restored", func(t *testing.T) {
		if err := e.Verify(ctx, env); err != nil {
			t.Errorf("Verify: got %v, want nil", err)
		}
	})
}
