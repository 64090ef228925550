package bench

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"
)

// WriteMarkdown writes RESULTS.md: when and where the suite ran and with
// which command, the targets against what was measured with a
// verdict computed from the figures, then every run's table (the one
// stockbench prints) with a link to its plot.
func (r *SuiteResults) WriteMarkdown(w io.Writer) error {
	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }
	m := r.Machine
	p("# stockbench results\n\n")
	if r.Suite.Quick {
		p("**Quick run (--quick): every duration shrunk to about a second, for tests. These figures are not results.**\n\n")
	}
	p("- Date: %s (the suite took %s)\n", r.StartedAt.UTC().Format("2006-01-02 15:04 MST"), r.Elapsed.Round(time.Second))
	p("- Machine: %s, %d cores, %s, %s/%s\n", m.CPU, m.Cores, m.GoVersion, m.OS, m.Arch)
	p("- Command: `%s`\n", strings.Join(r.Command, " "))
	p("- Clusters: spawned by stockbench on 127.0.0.1, nodes and client sharing this machine's cores: ")
	p("one 1-node cluster for the runs marked 1 node, then one 3-node cluster for the rest; ")
	p("each cluster is shared by its runs, in the order below.\n")
	if n := r.backfillRows(); n > 0 {
		p("- Backfill: %s rows.\n", thousands(float64(n)))
	}
	p("\nEvery run measures its floor first: `grpc.health.v1.Health/Check`, through the same interceptor chain, ")
	p("on the same connections at the same concurrency, for %s (or the run's duration when shorter). ", suiteFloorDuration)
	p("Ratios are to that floor, since absolute figures drift on a shared machine.\n\n")

	p("## Targets\n\n")
	p("| target | want | measured | verdict |\n|---|---|---|---|\n")
	for _, tc := range r.Targets() {
		verdict := string(tc.Verdict)
		if tc.Verdict == Met {
			verdict = "**met**"
		}
		p("| %s | %s | %s | %s |\n", markdownEscape(tc.Target), markdownEscape(tc.Want), markdownEscape(tc.Measured), verdict)
	}

	p("\n## Runs\n\n")
	p("| run | nodes | scenario | callers | duration | plot |\n|---|--:|---|--:|--:|---|\n")
	for i, run := range r.Runs {
		p("| [%d. %s](#%s) | %d | %s | %d | %s | %s |\n", i+1, run.Step.Title, anchor(run, i),
			run.Step.Nodes, run.Step.Scenario, run.Step.Concurrency, durationCell(run.Step), plotLink(run))
	}
	for i, run := range r.Runs {
		p("\n### %s\n\n", heading(run, i))
		p("Alone, on a fresh cluster: `stockbench %s`. Plot: %s.\n\n", strings.Join(run.Step.Args(), " "), plotLink(run))
		if err := bw.Flush(); err != nil {
			return err
		}
		if err := run.Report.WriteMarkdown(bw); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// backfillRows is the rows of the suite's backfill step, 0 without one.
func (r *SuiteResults) backfillRows() int {
	for _, s := range r.Suite.Steps {
		if s.BackfillRows > 0 {
			return s.BackfillRows
		}
	}
	return 0
}

// durationCell is a step's measured phases: the floor's, then the
// scenario's (backfill loads its rows however long it takes).
func durationCell(s SuiteStep) string {
	if s.BackfillRows > 0 {
		return s.FloorDuration.String() + " floor, then the load"
	}
	return s.FloorDuration.String() + " floor, then " + s.Duration.String()
}

func heading(run SuiteRun, i int) string {
	nodes := "1 node"
	if run.Step.Nodes != 1 {
		nodes = fmt.Sprintf("%d nodes", run.Step.Nodes)
	}
	return fmt.Sprintf("%d. %s: %s", i+1, nodes, run.Step.Title)
}

// anchor is the fragment GitHub gives heading(run, i): lowercase, spaces to
// hyphens, punctuation other than hyphens dropped.
func anchor(run SuiteRun, i int) string {
	var b strings.Builder
	for _, c := range strings.ToLower(heading(run, i)) {
		switch {
		case c == ' ':
			b.WriteByte('-')
		case c == '-' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9':
			b.WriteRune(c)
		}
	}
	return b.String()
}

func plotLink(run SuiteRun) string {
	if run.Plot == "" {
		return "none"
	}
	return fmt.Sprintf("[%s](%s)", run.Plot, run.Plot)
}
