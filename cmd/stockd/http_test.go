package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/stockd/stockd/api/stockdv1"
)

// httpNode starts one stockd process, seeds it through gRPC (a catalog, two
// ERP rows, an accepted and a refused reserve) and returns its clients and
// the base URL of its HTTP port once /readyz answers 200.
func httpNode(t *testing.T) (*clients, string) {
	t.Helper()
	p := startStockd(t, t.TempDir())
	base := "http://" + p.waitLog("http listening", 10*time.Second)["addr"].(string)
	c := dial(t, p.addr)
	waitHTTP(t, base+"/readyz", http.StatusOK, 15*time.Second)
	setupCatalog(t, c)
	ctx := ctxT(t)
	if _, err := c.erp.SetStock(ctx, &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{
		{Item: "ROSE", Location: "ams", OnHandBaseUnits: 3, Version: 1},
		{Item: "ROSE", Location: "fra", OnHandBaseUnits: 0, Version: 1},
	}}); err != nil {
		t.Fatalf("SetStock: %v", err)
	}
	if _, err := c.inv.Reserve(ctx, &stockdv1.ReserveRequest{Channel: "web", ReservationId: "ok",
		Lines: []*stockdv1.ReserveLine{{Sku: "ROSE", Quantity: 1}}}); err != nil {
		t.Fatalf("Reserve 1 ROSE: %v", err)
	}
	if _, err := c.inv.Reserve(ctx, &stockdv1.ReserveRequest{Channel: "web", ReservationId: "short",
		Lines: []*stockdv1.ReserveLine{{Sku: "ROSE", Quantity: 99}}}); err == nil {
		t.Fatal("Reserve 99 ROSE of 2: got OK, want a refusal")
	}
	return c, base
}

// get returns the status code and body of a GET of url.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// waitHTTP polls url until it answers want, failing after timeout.
func waitHTTP(t *testing.T, url string, want int, timeout time.Duration) {
	t.Helper()
	var last error
	poll(t, timeout, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			last = err
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		last = &httpStatusError{resp.StatusCode, string(b)}
		return resp.StatusCode == want
	}, func() string { return fmt.Sprintf("GET %s: got %v, want status %d", url, last, want) })
}

// poll checks cond every 20 ms until it holds; past timeout it fails with what().
func poll(t *testing.T, timeout time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("after %v: %s", timeout, what())
		}
	}
}

type httpStatusError struct {
	code int
	body string
}

func (e *httpStatusError) Error() string {
	return http.StatusText(e.code) + ": " + strings.TrimSpace(e.body)
}

// exportedNames are the metric family names of a Prometheus text page.
func exportedNames(page string) []string {
	var names []string
	for line := range strings.SplitSeq(page, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			names = append(names, f[2])
		}
	}
	return names
}

func TestHTTPPortServesHealthReadinessAndMetrics(t *testing.T) {
	_, base := httpNode(t)
	if code, body := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz: got %d %q, want 200", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusOK || strings.TrimSpace(body) != "ready" {
		t.Errorf("GET /readyz on a one-node leader: got %d %q, want 200 ready", code, body)
	}
	code, page := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: got %d, want 200", code)
	}
	for _, want := range []string{
		// The middleware's gRPC metrics, for the calls httpNode made.
		`grpc_server_handled_total{grpc_code="OK",grpc_method="Reserve",grpc_service="stockd.v1.Inventory",grpc_type="unary"} 1`,
		`grpc_server_handled_total{grpc_code="FailedPrecondition",grpc_method="Reserve",grpc_service="stockd.v1.Inventory",grpc_type="unary"} 1`,
		`grpc_server_handling_seconds_count{grpc_method="SetStock",grpc_service="stockd.v1.Erp",grpc_type="unary"} 1`,
		// The store's counts and raft's figures.
		"stockd_reserves_accepted_total 1",
		`stockd_reserves_refused_total{reason="insufficient_stock"} 1`,
		`stockd_erp_rows_total{outcome="applied"} 2`,
		`stockd_available_to_zero_total 0`,
		`stockd_raft_state{state="leader"} 1`,
		"stockd_raft_has_leader 1",
		"stockd_raft_apply_batch_commands_count",
		`stockd_erp_update_age_seconds{location="ams"}`,
		"stockd_outbox_backlog_entries 0",
		// The collector's CPU, besides Go's default metrics.
		"go_cpu_classes_gc_total_cpu_seconds_total ",
		"go_cpu_classes_gc_mark_idle_cpu_seconds_total ",
		// The soft limit the heap governor sets (Go's default metric).
		"go_gc_gomemlimit_bytes ",
		"go_goroutines ",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("GET /metrics: got no line with %q; page:\n%s", want, grep(page, "grpc_server_handled_total", "stockd_"))
		}
	}
}

// grep keeps the lines of page that start with one of prefixes.
func grep(page string, prefixes ...string) string {
	var out []string
	for line := range strings.SplitSeq(page, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(line, p) {
				out = append(out, line)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// alertRules is the part of a Prometheus rule file the test reads.
type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// TestAlertRulesNameExportedMetrics parses deploy/alerts.yaml and checks that
// each alert has an expression and a duration, and that every stockd_ or
// grpc_ metric an expression names is on a real node's /metrics page, so a
// renamed metric fails here.
func TestAlertRulesNameExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules alertRules
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("deploy/alerts.yaml: %v", err)
	}
	_, base := httpNode(t)
	_, page := get(t, base+"/metrics")
	exported := exportedNames(page)
	// Label names (grpc_method, ...) share the prefixes; a name followed by
	// "=" or inside by (...) is a label. Metric names are matched whole.
	metricName := regexp.MustCompile(`\b(?:stockd|grpc_server)_[a-z0-9_]+\b`)
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || strings.TrimSpace(r.Expr) == "" {
				t.Errorf("group %s: rule %+v: want alert and expr", g.Name, r)
				continue
			}
			if _, err := time.ParseDuration(r.For); err != nil {
				t.Errorf("alert %s: for %q: %v", r.Alert, r.For, err)
			}
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("alert %s: got labels %v annotations %v, want a severity and a summary", r.Alert, r.Labels, r.Annotations)
			}
			alerts[r.Alert] = true
			names := metricName.FindAllString(r.Expr, -1)
			if len(names) == 0 {
				t.Errorf("alert %s: expr %q names no stockd metric", r.Alert, r.Expr)
			}
			for _, n := range names {
				if !slices.Contains(exported, n) {
					t.Errorf("alert %s: expr names %s, which stockd does not export (exported: %v)", r.Alert, n, exported)
				}
			}
		}
	}
	for _, want := range []string{"StockdNoLeader", "StockdERPSyncLag", "StockdOutboxBacklogLarge", "StockdOutboxBacklogOld",
		"StockdReserveRejectionSpike", "StockdNodeBehind"} {
		if !alerts[want] {
			t.Errorf("deploy/alerts.yaml: got alerts %v, want one named %s", alerts, want)
		}
	}
}
