package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// suiteFixture returns results of the quick suite whose reports hold the
// given scenario results, by step ID, after a floor of floorOKPerSec calls/s
// with p99 floorP99Ms.
func suiteFixture(floorOKPerSec, floorP99Ms float64, runs map[string]ScenarioResult) *SuiteResults {
	r := &SuiteResults{Suite: NewSuite(true), StartedAt: time.Now(), Machine: ThisMachine(), Command: []string{"stockbench", "suite"}}
	for _, step := range r.Suite.Steps {
		s, ok := runs[step.ID]
		if !ok {
			continue
		}
		floor := ScenarioResult{Name: "floor", Mode: ModeClosed, Verify: VerifyResult{Ran: true, Passed: true},
			Ops: []OpResult{{Op: "health", Count: 1000, OpsPerSec: floorOKPerSec, OKPerSec: floorOKPerSec, P99Ms: floorP99Ms}}}
		rep := &Report{Scenarios: []ScenarioResult{floor, s}}
		rep.SetFloorRatios()
		r.Runs = append(r.Runs, SuiteRun{Step: step, Report: rep, Plot: step.ID + ".svg"})
	}
	return r
}

func storefrontResult(op string, okPerSec, p99Ms float64) ScenarioResult {
	return ScenarioResult{Name: "storefront", Mode: ModeClosed, Verify: VerifyResult{Ran: true, Passed: true},
		Ops: []OpResult{{Op: op, Count: 1000, OpsPerSec: okPerSec, OKPerSec: okPerSec, P99Ms: p99Ms}}}
}

func checkoutResult(reservePerSec, confirmPerSec, p99Ms float64) ScenarioResult {
	s := ScenarioResult{Name: "checkout", Mode: ModeClosed, Verify: VerifyResult{Ran: true, Passed: true},
		Ops: []OpResult{
			{Op: "confirm", Count: 700, OKPerSec: confirmPerSec},
			{Op: "reserve", Count: 1000, OKPerSec: reservePerSec},
		},
		Total: OpResult{Op: "total", Count: 1700, P99Ms: p99Ms}}
	return s
}

func flashSaleResult(passed bool, sold, stock float64) ScenarioResult {
	s := ScenarioResult{Name: "flash-sale", Mode: ModeClosed, Verify: VerifyResult{Ran: true, Passed: passed},
		Ops:     []OpResult{{Op: "reserve", Count: 1000}},
		Figures: []Figure{{Name: "units sold", Value: sold}, {Name: "units in stock", Value: stock}}}
	if !passed {
		s.Verify.Error = "oversold"
	}
	return s
}

func TestSuiteTargetsAreJudgedFromTheFigures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		floor  float64 // floor calls/s; its p99 is 1 ms
		step   string
		result ScenarioResult
		target string
		want   Verdict
	}{
		{"storefront at 80% of the floor meets it", 10_000, stepStorefront64, storefrontResult("get-1", 8_000, 1), TargetStorefrontThroughput, Met},
		{"storefront at 79.9% of the floor misses it", 10_000, stepStorefront64, storefrontResult("get-1", 7_990, 1), TargetStorefrontThroughput, NotMet},
		{"p99 0.2 ms over the floor's meets it", 10_000, stepStorefront4, storefrontResult("get-1", 5_000, 1.2), TargetStorefrontLatency, Met},
		{"p99 0.201 ms over the floor's misses it", 10_000, stepStorefront4, storefrontResult("get-1", 5_000, 1.201), TargetStorefrontLatency, NotMet},
		{"10,000 batches of 100 a second meet 1M SKU reads", 20_000, stepStorefront100, storefrontResult("get-100", 10_000, 5), TargetStorefrontBatch100, Met},
		{"9,999 batches of 100 a second miss it", 20_000, stepStorefront100, storefrontResult("get-100", 9_999, 5), TargetStorefrontBatch100, NotMet},
		{"8,000 writes/s at p99 24.9 ms meet checkout's", 20_000, stepCheckout, checkoutResult(5_000, 3_000, 24.9), TargetCheckout, Met},
		{"p99 of exactly 25 ms misses checkout's", 20_000, stepCheckout, checkoutResult(5_000, 3_000, 25), TargetCheckout, NotMet},
		{"7,999 writes/s miss checkout's", 20_000, stepCheckout, checkoutResult(5_000, 2_999, 10), TargetCheckout, NotMet},
		{"flash-sale sold out and verified meets it", 20_000, stepFlashSaleOne, flashSaleResult(true, 300, 300), TargetFlashSaleOneNode, Met},
		{"flash-sale short of sell-out misses it", 20_000, stepFlashSaleThree, flashSaleResult(true, 299, 300), TargetFlashSaleThreeNodes, NotMet},
		{"flash-sale that failed verify misses it", 20_000, stepFlashSaleThree, flashSaleResult(false, 300, 300), TargetFlashSaleThreeNodes, NotMet},
		{"a skipped scenario is not measured", 20_000, stepCheckout, ScenarioResult{Name: "checkout", Skipped: "no Reserve"}, TargetCheckout, NotMeasured},
		{"a run that did not run is not measured", 20_000, stepStorefront4, storefrontResult("get-1", 1, 1), TargetStorefrontThroughput, NotMeasured},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := suiteFixture(tc.floor, 1, map[string]ScenarioResult{tc.step: tc.result})
			var got *TargetCheck
			for _, c := range r.Targets() {
				if c.Target == tc.target {
					got = &c
				}
			}
			if got == nil {
				t.Fatalf("Targets() of %s: got no %q", tc.step, tc.target)
			}
			if got.Verdict != tc.want {
				t.Errorf("%s in %s: got %q (%s), want %q", tc.target, tc.step, got.Verdict, got.Measured, tc.want)
			}
		})
	}
}

func TestSuiteMarkdownHasTargetsRunsAndPlots(t *testing.T) {
	r := suiteFixture(10_000, 1, map[string]ScenarioResult{
		stepStorefront64: storefrontResult("get-1", 9_000, 2),
		stepCheckout:     {Name: "checkout", Skipped: "cluster | lacks Reserve"},
	})
	var b bytes.Buffer
	if err := r.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"| " + TargetStorefrontThroughput + " | >= 80% of floor | 90% of floor (9,000 vs 10,000 successful calls/s) | **met** |",
		"| " + TargetCheckout + " | >= 8,000 writes/s with p99 < 25 ms | checkout skipped: cluster \\| lacks Reserve | not measured |",
		"| " + TargetFlashSaleOneNode + " | zero oversell, exact sell-out | the run did not run | not measured |",
		"[1. storefront, batch 1, 64 callers](#1-1-node-storefront-batch-1-64-callers)",
		"### 1. 1 node: storefront, batch 1, 64 callers",
		"[" + stepStorefront64 + ".svg](" + stepStorefront64 + ".svg)",
		"| storefront | get-1 | 1000 | 9000 |",
		"| checkout | skipped: cluster \\| lacks Reserve |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("WriteMarkdown: got\n%s\nwant it to contain %q", md, want)
		}
	}
}

func TestThousands(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999.4: "999", 999.5: "1,000", 1_234_567.8: "1,234,568", -1234: "-1,234"} {
		if got := thousands(in); got != want {
			t.Errorf("thousands(%v): got %q, want %q", in, got, want)
		}
	}
}

// The suite's floors are capped at suiteFloorDuration, passed to each run's
// stockbench, and the whole load fits the "about 3 minutes" with
// setup on top.
func TestSuiteFloorsAreCapped(t *testing.T) {
	su := NewSuite(false)
	var load time.Duration
	for _, s := range su.Steps {
		if want := min(s.Duration, suiteFloorDuration); s.FloorDuration != want {
			t.Errorf("%s: floor %s, want %s", s.ID, s.FloorDuration, want)
		}
		args := strings.Join(s.Args(), " ")
		hasFlag := strings.Contains(args, "--floor-duration "+s.FloorDuration.String())
		if hasFlag != (s.FloorDuration != s.Duration) {
			t.Errorf("%s: args %q: --floor-duration given %v, want %v", s.ID, args, hasFlag, s.FloorDuration != s.Duration)
		}
		load += s.FloorDuration
		if s.BackfillRows == 0 {
			load += s.Duration
		}
	}
	if got := su.Planned(); got != load {
		t.Errorf("Planned: got %s, want %s", got, load)
	}
	if load > 150*time.Second {
		t.Errorf("planned load %s, want at most 2m30s (the suite should take about 3 minutes with setup)", load)
	}
}
