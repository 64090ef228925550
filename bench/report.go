package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// ReportSchema is the version of the JSON report's layout; it grows when a
// field changes meaning (fields are only added otherwise).
const ReportSchema = 1

// Report is one stockbench run: what ran where, and each scenario's result.
// It is what --json writes.
type Report struct {
	Schema    int              `json:"schema"`
	StartedAt time.Time        `json:"started_at"`
	Command   []string         `json:"command"`
	Machine   Machine          `json:"machine"`
	Target    Target           `json:"target"`
	Options   ReportOptions    `json:"options"`
	Scenarios []ScenarioResult `json:"scenarios"`
}

// Machine describes where the client ran (with --spawn, the nodes too).
type Machine struct {
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
}

// Target is the cluster a run drove.
type Target struct {
	Addrs []string `json:"addrs"`
	// Spawned is the node count of a --spawn cluster, 0 for --addr.
	Spawned  int      `json:"spawned,omitempty"`
	NodeArgs []string `json:"node_args,omitempty"`
}

// ReportOptions are the run's knobs.
type ReportOptions struct {
	Concurrency int     `json:"concurrency"`
	Rate        float64 `json:"rate,omitempty"`
	DurationS   float64 `json:"duration_s"`
	// FloorDurationS is the floor's measured phase (--floor-duration).
	FloorDurationS float64 `json:"floor_duration_s"`
	WarmupS        float64 `json:"warmup_s,omitempty"`
	Seed           uint64  `json:"seed"`
	Catalog        int     `json:"catalog"`
	Locations      int     `json:"locations"`
	Batches        []int   `json:"batches,omitempty"`
	View           string  `json:"view,omitempty"`
	// Writes is --writes: "leader" or "any".
	Writes string `json:"writes,omitempty"`
}

// ThisMachine describes the machine stockbench runs on.
func ThisMachine() Machine {
	return Machine{CPU: cpuModel(), Cores: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
}

// cpuModel reads the CPU's model name from /proc/cpuinfo ("unknown"
// elsewhere).
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// SetFloorRatios sets every scenario's FloorRatio from the floor scenario
// of the report, if one ran.
func (r *Report) SetFloorRatios() {
	floor := r.Scenario("floor")
	if floor == nil || floor.Total.OpsPerSec <= 0 {
		return
	}
	for i := range r.Scenarios {
		s := &r.Scenarios[i]
		if s.Skipped == "" {
			s.FloorRatio = s.Total.OpsPerSec / floor.Total.OpsPerSec
		}
	}
}

// Scenario returns the result of the scenario named name, or nil.
func (r *Report) Scenario(name string) *ScenarioResult {
	for i := range r.Scenarios {
		if r.Scenarios[i].Name == name {
			return &r.Scenarios[i]
		}
	}
	return nil
}

// Failed reports whether any scenario failed (skipped ones do not).
func (r *Report) Failed() bool {
	return slices.ContainsFunc(r.Scenarios, func(s ScenarioResult) bool { return s.Failed() })
}

// WriteJSON writes the report to path, indented, through a temporary file
// so the file is complete or absent.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	return writeFileAtomic(path, append(b, '\n'))
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".stockbench-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after the rename, nothing to remove
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// tableHeader is the final table's columns.
var tableHeader = []string{"scenario", "op", "count", "ops/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "errors"}

// tableRows are the final table's rows, one per scenario and operation, a
// total per scenario of several operations, and a row with the reason per
// skipped scenario.
func (r *Report) tableRows() [][]string {
	var rows [][]string
	for _, s := range r.Scenarios {
		if s.Skipped != "" {
			row := make([]string, len(tableHeader))
			row[0], row[1] = s.Name, "skipped: "+s.Skipped
			rows = append(rows, row)
			continue
		}
		for _, o := range s.Ops {
			rows = append(rows, opRow(s.Name, o, errorsText(o)))
		}
		if len(s.Ops) > 1 {
			t := s.Total
			rows = append(rows, opRow(s.Name, t, fmt.Sprint(t.Errors)))
		}
	}
	return rows
}

func opRow(scenario string, o OpResult, errs string) []string {
	f := func(v float64) string { return fmt.Sprintf("%.3f", v) }
	return []string{scenario, o.Op, fmt.Sprint(o.Count), fmt.Sprintf("%.0f", o.OpsPerSec),
		f(o.P50Ms), f(o.P90Ms), f(o.P99Ms), f(o.P999Ms), f(o.MaxMs), errs}
}

// summaryLines are the lines under the final table, one per scenario that
// ran: its ratio to the floor, its loop, its own figures and Verify's verdict.
func (r *Report) summaryLines() []string {
	var lines []string
	for _, s := range r.Scenarios {
		if s.Skipped != "" {
			continue
		}
		var parts []string
		if s.FloorRatio > 0 {
			parts = append(parts, fmt.Sprintf("%.2fx floor", s.FloorRatio))
		}
		parts = append(parts, fmt.Sprintf("%s loop, %d workers", s.Mode, s.Concurrency))
		if s.Mode == ModeOpen {
			parts = append(parts, fmt.Sprintf("rate %.0f/s, dropped %d", s.Rate, s.Dropped))
		}
		if s.Writes != "" {
			parts = append(parts, "writes to "+s.Writes)
		}
		for _, f := range s.Figures {
			parts = append(parts, fmt.Sprintf("%s %s", f.Name, formatFigure(f)))
		}
		parts = append(parts, "verify "+verdict(s))
		lines = append(lines, fmt.Sprintf("%s: %s", s.Name, strings.Join(parts, "; ")))
	}
	return lines
}

// WriteTable prints the final table: per scenario and operation the count,
// throughput, latency percentiles and errors by code, the scenario's ratio
// to the floor, its own figures and Verify's verdict.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, row := range append([][]string{tableHeader}, r.tableRows()...) {
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, l := range r.summaryLines() {
		fmt.Fprintln(w, l)
	}
	return nil
}

// WriteMarkdown writes what WriteTable prints as markdown: the table (with
// numbers right-aligned) and the lines under it as a list.
func (r *Report) WriteMarkdown(w io.Writer) error {
	bw := bufio.NewWriter(w)
	writeMarkdownRow(bw, tableHeader)
	align := make([]string, len(tableHeader))
	for i := range align {
		align[i] = "--:"
		if i < 2 {
			align[i] = "---"
		}
	}
	writeMarkdownRow(bw, align)
	for _, row := range r.tableRows() {
		writeMarkdownRow(bw, row)
	}
	fmt.Fprintln(bw)
	for _, l := range r.summaryLines() {
		fmt.Fprintln(bw, "- "+markdownEscape(l))
	}
	return bw.Flush()
}

func writeMarkdownRow(w io.Writer, cells []string) {
	esc := make([]string, len(cells))
	for i, c := range cells {
		esc[i] = markdownEscape(c)
	}
	fmt.Fprintln(w, "| "+strings.Join(esc, " | ")+" |")
}

// markdownEscape keeps s (an error message, say) from breaking a table
// cell or a list item.
func markdownEscape(s string) string {
	return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s)
}

func formatFigure(f Figure) string {
	v := fmt.Sprintf("%.0f", f.Value)
	if f.Unit != "" {
		v += " " + f.Unit
	}
	return v
}

// verdict is Verify's outcome in a word or a sentence.
func verdict(s ScenarioResult) string {
	switch {
	case s.Error != "":
		return "not run (" + s.Error + ")"
	case !s.Verify.Ran:
		return "not run"
	case s.Verify.Passed:
		return "passed"
	}
	return "FAILED: " + s.Verify.Error
}

// errorsText lists an operation's errors by code: "FAILED_PRECONDITION 12".
func errorsText(o OpResult) string {
	if o.Errors == 0 {
		return "0"
	}
	var parts []string
	for c, n := range o.ErrorsByCode {
		parts = append(parts, fmt.Sprintf("%s %d", c, n))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}
