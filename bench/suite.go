package bench

import (
	"strconv"
	"time"
)

// The suite's runs that targets are judged on, by SuiteStep.ID.
const (
	stepStorefront64  = "1-node-storefront-batch-1-64-callers"
	stepStorefront4   = "1-node-storefront-batch-1-4-callers"
	stepStorefront100 = "1-node-storefront-batch-100-64-callers"
	// The same in the FULL view: shown beside it, judged on nothing.
	stepStorefront100Full = "1-node-storefront-batch-100-full-view-64-callers"
	stepFlashSaleOne      = "1-node-flash-sale"
	stepCheckout          = "3-nodes-checkout-64-callers"
	stepFlashSaleThree    = "3-nodes-flash-sale"
)

// Suite sizes. The full backfill (the 1,000,000 rows) loads in
// about 7 s on a 3-node cluster on 2 cores, so it fits the suite's budget.
const (
	suiteBackfillRows = 1_000_000
	// backfillFloorDuration is the floor before backfill (which loads its
	// rows however long that takes).
	backfillFloorDuration = 5 * time.Second
	// suiteFloorDuration caps every run's floor: its throughput and p99
	// settle within seconds, and floors as long as the runs doubled the
	// suite (5m23s on the AMD machine, 4m45s on the Intel one).
	suiteFloorDuration = 5 * time.Second
	quickCatalog       = 2_000
	quickBackfillRows  = 20_000
	quickDuration      = time.Second
)

// Suite is the fixed suite behind `make bench` ("stockbench suite"): the
// runs, in order, each on a spawned 1- or 3-node cluster that the runs with
// the same node count share. Every run measures its floor first, as every
// stockbench run does.
type Suite struct {
	// Quick shrinks every duration to about a second and the catalog and
	// backfill to a few thousand rows, for tests; its figures mean nothing.
	Quick bool
	Steps []SuiteStep
}

// SuiteStep is one run of the suite: one scenario after its floor, in
// closed loop.
type SuiteStep struct {
	// ID names the run; it is also its plot's file name without ".svg".
	ID string
	// Title says what runs, for headings: "storefront, batch 1, 64 callers".
	Title       string
	Nodes       int
	Scenario    string
	Concurrency int
	// Duration is the measured phase of the scenario (backfill's is its
	// floor's: it loads its rows however long that takes).
	Duration time.Duration
	// FloorDuration is the floor's measured phase: the shorter of
	// suiteFloorDuration and Duration.
	FloorDuration time.Duration
	// Catalog is the SKUs of storefront, checkout and peak-day.
	Catalog int
	// Batch is storefront's SKUs per GetAvailability; 0 for the others.
	Batch int
	// FullView makes storefront ask for the FULL view (--view full).
	FullView bool
	// BackfillRows is the rows backfill loads; 0 for the others.
	BackfillRows int
}

// NewSuite returns the suite: about two and a half minutes of load on 2
// cores (three to four with setup), or a few seconds when quick.
func NewSuite(quick bool) Suite {
	step := func(id, title string, nodes int, scenario string, callers int, d time.Duration) SuiteStep {
		return SuiteStep{ID: id, Title: title, Nodes: nodes, Scenario: scenario, Concurrency: callers,
			Duration: d, FloorDuration: min(d, suiteFloorDuration), Catalog: 100_000}
	}
	storefront := func(id string, batch, callers int, d time.Duration) SuiteStep {
		s := step(id, "storefront, batch "+strconv.Itoa(batch)+", "+strconv.Itoa(callers)+" callers", 1, "storefront", callers, d)
		s.Batch = batch
		return s
	}
	full100 := storefront(stepStorefront100Full, 100, 64, 10*time.Second)
	full100.Title, full100.FullView = "storefront, batch 100, full view, 64 callers", true
	backfill := step("3-nodes-backfill", "backfill of "+thousands(suiteBackfillRows)+" rows", 3, "backfill", 64, backfillFloorDuration)
	backfill.BackfillRows = suiteBackfillRows
	su := Suite{Quick: quick, Steps: []SuiteStep{
		storefront(stepStorefront64, 1, 64, 10*time.Second),
		storefront(stepStorefront4, 1, 4, 10*time.Second),
		storefront(stepStorefront100, 100, 64, 10*time.Second),
		full100,
		step(stepFlashSaleOne, "flash-sale, 64 buyers", 1, "flash-sale", 64, 3*time.Second),
		step(stepCheckout, "checkout, 64 callers", 3, "checkout", 64, 20*time.Second),
		step(stepFlashSaleThree, "flash-sale, 64 buyers", 3, "flash-sale", 64, 3*time.Second),
		step("3-nodes-peak-day-64-callers", "peak-day, 64 callers", 3, "peak-day", 64, 10*time.Second),
		step("3-nodes-marketplace", "marketplace, 64 callers", 3, "marketplace", 64, 5*time.Second),
		step("3-nodes-erp-storm", "erp-storm, 64 readers", 3, "erp-storm", 64, 5*time.Second),
		step("3-nodes-watch", "watch, 100 watchers", 3, "watch", 64, 5*time.Second),
		backfill,
	}}
	if quick {
		for i := range su.Steps {
			s := &su.Steps[i]
			s.Duration, s.FloorDuration, s.Catalog = quickDuration, quickDuration, quickCatalog
			if s.BackfillRows > 0 {
				s.BackfillRows = quickBackfillRows
				s.Title = "backfill of " + thousands(quickBackfillRows) + " rows"
			}
		}
	}
	return su
}

// Planned is the load the suite applies, floors included, not counting
// setup, verification and backfill's own load.
func (su Suite) Planned() time.Duration {
	var d time.Duration
	for _, s := range su.Steps {
		d += s.FloorDuration
		if s.BackfillRows == 0 {
			d += s.Duration
		}
	}
	return d
}

// Args are the stockbench flags that run the step alone on a fresh cluster
// of its own (in the suite it shares the cluster with the runs before it).
func (s SuiteStep) Args() []string {
	args := []string{"--spawn", strconv.Itoa(s.Nodes), "--scenario", s.Scenario,
		"--concurrency", strconv.Itoa(s.Concurrency), "--duration", s.Duration.String(), "--catalog", strconv.Itoa(s.Catalog)}
	if s.FloorDuration > 0 && s.FloorDuration != s.Duration {
		args = append(args, "--floor-duration", s.FloorDuration.String())
	}
	if s.Batch > 0 {
		args = append(args, "--batch", strconv.Itoa(s.Batch))
	}
	if s.FullView {
		args = append(args, "--view", "full")
	}
	if s.BackfillRows > 0 {
		args = append(args, "--backfill-rows", strconv.Itoa(s.BackfillRows))
	}
	return args
}

// SuiteResults is what a suite run measured, for RESULTS.md.
type SuiteResults struct {
	Suite     Suite
	StartedAt time.Time
	// Elapsed is the whole suite, spawning and setup included.
	Elapsed time.Duration
	Machine Machine
	// Command is the suite's command line, "stockbench suite ...".
	Command []string
	// Runs are the steps that ran, in order.
	Runs []SuiteRun
}

// SuiteRun is one step's report and its plot.
type SuiteRun struct {
	Step   SuiteStep
	Report *Report
	// Plot is the plot's file name, beside RESULTS.md ("" if none was drawn).
	Plot string
}

// report returns the report of step id, or nil when it did not run.
func (r *SuiteResults) report(id string) *Report {
	for _, run := range r.Runs {
		if run.Step.ID == id {
			return run.Report
		}
	}
	return nil
}

// Failed reports whether any run's scenario failed.
func (r *SuiteResults) Failed() bool {
	for _, run := range r.Runs {
		if run.Report.Failed() {
			return true
		}
	}
	return false
}
