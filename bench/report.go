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
	WarmupS     float64 `json:"warmup_s,omitempty"`
	Seed        uint64  `json:"seed"`
	Catalog     int     `json:"catalog"`
	Locations   int     `json:"locations"`
	Batches     []int   `json:"batches,omitempty"`
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

// WriteTable prints the final table: per scenario and operation the count,
// throughput, latency percentiles and errors by code, the scenario's ratio
// to the floor, its own figures and Verify's verdict.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\top\tcount\tops/s\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\terrors\t")
	for _, s := range r.Scenarios {
		if s.Skipped != "" {
			fmt.Fprintf(tw, "%s\tskipped: %s\t\t\t\t\t\t\t\t\t\n", s.Name, s.Skipped)
			continue
		}
		for _, o := range s.Ops {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%s\t\n",
				s.Name, o.Op, o.Count, o.OpsPerSec, o.P50Ms, o.P90Ms, o.P99Ms, o.P999Ms, o.MaxMs, errorsText(o))
		}
		if len(s.Ops) > 1 {
			t := s.Total
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%d\t\n",
				s.Name, "total", t.Count, t.OpsPerSec, t.P50Ms, t.P90Ms, t.P99Ms, t.P999Ms, t.MaxMs, t.Errors)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
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
		for _, f := range s.Figures {
			parts = append(parts, fmt.Sprintf("%s %s", f.Name, formatFigure(f)))
		}
		parts = append(parts, "verify "+verdict(s))
		fmt.Fprintf(w, "%s: %s\n", s.Name, strings.Join(parts, "; "))
	}
	return nil
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
