package bench

import (
	"strings"
	"testing"
	"time"
)

// runWatch sets up and runs wt against c and checks that it measured
// events and verifies.
func runWatch(t *testing.T, c *Cluster, wt *Watch, opts Options) (*Env, *tallyRecorder) {
	t.Helper()
	ctx := testContext(t, 60*time.Second)
	env := scenarioTestEnv(t, c, opts)
	if err := wt.Setup(ctx, env); err != nil {
		t.Fatalf("Setup: %v", err)
	}
	rec := newTallyRecorder()
	if err := wt.Run(ctx, env, rec); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := wt.Verify(ctx, env); err != nil {
		t.Fatalf("Verify after %d changes: got %v, want nil", wt.changes, err)
	}
	if rec.okCount("watch-event") == 0 || rec.okCount("set-stock") == 0 {
		t.Fatalf("ops: got %d watch-event and %d set-stock, want some of each (errors %v)",
			rec.okCount("watch-event"), rec.okCount("set-stock"), rec.errorsOf())
	}
	if errs := rec.errorsOf(); len(errs) != 0 {
		t.Errorf("errors: got %v, want none", errs)
	}
	return env, rec
}

func TestWatch(t *testing.T) {
	c := SpawnTest(t, 1)
	wt := &Watch{Watchers: 8, Rate: 100, SettleTimeout: 5 * time.Second}
	env, rec := runWatch(t, c, wt, Options{SKUs: 20, Seed: 1, Duration: 1500 * time.Millisecond})
	t.Logf("%d changes, %d events measured", wt.changes, rec.okCount("watch-event"))

	t.Run("a final count no watcher saw fails Verify", func(t *testing.T) {
		ctx := testContext(t, 10*time.Second)
		wt.final[3]++
		err := wt.Verify(ctx, env)
		wt.final[3]--
		if err == nil || !strings.Contains(err.Error(), "watcher") || !strings.Contains(err.Error(), wt.items[3]) {
			t.Errorf("Verify expecting %s at %d: got %v, want watchers that missed it", wt.items[3], wt.final[3]+1, err)
		}
	})
	t.Run("Verify passes again once the expectation is restored", func(t *testing.T) {
		if err := wt.Verify(testContext(t, 10*time.Second), env); err != nil {
			t.Errorf("Verify: got %v, want nil", err)
		}
	})
}

func TestWatchOnThreeNodesMeasuresFollowers(t *testing.T) {
	c := SpawnTest(t, 3)
	wt := &Watch{Watchers: 6, Rate: 50, SettleTimeout: 5 * time.Second}
	runWatch(t, c, wt, Options{SKUs: 10, Seed: 1, Duration: time.Second})
	nodes := map[string]bool{}
	for _, f := range wt.Summary(nil) {
		if strings.HasPrefix(f.Name, "watch-event p99 on node ") && f.Value > 0 {
			nodes[f.Name] = true
		}
	}
	if len(nodes) != 3 {
		t.Errorf("per-node watch-event p99 figures: got %v, want one for each of 3 nodes", nodes)
	}
}
