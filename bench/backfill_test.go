package bench

import (
	"strings"
	"testing"
	"time"
)

func TestBackfill(t *testing.T) {
	c := SpawnTest(t, 1)
	ctx := testContext(t, 60*time.Second)
	env := scenarioTestEnv(t, c, Options{Locations: 3, Seed: 1, Concurrency: 1})
	b := &Backfill{Rows: 25_000, ChunkRows: 4_000}
	if err := b.Setup(ctx, env); err != nil {
		t.Fatalf("Setup: %v", err)
	}
	rec := newTallyRecorder()
	if err := b.Run(ctx, env, rec); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := b.Verify(ctx, env); err != nil {
		t.Fatalf("Verify: got %v, want nil", err)
	}
	for op, want := range map[string]int{"backfill": 1, "backfill-commit": 1, "backfill-chunk": 7} {
		if got := rec.okCount(op); got != want {
			t.Errorf("%s: got %d successful, want %d (errors %v)", op, got, want, rec.errorsOf())
		}
	}
	figs := map[string]float64{}
	for _, f := range b.Summary(nil) {
		figs[f.Name] = f.Value
	}
	if figs["rows loaded"] != 25_000 || figs["load rate"] <= 0 {
		t.Errorf("Summary: got %v, want 25000 rows loaded at a positive rate", figs)
	}
	t.Logf("Summary: %v", figs)

	t.Run("counters other than the generation's fail the check", func(t *testing.T) {
		errs := b.checkCounters(ctx, env, b.salt+1)
		if len(errs) == 0 || !strings.Contains(errs[0].Error(), "backfill-") {
			t.Errorf("checkCounters with another salt: got %v, want errors naming counters", errs)
		}
	})
	t.Run("a generation larger than the one loaded fails the check", func(t *testing.T) {
		b.Rows += 3
		errs := b.checkCounters(ctx, env, b.salt)
		b.Rows -= 3
		if len(errs) == 0 || !strings.Contains(errs[len(errs)-1].Error(), "missing") {
			t.Errorf("checkCounters of 3 rows never sent: got %v, want a missing counter", errs)
		}
	})
	t.Run("a second run replaces the first", func(t *testing.T) {
		b2 := &Backfill{Rows: 10_000}
		if err := b2.Setup(ctx, env); err != nil {
			t.Fatalf("Setup: %v", err)
		}
		if err := b2.Run(ctx, env, newTallyRecorder()); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if err := b2.Verify(ctx, env); err != nil {
			t.Errorf("Verify of the second generation: got %v, want nil", err)
		}
	})
}
