package bench

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Verdict says whether a suite run reached a target.
type Verdict string

// Verdicts.
const (
	Met    Verdict = "met"
	NotMet Verdict = "not met"
	// NotMeasured is a target whose run did not run, was skipped or broke
	// before it measured what the target needs.
	NotMeasured Verdict = "not measured"
)

// The targets, as RESULTS.md names them.
const (
	TargetStorefrontThroughput = "storefront, batch 1, 1 node, 64 callers: throughput"
	TargetStorefrontLatency    = "storefront, batch 1, 1 node, 4 callers: p99"
	TargetStorefrontBatch100   = "storefront, batch 100, 1 node, 64 callers: SKU reads"
	TargetCheckout             = "checkout, 3 nodes, 64 callers: reservation writes"
	TargetFlashSaleOneNode     = "flash-sale, 1 node"
	TargetFlashSaleThreeNodes  = "flash-sale, 3 nodes"
)

// Targets' thresholds, from the issue.
const (
	storefrontFloorShareMin   = 0.80
	storefrontP99OverFloorMs  = 0.2
	storefrontSKUReadsMin     = 1_000_000
	checkoutWritesPerSecMin   = 8_000
	checkoutP99MsBelow        = 25.0
	storefrontBatch100Op      = "get-100"
	storefrontBatch1Op        = "get-1"
	floorOp                   = "health"
	flashSaleUnitsSoldFigure  = "units sold"
	flashSaleUnitsStockFigure = "units in stock"
)

// TargetCheck is one of the targets judged against what the suite
// measured.
type TargetCheck struct {
	Target   string
	Want     string
	Measured string
	Verdict  Verdict
}

// Targets judges each of the targets from the runs' figures, in the
// issue's order.
func (r *SuiteResults) Targets() []TargetCheck {
	return []TargetCheck{
		r.storefrontThroughput(),
		r.storefrontLatency(),
		r.storefrontBatch100(),
		r.checkout(),
		r.flashSale(TargetFlashSaleOneNode, stepFlashSaleOne),
		r.flashSale(TargetFlashSaleThreeNodes, stepFlashSaleThree),
	}
}

func (r *SuiteResults) storefrontThroughput() TargetCheck {
	tc := TargetCheck{Target: TargetStorefrontThroughput, Want: fmt.Sprintf(">= %.0f%% of floor", storefrontFloorShareMin*100)}
	rep := r.report(stepStorefront64)
	sf, why := measuredOp(rep, "storefront", storefrontBatch1Op)
	if sf == nil {
		return tc.notMeasured(why)
	}
	fl, why := measuredOp(rep, "floor", floorOp)
	if fl == nil || fl.OKPerSec <= 0 {
		return tc.notMeasured(why)
	}
	share := sf.OKPerSec / fl.OKPerSec
	tc.Measured = fmt.Sprintf("%.0f%% of floor (%s vs %s successful calls/s)%s",
		share*100, thousands(sf.OKPerSec), thousands(fl.OKPerSec), errorsNote(sf))
	return tc.judge(share >= storefrontFloorShareMin)
}

func (r *SuiteResults) storefrontLatency() TargetCheck {
	tc := TargetCheck{Target: TargetStorefrontLatency, Want: fmt.Sprintf("<= floor p99 + %.1f ms", storefrontP99OverFloorMs)}
	rep := r.report(stepStorefront4)
	sf, why := measuredOp(rep, "storefront", storefrontBatch1Op)
	if sf == nil {
		return tc.notMeasured(why)
	}
	fl, why := measuredOp(rep, "floor", floorOp)
	if fl == nil {
		return tc.notMeasured(why)
	}
	over := sf.P99Ms - fl.P99Ms
	tc.Measured = fmt.Sprintf("p99 %.3f ms, floor p99 %.3f ms (%+.3f ms)%s", sf.P99Ms, fl.P99Ms, over, errorsNote(sf))
	// The histograms keep 3 significant digits: compare in whole microseconds.
	return tc.judge(math.Round(over*1000) <= storefrontP99OverFloorMs*1000)
}

func (r *SuiteResults) storefrontBatch100() TargetCheck {
	tc := TargetCheck{Target: TargetStorefrontBatch100, Want: ">= " + thousands(storefrontSKUReadsMin) + " SKU reads/s"}
	sf, why := measuredOp(r.report(stepStorefront100), "storefront", storefrontBatch100Op)
	if sf == nil {
		return tc.notMeasured(why)
	}
	reads := sf.OKPerSec * 100
	tc.Measured = fmt.Sprintf("%s SKU reads/s (%s successful calls/s x 100)%s", thousands(reads), thousands(sf.OKPerSec), errorsNote(sf))
	return tc.judge(reads >= storefrontSKUReadsMin)
}

func (r *SuiteResults) checkout() TargetCheck {
	tc := TargetCheck{Target: TargetCheckout, Want: fmt.Sprintf(">= %s writes/s with p99 < %.0f ms", thousands(checkoutWritesPerSecMin), checkoutP99MsBelow)}
	rep := r.report(stepCheckout)
	total, why := measuredOp(rep, "checkout", "total")
	if total == nil {
		return tc.notMeasured(why)
	}
	sc := rep.Scenario("checkout")
	writes := writesPerSec(sc)
	tc.Measured = fmt.Sprintf("%s writes/s (reserve, confirm, release answered OK, sent to %s), p99 %.3f ms", thousands(writes), sc.Writes, total.P99Ms)
	return tc.judge(writes >= checkoutWritesPerSecMin && total.P99Ms < checkoutP99MsBelow)
}

func (r *SuiteResults) flashSale(target, step string) TargetCheck {
	tc := TargetCheck{Target: target, Want: "zero oversell, exact sell-out"}
	rep := r.report(step)
	if _, why := measuredOp(rep, "flash-sale", "reserve"); why != "" {
		return tc.notMeasured(why)
	}
	s := rep.Scenario("flash-sale")
	if !s.Verify.Ran {
		return tc.notMeasured("verify did not run")
	}
	sold, okSold := figure(s, flashSaleUnitsSoldFigure)
	stock, okStock := figure(s, flashSaleUnitsStockFigure)
	if !okSold || !okStock {
		return tc.notMeasured("flash-sale reported no units sold or in stock")
	}
	tc.Measured = fmt.Sprintf("%s of %s units sold; verify %s", thousands(sold), thousands(stock), verdict(*s))
	return tc.judge(s.Verify.Passed && stock > 0 && sold == stock)
}

func (tc TargetCheck) judge(ok bool) TargetCheck {
	tc.Verdict = NotMet
	if ok {
		tc.Verdict = Met
	}
	return tc
}

func (tc TargetCheck) notMeasured(why string) TargetCheck {
	tc.Measured, tc.Verdict = why, NotMeasured
	return tc
}

// measuredOp returns op of scenario in rep ("total" for the scenario's
// total), or nil and why it measured nothing.
func measuredOp(rep *Report, scenario, op string) (*OpResult, string) {
	if rep == nil {
		return nil, "the run did not run"
	}
	s := rep.Scenario(scenario)
	switch {
	case s == nil:
		return nil, scenario + " did not run"
	case s.Skipped != "":
		return nil, scenario + " skipped: " + s.Skipped
	case s.Error != "":
		return nil, scenario + ": " + s.Error
	}
	o := s.Op(op)
	if op == "total" {
		o = &s.Total
	}
	if o == nil || o.Count == 0 {
		return nil, scenario + ": no " + op + " call completed"
	}
	return o, ""
}

// figure returns the value of s's figure named name.
func figure(s *ScenarioResult, name string) (float64, bool) {
	for _, f := range s.Figures {
		if f.Name == name {
			return f.Value, true
		}
	}
	return 0, false
}

// errorsNote mentions o's failed calls, if any.
func errorsNote(o *OpResult) string {
	if o.Errors == 0 {
		return ""
	}
	return fmt.Sprintf("; %s calls failed (%s)", thousands(float64(o.Errors)), errorsText(*o))
}

// thousands formats v rounded to a whole number with comma separators:
// 1234567.8 -> "1,234,568".
func thousands(v float64) string {
	s := strconv.FormatInt(int64(math.Round(math.Abs(v))), 10)
	var b strings.Builder
	if v <= -0.5 {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
