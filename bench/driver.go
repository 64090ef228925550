package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// RunConfig says how the driver paces a scenario (the flags of
// cmd/stockbench that scenarios do not read).
type RunConfig struct {
	// Rate is the fixed arrival rate in operations per second (open loop,
	// --rate); 0 runs a closed loop of Options.Concurrency workers back to
	// back. In an open loop at most Options.Concurrency operations are in
	// flight: an arrival that finds every worker busy is not sent and counts
	// as dropped.
	Rate float64
	// Warmup runs the load this long before the measured phase; what it
	// records is thrown away.
	Warmup time.Duration
	// Interval is the time series' and progress line's period; default 1 s.
	Interval time.Duration
	// Progress receives a live line per interval; nil prints nothing.
	Progress io.Writer
	// ProgressOverwrite redraws the line in place ("\r", for a terminal)
	// instead of printing one line per interval.
	ProgressOverwrite bool
}

// Mode names for ScenarioResult.Mode.
const (
	ModeClosed = "closed"
	ModeOpen   = "open"
	ModeRunner = "runner"
)

// VerifyResult is the outcome of a scenario's Verify.
type VerifyResult struct {
	// Ran is false when the scenario was skipped or failed before Verify.
	Ran    bool   `json:"ran"`
	Passed bool   `json:"passed"`
	Error  string `json:"error,omitempty"`
}

// Figure is a scenario's own figure for the report (flash-sale's accepted
// and refused carts, storefront's SKU reads per second).
type Figure struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit,omitempty"`
}

// Summarizer is a Scenario with figures of its own, asked once after Verify
// with the scenario's result so far.
type Summarizer interface {
	Summary(res *ScenarioResult) []Figure
}

// ScenarioResult is what one scenario run produced.
type ScenarioResult struct {
	Name string `json:"name"`
	// Skipped gives the reason a scenario did not run (Unavailable).
	Skipped string `json:"skipped,omitempty"`
	// Error is a failed Setup or Run; the scenario's figures are then partial.
	Error       string  `json:"error,omitempty"`
	Mode        string  `json:"mode"`
	Concurrency int     `json:"concurrency"`
	Rate        float64 `json:"rate,omitempty"`
	WarmupS     float64 `json:"warmup_s,omitempty"`
	// ElapsedS is the measured phase, from its start until the last
	// operation finished.
	ElapsedS float64 `json:"elapsed_s"`
	// Dropped counts open-loop arrivals not sent because Concurrency
	// operations were already in flight.
	Dropped int64      `json:"dropped"`
	Ops     []OpResult `json:"ops"`
	Total   OpResult   `json:"total"`
	// FloorRatio is Total.OpsPerSec over the floor scenario's in the same
	// run (0 when no floor ran).
	FloorRatio float64 `json:"floor_ratio,omitempty"`
	// Writes says where the scenario's reservation writes went (--writes):
	// "leader ADDR", or "any node" (with the reason when leader was asked
	// for). Empty on one node and for scenarios that reserve nothing.
	Writes  string       `json:"writes,omitempty"`
	Series  []Point      `json:"series,omitempty"`
	Verify  VerifyResult `json:"verify"`
	Figures []Figure     `json:"figures,omitempty"`
}

// Failed reports whether the scenario failed (not skipped): its setup or run
// broke, or Verify found a violation.
func (r *ScenarioResult) Failed() bool {
	return r.Error != "" || (r.Verify.Ran && !r.Verify.Passed)
}

// Op returns the result of operation op, or nil.
func (r *ScenarioResult) Op(op string) *OpResult {
	for i := range r.Ops {
		if r.Ops[i].Op == op {
			return &r.Ops[i]
		}
	}
	return nil
}

// RunScenario sets sc up, drives it as cfg says for env.Opts.Duration (a
// Runner drives itself), verifies it and returns the result. An Unavailable
// setup gives a skipped result; ctx ending (Ctrl-C) stops the load early and
// the result says so in Error.
func RunScenario(ctx context.Context, sc Scenario, env *Env, cfg RunConfig) ScenarioResult {
	res := ScenarioResult{Name: sc.Name(), Concurrency: env.Opts.Concurrency}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	learning := false
	if _, ok := sc.(reservationWriter); ok {
		res.Writes = findLeader(ctx, env)
		learning = env.learningLeader()
	}
	if err := sc.Setup(ctx, env); err != nil {
		if u, ok := errors.AsType[Unavailable](err); ok {
			res.Skipped = u.Reason
			return res
		}
		res.Error = fmt.Sprintf("setup: %v", err)
		return res
	}
	rec := NewRecording()
	var (
		elapsed time.Duration
		dropped int64
		runErr  error
	)
	stopProgress := startProgress(sc.Name(), rec, cfg)
	if r, ok := sc.(Runner); ok {
		res.Mode = ModeRunner
		start := time.Now()
		runErr = r.Run(ctx, env, rec)
		elapsed = time.Since(start)
	} else if cfg.Rate > 0 {
		res.Mode, res.Rate = ModeOpen, cfg.Rate
		elapsed, dropped = openLoop(ctx, sc, env, rec, cfg)
	} else {
		res.Mode = ModeClosed
		elapsed = closedLoop(ctx, sc, env, rec, cfg)
	}
	res.Series = stopProgress()
	if learning {
		res.Writes += env.learntNote()
	}
	res.WarmupS = cfg.Warmup.Seconds()
	if res.Mode == ModeRunner {
		res.WarmupS = 0
	}
	res.ElapsedS = elapsed.Seconds()
	res.Dropped = dropped
	res.Ops, res.Total = rec.Results(elapsed)
	switch {
	case runErr != nil:
		res.Error = fmt.Sprintf("run: %v", runErr)
	case ctx.Err() != nil:
		res.Error = fmt.Sprintf("interrupted: %v", context.Cause(ctx))
	}
	if res.Error == "" {
		res.Verify.Ran = true
		if err := sc.Verify(ctx, env); err != nil {
			res.Verify.Error = err.Error()
		} else {
			res.Verify.Passed = true
		}
	}
	if s, ok := sc.(Summarizer); ok {
		res.Figures = s.Summary(&res)
	}
	return res
}

// workerRand is worker w's random source: a function of the seed and w only.
func workerRand(seed uint64, w int) *rand.Rand {
	return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15^uint64(w)))
}

// closedLoop runs Concurrency workers back to back through the warm-up and
// the measured phase, and returns the measured phase's length.
func closedLoop(ctx context.Context, sc Scenario, env *Env, rec *Recording, cfg RunConfig) time.Duration {
	t0 := time.Now()
	measured := t0.Add(cfg.Warmup)
	end := measured.Add(env.Opts.Duration)
	warm := cfg.Warmup > 0
	var resetOnce sync.Once
	var wg sync.WaitGroup
	for w := range max(env.Opts.Concurrency, 1) {
		wg.Go(func() {
			rnd := workerRand(env.Opts.Seed, w)
			for ctx.Err() == nil {
				now := time.Now()
				if !now.Before(end) {
					return
				}
				if warm && !now.Before(measured) {
					resetOnce.Do(rec.Reset)
				}
				sc.Do(ctx, env, w, rnd, rec)
			}
		})
	}
	if warm {
		waitUntil(ctx, measured)
		resetOnce.Do(rec.Reset)
	}
	wg.Wait()
	return time.Since(measured)
}

// openLoop sends operations at cfg.Rate from t0 on: arrival i is due at
// t0 + i/Rate, handed to an idle worker or dropped when none is idle. The
// first call each operation records counts from its due time, not from when
// it started, so a slow server shows in the latency (no coordinated
// omission). It returns the measured phase's length and the arrivals dropped
// in it.
func openLoop(ctx context.Context, sc Scenario, env *Env, rec *Recording, cfg RunConfig) (time.Duration, int64) {
	work := make(chan time.Time) // unbuffered: a send succeeds only to an idle worker
	var wg sync.WaitGroup
	for w := range max(env.Opts.Concurrency, 1) {
		wg.Go(func() {
			rnd := workerRand(env.Opts.Seed, w)
			for due := range work {
				sc.Do(ctx, env, w, rnd, &lateRecorder{rec: rec, late: time.Since(due)})
			}
		})
	}
	t0 := time.Now()
	measured := t0.Add(cfg.Warmup)
	end := measured.Add(env.Opts.Duration)
	interval := float64(time.Second) / cfg.Rate
	var dropped int64
	reset := cfg.Warmup <= 0
	timer := time.NewTimer(0)
	defer timer.Stop()
	// Every arrival due before end is either handed to a worker or counted
	// as dropped, even when this goroutine wakes late (a starved ticker
	// must not make arrivals vanish).
	for i := int64(0); ctx.Err() == nil; {
		now := time.Now()
		if !reset && !now.Before(measured) {
			rec.Reset()
			dropped, reset = 0, true
		}
		due := t0.Add(time.Duration(float64(i) * interval))
		for ; !due.After(now) && due.Before(end); i++ {
			select {
			case work <- due:
			default:
				dropped++
			}
			due = t0.Add(time.Duration(float64(i+1) * interval))
		}
		if !due.Before(end) {
			break
		}
		timer.Reset(due.Sub(now))
		select {
		case <-ctx.Done():
		case <-timer.C:
		}
	}
	close(work)
	wg.Wait()
	return time.Since(measured), dropped
}

// lateRecorder adds the time an open-loop arrival waited past its due time
// to the first call its operation records.
type lateRecorder struct {
	rec  Recorder
	late time.Duration
	used atomic.Bool
}

func (l *lateRecorder) Record(op string, d time.Duration, err error) {
	if !l.used.Swap(true) {
		d += l.late
	}
	l.rec.Record(op, d, err)
}

// waitUntil returns at t or when ctx ends.
func waitUntil(ctx context.Context, t time.Time) {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
}

// startProgress rolls rec every cfg.Interval into the total series, printing
// a progress line, until the returned stop is called; stop rolls the last
// partial interval and returns the series.
func startProgress(name string, rec *Recording, cfg RunConfig) func() []Point {
	done := make(chan struct{})
	var series []Point
	var mu sync.Mutex
	last := time.Now()
	gen := 0
	roll := func(now time.Time, final bool) {
		mu.Lock()
		defer mu.Unlock()
		span := now.Sub(last)
		if final && span < cfg.Interval/4 {
			return // a sliver after the last full interval: its rate would be noise
		}
		p, g := rec.Roll(now, span)
		last = now
		if g != gen { // the warm-up ended: its points are not part of the measured phase
			series, gen = nil, g
		}
		series = append(series, p)
		if cfg.Progress != nil {
			line := fmt.Sprintf("%-12s %6.1fs %10.0f ops/s  p50 %7.2f ms  p99 %7.2f ms  errors %d",
				name, p.At, p.OpsPerSec, p.P50Ms, p.P99Ms, p.Errors)
			if cfg.ProgressOverwrite {
				fmt.Fprintf(cfg.Progress, "\r\033[K%s", line)
			} else {
				fmt.Fprintln(cfg.Progress, line)
			}
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(cfg.Interval)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				roll(now, false)
			}
		}
	})
	return func() []Point {
		close(done)
		wg.Wait()
		roll(time.Now(), true)
		if cfg.Progress != nil && cfg.ProgressOverwrite {
			fmt.Fprintln(cfg.Progress)
		}
		mu.Lock()
		defer mu.Unlock()
		return series
	}
}
