package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stockd/stockd/bench"
)

var stockdBin string

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "stockbench-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if stockdBin, err = bench.BuildStockd(ctx, dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			return 1
		}
	}
	return code
}

// runBench runs stockbench with args plus --json into a temporary file and
// returns the decoded report, stdout and the error run returned.
func runBench(t *testing.T, args ...string) (*bench.Report, string, error) {
	t.Helper()
	dir := t.TempDir()
	jsonPath := filepath.Join(dir, "report.json")
	args = append(args, "--stockd", stockdBin, "--json", jsonPath, "--plot", filepath.Join(dir, "plot.svg"))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, args, &stdout, &stderr)
	t.Logf("stockbench %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), stdout.String(), stderr.String())
	b, rerr := os.ReadFile(jsonPath)
	if rerr != nil {
		t.Fatalf("read --json: %v (run: %v)", rerr, err)
	}
	var rep bench.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("decode --json: %v", err)
	}
	if st, err := os.Stat(filepath.Join(dir, "plot.svg")); err != nil || st.Size() == 0 {
		t.Errorf("--plot plot.svg: got %v, %v, want a non-empty file", st, err)
	}
	return &rep, stdout.String(), err
}

// checkScenario asserts scenario name ran, verified, and has every op in
// ops with a nonzero count.
func checkScenario(t *testing.T, rep *bench.Report, name string, ops ...string) {
	t.Helper()
	s := rep.Scenario(name)
	if s == nil {
		t.Fatalf("report scenarios: got %d, want one named %s", len(rep.Scenarios), name)
	}
	if s.Skipped != "" || s.Error != "" || !s.Verify.Ran || !s.Verify.Passed {
		t.Errorf("%s: got skipped %q, error %q, verify %+v, want run and verified", name, s.Skipped, s.Error, s.Verify)
	}
	for _, op := range ops {
		o := s.Op(op)
		if o == nil || o.Count == 0 || o.OpsPerSec <= 0 || o.P99Ms <= 0 {
			t.Errorf("%s op %s: got %+v, want a nonzero count, rate and p99", name, op, o)
		}
	}
	if name != "floor" && s.FloorRatio <= 0 {
		t.Errorf("%s floor ratio: got %v, want > 0", name, s.FloorRatio)
	}
}

func TestEveryScenarioOnOneNode(t *testing.T) {
	rep, out, err := runBench(t, "--spawn", "1", "--scenario", "storefront,checkout,flash-sale,peak-day",
		"--catalog", "500", "--batch", "1,20,100", "--duration", "1500ms", "--concurrency", "8", "--quiet")
	if err != nil {
		t.Fatalf("run: got %v, want nil", err)
	}
	checkScenario(t, rep, "floor", "health")
	checkScenario(t, rep, "storefront", "get-1", "get-20", "get-100")
	checkNoErrors(t, rep, "storefront")
	checkScenario(t, rep, "checkout", "reserve", "confirm", "release")
	checkScenario(t, rep, "flash-sale", "reserve", "confirm")
	checkScenario(t, rep, "peak-day", "get-1", "reserve", "set-stock")
	fs := rep.Scenario("flash-sale")
	if fs != nil {
		var sold, stock float64
		for _, f := range fs.Figures {
			switch f.Name {
			case "units sold":
				sold = f.Value
			case "units in stock":
				stock = f.Value
			}
		}
		if sold == 0 || sold != stock {
			t.Errorf("flash-sale: got %v units sold of %v, want exact sell-out", sold, stock)
		}
	}
	if rep.Schema != bench.ReportSchema || rep.Target.Spawned != 1 || len(rep.Target.Addrs) != 1 || rep.Machine.Cores == 0 {
		t.Errorf("report header: got schema %d, target %+v, machine %+v", rep.Schema, rep.Target, rep.Machine)
	}
	for _, want := range []string{"p99.9 ms", "get-100", "verify passed", "x floor"} {
		if !strings.Contains(out, want) {
			t.Errorf("table: got %q, want it to contain %q", out, want)
		}
	}
}

// checkNoErrors fails t when an operation of scenario name failed (for
// storefront: an answer that is not the SKUs or the view asked).
func checkNoErrors(t *testing.T, rep *bench.Report, name string) {
	t.Helper()
	s := rep.Scenario(name)
	if s == nil {
		t.Fatalf("%s: not in the report", name)
	}
	for _, o := range s.Ops {
		if o.Errors != 0 {
			t.Errorf("%s op %s: got %d errors %v, want none", name, o.Op, o.Errors, o.ErrorsByCode)
		}
	}
}

// --view full asks storefront's reads for the per-location breakdown; each
// answer is checked to carry it. --cpuprofile writes the client's profile.
func TestStorefrontFullView(t *testing.T) {
	prof := filepath.Join(t.TempDir(), "cpu.pprof")
	rep, _, err := runBench(t, "--spawn", "1", "--scenario", "storefront", "--view", "full", "--cpuprofile", prof,
		"--catalog", "200", "--batch", "1,20", "--duration", "500ms", "--concurrency", "2", "--quiet")
	if err != nil {
		t.Fatalf("run: got %v, want nil", err)
	}
	checkScenario(t, rep, "storefront", "get-1", "get-20")
	checkNoErrors(t, rep, "storefront")
	if rep.Options.View != "full" {
		t.Errorf("report options: got view %q, want full", rep.Options.View)
	}
	if st, err := os.Stat(prof); err != nil || st.Size() == 0 {
		t.Errorf("--cpuprofile: got %v, %v, want a non-empty file", st, err)
	}
}

// --floor-duration measures the floor for its own time and the scenario for
// --duration.
func TestFloorDuration(t *testing.T) {
	rep, _, err := runBench(t, "--spawn", "1", "--scenario", "storefront", "--catalog", "200",
		"--duration", "2s", "--floor-duration", "500ms", "--concurrency", "2", "--quiet")
	if err != nil {
		t.Fatalf("run: got %v, want nil", err)
	}
	floor, sf := rep.Scenario("floor"), rep.Scenario("storefront")
	if floor == nil || sf == nil {
		t.Fatalf("report: got floor %v, storefront %v, want both", floor, sf)
	}
	if floor.ElapsedS < 0.5 || floor.ElapsedS > 1.5 {
		t.Errorf("floor: measured for %.2f s, want about 0.5 s", floor.ElapsedS)
	}
	if sf.ElapsedS < 2 {
		t.Errorf("storefront: measured for %.2f s, want at least 2 s", sf.ElapsedS)
	}
	if rep.Options.FloorDurationS != 0.5 || rep.Options.DurationS != 2 {
		t.Errorf("report options: got floor %v s, duration %v s, want 0.5 and 2", rep.Options.FloorDurationS, rep.Options.DurationS)
	}
}

func TestCheckoutOnThreeNodesOpenLoop(t *testing.T) {
	rep, _, err := runBench(t, "--spawn", "3", "--scenario", "checkout", "--catalog", "300",
		"--duration", "1s", "--rate", "300", "--concurrency", "16", "--quiet")
	if err != nil {
		t.Fatalf("run: got %v, want nil", err)
	}
	checkScenario(t, rep, "checkout", "reserve", "confirm")
	if s := rep.Scenario("checkout"); s != nil && (s.Mode != bench.ModeOpen || s.Rate != 300) {
		t.Errorf("checkout: got mode %q rate %v, want open at 300", s.Mode, s.Rate)
	}
	if len(rep.Target.Addrs) != 3 {
		t.Errorf("target: got %v, want 3 nodes", rep.Target.Addrs)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--spawn", "1", "--addr", "x:1"},
		{"--spawn", "1", "--scenario", "nope"},
		{"--spawn", "1", "--batch", "0"},
		{"--spawn", "1", "--view", "compact"},
		{"--spawn", "1", "--concurrency", "0"},
		{"--spawn", "1", "--backfill-rows", "0"},
		{"--spawn", "1", "--floor-duration", "-1s"},
		{"suite", "--spawn", "1"},
		{"suite", "extra"},
	} {
		err := run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{})
		if _, ok := err.(usageError); !ok {
			t.Errorf("run(%q): got %v, want a usage error", args, err)
		}
	}
}
