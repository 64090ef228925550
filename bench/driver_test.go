package bench

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// slowScenario takes d per operation without a server; every third
// operation fails with UNAVAILABLE.
type slowScenario struct {
	d time.Duration
	n atomic.Int64
}

func (*slowScenario) Name() string                       { return "slow" }
func (*slowScenario) Setup(context.Context, *Env) error  { return nil }
func (*slowScenario) Verify(context.Context, *Env) error { return nil }
func (s *slowScenario) Do(ctx context.Context, _ *Env, _ int, _ *rand.Rand, rec Recorder) {
	start := time.Now()
	time.Sleep(s.d) // the operation's work: what the driver paces, not synchronisation
	var err error
	if s.n.Add(1)%3 == 0 {
		err = status.Error(codes.Unavailable, "no leader")
	}
	rec.Record("op", time.Since(start), err)
}

func TestClosedLoopRunsWorkersBackToBack(t *testing.T) {
	env := &Env{Opts: Options{Concurrency: 4, Duration: 500 * time.Millisecond}}
	res := RunScenario(context.Background(), &slowScenario{d: 10 * time.Millisecond}, env, RunConfig{Interval: 100 * time.Millisecond})
	o := res.Op("op")
	if o == nil {
		t.Fatalf("closed loop of 4 x 10 ms ops for 0.5 s: got ops %v, want op", res.Ops)
	}
	// 4 workers x 50 ops each at most; allow for a slow, shared machine.
	if o.Count < 40 || o.Count > 210 {
		t.Errorf("closed loop of 4 x 10 ms ops for 0.5 s: got %d ops, want 40 to 210", o.Count)
	}
	if o.P50Ms < 10 {
		t.Errorf("closed loop of 10 ms ops: got p50 %.3f ms, want >= 10", o.P50Ms)
	}
	if got, want := o.ErrorsByCode["UNAVAILABLE"], o.Count/3; got < want-4 || got > want+4 {
		t.Errorf("every third op failing: got UNAVAILABLE %d of %d, want about %d", got, o.Count, want)
	}
	if res.Mode != ModeClosed || !res.Verify.Ran || !res.Verify.Passed || len(res.Series) < 3 {
		t.Errorf("closed loop result: got mode %q, verify %+v, %d points, want closed, passed, >= 3 points", res.Mode, res.Verify, len(res.Series))
	}
}

// An open loop faster than its workers can serve drops the excess arrivals
// and counts, in the latency, the time an arrival waited past its due time.
func TestOpenLoopDropsArrivalsPastConcurrency(t *testing.T) {
	env := &Env{Opts: Options{Concurrency: 2, Duration: 500 * time.Millisecond}}
	// 2 workers of 20 ms serve 100/s; 400/s arrive.
	res := RunScenario(context.Background(), &slowScenario{d: 20 * time.Millisecond}, env, RunConfig{Rate: 400, Interval: 100 * time.Millisecond})
	o := res.Op("op")
	if o == nil || res.Mode != ModeOpen {
		t.Fatalf("open loop at 400/s: got mode %q, ops %v, want open with op", res.Mode, res.Ops)
	}
	if res.Dropped < 50 {
		t.Errorf("open loop of 400/s on 2 workers of 20 ms for 0.5 s: got %d dropped, want >= 50 (about 150)", res.Dropped)
	}
	// Arrivals are due every 2.5 ms from 0 to 497.5 ms: 200 of them, each
	// sent or dropped, however late the arrival goroutine wakes.
	if o.Count+res.Dropped != 200 {
		t.Errorf("open loop of 400/s for 0.5 s: got %d sent + %d dropped, want 200", o.Count, res.Dropped)
	}
}

func TestOpenLoopMeasuresFromTheDueTime(t *testing.T) {
	rec := NewRecording()
	l := &lateRecorder{rec: rec, late: 30 * time.Millisecond}
	l.Record("a", time.Millisecond, nil)
	l.Record("b", time.Millisecond, nil) // a follow-up call: its own time only
	ops, _ := rec.Results(time.Second)
	if len(ops) != 2 || ops[0].MaxMs < 30 || ops[1].MaxMs > 2 {
		t.Fatalf("late 30 ms, then two 1 ms calls: got %+v, want a >= 31 ms and b 1 ms", ops)
	}
}

func TestRecordingCountsErrorsByCode(t *testing.T) {
	rec := NewRecording()
	rec.Record("x", time.Millisecond, nil)
	rec.Record("x", 2*time.Millisecond, status.Error(codes.FailedPrecondition, "short"))
	rec.Record("x", 3*time.Millisecond, context.DeadlineExceeded)
	ops, total := rec.Results(time.Second)
	if len(ops) != 1 || ops[0].Count != 3 || ops[0].Errors != 2 ||
		ops[0].ErrorsByCode["FAILED_PRECONDITION"] != 1 || ops[0].ErrorsByCode["DEADLINE_EXCEEDED"] != 1 {
		t.Fatalf("3 calls, 2 failed: got %+v, want count 3, FAILED_PRECONDITION 1, DEADLINE_EXCEEDED 1", ops)
	}
	if total.Count != 3 || total.OKPerSec != 1 || total.MaxMs < 2.9 || total.MaxMs > 3.1 {
		t.Errorf("total of 3 calls over 1 s, 1 ok: got %+v, want count 3, ok 1/s, max 3 ms", total)
	}
}
