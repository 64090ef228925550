package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stockd/stockd/bench"
)

const suiteUsage = `usage: stockbench suite [--out DIR] [--stockd PATH] [--quick]

Runs the fixed suite behind "make bench" (about %s of load, floors
included, plus setup; 1 node: storefront batch 1 at 64 and 4 callers,
batch 100 at 64, flash-sale; 3 nodes: checkout, flash-sale, peak-day,
marketplace, erp-storm, watch, backfill) on spawned clusters, each run after
its floor, then writes DIR/RESULTS.md (the issue's targets judged met or not
from the figures, every run's table) and each run's plot beside it as
DIR/<run>.svg. Run tables go to stdout as the runs end, progress to stderr.

flags:
`

// suiteConfig is the parsed command line of "stockbench suite".
type suiteConfig struct {
	out    string
	stockd string
	quick  bool
}

func parseSuite(args []string, stderr io.Writer) (*suiteConfig, error) {
	fs := flag.NewFlagSet("stockbench suite", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, suiteUsage, bench.NewSuite(false).Planned())
		fs.PrintDefaults()
	}
	c := &suiteConfig{}
	fs.StringVar(&c.out, "out", "bench", "folder of RESULTS.md and the plots (created if missing)")
	fs.StringVar(&c.stockd, "stockd", "", "prebuilt stockd binary (default: go build ./cmd/stockd into a temporary folder)")
	fs.BoolVar(&c.quick, "quick", false, "shrink every duration to about a second and the data sets to a few thousand rows (for tests)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Sprintf("suite: unexpected argument %q", fs.Arg(0))}
	}
	return c, nil
}

// runSuite runs the suite's steps in order, each through measureOn on a
// cluster spawned for its node count and shared with the steps around it
// that have the same count, and writes RESULTS.md and the plots. A run that
// fails does not stop the suite; it is reported in RESULTS.md and the suite
// returns an error at the end. Ctrl-C stops it without writing RESULTS.md.
func runSuite(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sc, err := parseSuite(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := os.MkdirAll(sc.out, 0o755); err != nil {
		return err
	}
	res := &bench.SuiteResults{
		Suite:     bench.NewSuite(sc.quick),
		StartedAt: time.Now().UTC(),
		Machine:   bench.ThisMachine(),
		Command:   append([]string{"stockbench", "suite"}, args...),
	}
	stockd := sc.stockd
	if stockd == "" {
		dir, err := os.MkdirTemp("", "stockbench-suite-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		fmt.Fprintln(stderr, "building stockd...")
		if stockd, err = bench.BuildStockd(ctx, dir); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "suite: %d runs, %s of load plus setup\n", len(res.Suite.Steps), res.Suite.Planned())

	var t *target
	defer func() {
		if t != nil {
			_ = t.Close() // a teardown error after an earlier one adds nothing
		}
	}()
	var failed []string
	for i, step := range res.Suite.Steps {
		c, err := parse(append(step.Args(), "--stockd", stockd), stderr)
		if err != nil {
			return fmt.Errorf("suite step %s: %w", step.ID, err)
		}
		if t != nil && t.info.Spawned != step.Nodes {
			err := t.Close()
			t = nil
			if err != nil {
				return fmt.Errorf("tear down: %w", err)
			}
		}
		if t == nil {
			if t, err = connect(ctx, c, stderr); err != nil {
				return err
			}
		}
		fmt.Fprintf(stderr, "\n== %d/%d %s (%d node(s), %s)\n", i+1, len(res.Suite.Steps), step.Title, step.Nodes, step.Duration)
		rep := measureOn(ctx, t, c, append([]string{"stockbench"}, step.Args()...), stderr)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("suite interrupted, RESULTS.md not written: %w", err)
		}
		run := bench.SuiteRun{Step: step, Report: rep, Plot: step.ID + ".svg"}
		if err := rep.WritePlot(filepath.Join(sc.out, run.Plot)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "## %d. %s (%d node(s))\n", i+1, step.Title, step.Nodes)
		if err := rep.WriteTable(stdout); err != nil {
			return err
		}
		fmt.Fprintln(stdout)
		if rep.Failed() {
			failed = append(failed, step.ID)
		}
		res.Runs = append(res.Runs, run)
	}
	if err := t.Close(); err != nil {
		return fmt.Errorf("tear down: %w", err)
	}
	t = nil
	res.Elapsed = time.Since(res.StartedAt)

	var md bytes.Buffer
	if err := res.WriteMarkdown(&md); err != nil {
		return err
	}
	path := filepath.Join(sc.out, "RESULTS.md")
	if err := os.WriteFile(path, md.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "targets:\n")
	for _, tc := range res.Targets() {
		fmt.Fprintf(stdout, "  %-13s %s: %s (want %s)\n", tc.Verdict, tc.Target, tc.Measured, tc.Want)
	}
	fmt.Fprintf(stdout, "wrote %s and %d plots in %s\n", path, len(res.Runs), res.Elapsed.Round(time.Second))
	if len(failed) > 0 {
		return fmt.Errorf("failed runs: %s", strings.Join(failed, ", "))
	}
	return nil
}
