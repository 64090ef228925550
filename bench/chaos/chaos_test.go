package chaos

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"go.uber.org/goleak"
)

// stockdBin is the binary TestMain builds once for every test.
var stockdBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "stockd-chaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if stockdBin, err = BuildStockd(ctx, dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// seedFromEnv returns STOCKD_CHAOS_SEED, or a fresh seed (printed, so a
// failure can be replayed).
func seedFromEnv(t *testing.T) uint64 {
	if s := os.Getenv("STOCKD_CHAOS_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("STOCKD_CHAOS_SEED=%q: %v", s, err)
		}
		return seed
	}
	return uint64(time.Now().UnixNano())
}

// startCluster starts a cluster (3 nodes, or STOCKD_CHAOS_NODES: make chaos
// CHAOS_NODES=5 for the soak) whose processes, proxies and folders
// t.Cleanup removes; node logs go to t.ArtifactDir (kept with -artifacts).
func startCluster(t *testing.T) *Cluster {
	t.Helper()
	nodes := 3
	if s := os.Getenv("STOCKD_CHAOS_NODES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 3 || n%2 == 0 {
			t.Fatalf("STOCKD_CHAOS_NODES=%q: want an odd number >= 3", s)
		}
		nodes = n
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	c, err := StartCluster(ctx, ClusterConfig{Bin: stockdBin, Dir: t.TempDir(), LogDir: t.ArtifactDir(), Nodes: nodes,
		// Snapshots during the run, so restarted nodes also restore one,
		// and a short log behind them, so a follower cut off for a few
		// thousand writes can only catch up by a snapshot install.
		Args: []string{"--snapshot-threshold", "256", "--snapshot-interval", "1s", "--trailing-logs", "128"}})
	t.Cleanup(c.Close)
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	return c
}

// report logs the run and fails the test on any violation, saving the
// history and porcupine's visualisation of each non-linearizable SKU.
func report(t *testing.T, rep *Report, err error) {
	t.Helper()
	t.Logf("chaos run, seed %d (replay: STOCKD_CHAOS_SEED=%d)\n%s", rep.Seed, rep.Seed, rep.Summary())
	for _, f := range rep.Faults {
		t.Log(f)
	}
	dir := t.ArtifactDir()
	// Every run's history is saved (a soak's is replayed with
	// TestReplayHistory to time or re-run the check).
	if werr := writeHistory(filepath.Join(dir, "history.json"), rep.History); werr != nil {
		t.Logf("save history: %v", werr)
	}
	if err != nil || rep.Failed() {
		for _, l := range rep.Lin {
			if l.result == porcupine.Illegal {
				path := filepath.Join(dir, "linearizability-"+l.sku+".html")
				if verr := porcupine.VisualizePath(l.model, l.info, path); verr != nil {
					t.Logf("visualise %s: %v", l.sku, verr)
				}
			}
		}
		t.Logf("history, node logs and visualisations in %s (kept with go test -artifacts)", dir)
		// Without -artifacts that folder goes with the test (make test):
		// keep a copy of a failed run's evidence.
		if keep, kerr := os.MkdirTemp("", "stockd-chaos-failed-"); kerr != nil {
			t.Logf("keep artifacts: %v", kerr)
		} else if kerr := os.CopyFS(keep, os.DirFS(dir)); kerr != nil {
			t.Logf("keep artifacts in %s: %v", keep, kerr)
		} else {
			t.Logf("a copy is kept in %s (STOCKD_CHAOS_HISTORY=%s/history.json go test -run TestReplayHistory replays the check)", keep, keep)
		}
	}
	if err != nil {
		t.Fatalf("seed %d: run: %v", rep.Seed, err)
	}
	for i, v := range rep.Violations {
		if i == 50 {
			t.Errorf("... %d more", len(rep.Violations)-50)
			break
		}
		t.Errorf("seed %d: %s", rep.Seed, v)
	}
}

// TestChaos runs the workload on a 3-node cluster under a schedule of
// faults and checks I1, I2, I3, I4, I5 and linearizability. By default a
// short schedule: every nemesis once, in an order drawn from the seed;
// STOCKD_CHAOS_DURATION=10m (make chaos) keeps injecting faults drawn at
// random for that long; STOCKD_CHAOS_SEED replays a run;
// STOCKD_CHAOS_NEMESES=kill-leader,bridge restricts the schedule.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("fault harness: skipped with -short")
	}
	checkHygieneAtEnd(t)
	cfg := RunConfig{Seed: seedFromEnv(t), Hold: 2500 * time.Millisecond, Logf: t.Logf,
		// Fresh SKUs every 30 s: several generations, so the rotation the
		// soak relies on runs in every short suite too.
		Workload: WorkloadConfig{Clients: 6, OpsPerSecond: 40, Generation: 30 * time.Second}}
	if s := os.Getenv("STOCKD_CHAOS_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("STOCKD_CHAOS_DURATION=%q: %v", s, err)
		}
		cfg.Duration, cfg.LinTimeout = d, 5*time.Minute
		// A minute per generation of SKUs, enough for the whole run and
		// its recovery waits.
		cfg.Workload.Generation = time.Minute
		cfg.Workload.Generations = int(d/time.Minute) + 10
	}
	if s := os.Getenv("STOCKD_CHAOS_NEMESES"); s != "" {
		cfg.Nemeses = splitComma(s)
	}
	t.Logf("seed %d", cfg.Seed)
	c := startCluster(t)
	rep, err := Run(t.Context(), c, cfg)
	report(t, rep, err)
	if err == nil {
		if g := generationsUsed(rep); g < 2 {
			t.Errorf("the workload used %d generation(s) of SKUs over a run of %d faults, want >= 2 (one per %v)", g, len(rep.Faults), cfg.Workload.Generation)
		}
	}
}

// generationsUsed counts the generations of SKUs whose checked histories
// hold operations.
func generationsUsed(rep *Report) int {
	gens := map[string]bool{}
	for _, l := range rep.Lin {
		if l.ops == 0 {
			continue
		}
		g := "0"
		if i := strings.LastIndex(l.sku, "-g"); i >= 0 {
			g = l.sku[i+2:]
		}
		gens[g] = true
	}
	return len(gens)
}

// checkHygieneAtEnd fails t if, once every cleanup registered after this
// call has run (cluster, proxies, connections, folders), the test process
// has goroutines or file descriptors it did not have now. It must be called
// before anything it should see closed is started.
func checkHygieneAtEnd(t *testing.T) {
	t.Helper()
	// The network poller's descriptors open at its first use and stay:
	// open them before the baseline.
	if l, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		_ = l.Close()
	}
	before, err := openFDs()
	if err != nil {
		t.Logf("hygiene: no descriptor check: %v", err)
	}
	goroutines := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		var v []string
		if before != nil {
			after, err := openFDs()
			if err != nil {
				t.Errorf("hygiene: %v", err)
			}
			v = append(v, checkFDs(before, after)...)
		}
		v = append(v, checkGoroutines(goroutines)...)
		for _, s := range v {
			t.Error(s)
		}
	})
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}
