package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stockd/stockd/bench"
)

func TestSuiteQuickWritesResultsAndPlots(t *testing.T) {
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Second)
	defer cancel()
	args := []string{"suite", "--quick", "--out", out, "--stockd", stockdBin}
	var stdout, stderr bytes.Buffer
	err := run(ctx, args, &stdout, &stderr)
	if err != nil {
		t.Fatalf("stockbench %s: got %v, want nil\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	b, err := os.ReadFile(filepath.Join(out, "RESULTS.md"))
	if err != nil {
		t.Fatalf("read RESULTS.md: %v", err)
	}
	md := string(b)
	t.Logf("RESULTS.md:\n%s", md)

	m := bench.ThisMachine()
	for _, want := range []string{
		"- Date: " + time.Now().UTC().Format("2006-01-02"),
		"- Machine: " + m.CPU,
		m.GoVersion,
		"- Command: `stockbench " + strings.Join(args, " ") + "`",
		"| target | want | measured | verdict |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("RESULTS.md: got no %q", want)
		}
	}
	for _, target := range []string{
		bench.TargetStorefrontThroughput, bench.TargetStorefrontLatency, bench.TargetStorefrontBatch100,
		bench.TargetCheckout, bench.TargetFlashSaleOneNode, bench.TargetFlashSaleThreeNodes,
	} {
		row := markdownRow(md, target)
		if row == nil {
			t.Errorf("RESULTS.md targets: got no row for %q", target)
			continue
		}
		if v := row[len(row)-1]; v != "**met**" && v != "not met" {
			t.Errorf("RESULTS.md target %q: got verdict %q, want met or not met (row %q)", target, v, row)
		}
	}
	for _, step := range bench.NewSuite(true).Steps {
		svg := step.ID + ".svg"
		st, err := os.Stat(filepath.Join(out, svg))
		if err != nil || st.Size() == 0 {
			t.Errorf("plot %s: got %v, want a non-empty file", svg, err)
		}
		if !strings.Contains(md, "]("+svg+")") {
			t.Errorf("RESULTS.md: got no link to %s", svg)
		}
		if !strings.Contains(md, "`stockbench "+strings.Join(step.Args(), " ")+"`") {
			t.Errorf("RESULTS.md: got no command of run %s", step.ID)
		}
	}
	for _, want := range []string{"| floor | health |", "| storefront | get-100 |", "| checkout | reserve |", "| backfill | backfill |"} {
		if !strings.Contains(md, want) {
			t.Errorf("RESULTS.md run tables: got no %q", want)
		}
	}
}

// markdownRow returns the cells of the table row whose first cell is first,
// or nil.
func markdownRow(md, first string) []string {
	for line := range strings.Lines(md) {
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if len(cells) > 1 && cells[0] == first {
			return cells
		}
	}
	return nil
}
