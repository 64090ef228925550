package bench

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

func TestMarketplace(t *testing.T) {
	c := SpawnTest(t, 1)
	ctx := testContext(t, 60*time.Second)

	t.Run("pipelined reserves are all held after the run", func(t *testing.T) {
		env := scenarioTestEnv(t, c, Options{SKUs: 50, Locations: 2, Seed: 1, Concurrency: 4, Duration: 1500 * time.Millisecond})
		m := &Marketplace{Window: 32}
		if err := m.Setup(ctx, env); err != nil {
			t.Fatalf("Setup: %v", err)
		}
		rec := newTallyRecorder()
		driveScenario(ctx, m, env, rec)
		if err := m.Verify(ctx, env); err != nil {
			t.Fatalf("Verify after %d acknowledged reserves: got %v, want nil", rec.okCount(opStreamReserve), err)
		}
		if n := rec.okCount(opStreamReserve); n == 0 {
			t.Fatalf("%s: got 0 successful, want some (errors %v)", opStreamReserve, rec.errorsOf())
		}
		if errs := rec.errorsOf(); len(errs) != 0 {
			t.Errorf("errors with ample stock: got %v, want none", errs)
		}

		t.Run("a reservation never acknowledged by the server fails Verify", func(t *testing.T) {
			// The client believes the next request of worker 0 was
			// acknowledged; it was never even sent.
			wk := m.worker(0)
			wk.mu.Lock()
			seq := uint64(len(wk.state))
			wk.sku = append(wk.sku, 0)
			wk.state = append(wk.state, mpAcked)
			wk.mu.Unlock()
			id := m.reservationID(0, seq)
			err := m.Verify(ctx, env)
			if err == nil || !strings.Contains(err.Error(), id) {
				t.Errorf("Verify with %s believed acknowledged: got %v, want an error naming it", id, err)
			}
			wk.setState(seq, mpNeverSent)
		})
		t.Run("more units acknowledged than reserved fails Verify", func(t *testing.T) {
			m.ackedUnits[0].Add(1_000_000_000_000)
			defer m.ackedUnits[0].Add(-1_000_000_000_000)
			err := m.Verify(ctx, env)
			if err == nil || !strings.Contains(err.Error(), "lost acknowledgement") || !strings.Contains(err.Error(), "oversold") {
				t.Errorf("Verify with 10^12 extra units acknowledged on %s: got %v, want lost acknowledgement and oversold", m.skus[0], err)
			}
		})
		t.Run("Verify passes again once the history is restored", func(t *testing.T) {
			if err := m.Verify(ctx, env); err != nil {
				t.Errorf("Verify: got %v, want nil", err)
			}
		})
	})

	t.Run("a sale that runs out of stock sells every unit once", func(t *testing.T) {
		env := scenarioTestEnv(t, c, Options{SKUs: 3, Locations: 1, Seed: 2, Concurrency: 3, Duration: time.Second})
		const onHand = 40
		m := &Marketplace{Window: 16, OnHand: onHand}
		if err := m.Setup(ctx, env); err != nil {
			t.Fatalf("Setup: %v", err)
		}
		rec := newTallyRecorder()
		driveScenario(ctx, m, env, rec)
		if err := m.Verify(ctx, env); err != nil {
			t.Fatalf("Verify: got %v, want nil", err)
		}
		if got, want := rec.okCount(opStreamReserve), 3*onHand; got != want {
			t.Errorf("acknowledged reserves of 3 SKUs x %d units: got %d, want %d (errors %v)", onHand, got, want, rec.errorsOf())
		}
		if rec.errCount(opStreamReserve, codes.FailedPrecondition) == 0 {
			t.Errorf("refusals once sold out: got 0, want some")
		}
		var acked float64
		for _, f := range m.Summary(nil) {
			if f.Name == "reserves acknowledged" {
				acked = f.Value
			}
		}
		if acked != 3*onHand {
			t.Errorf("Summary's reserves acknowledged: got %v, want %d", acked, 3*onHand)
		}
	})
}
