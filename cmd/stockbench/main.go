// Command stockbench load-tests a stockd cluster through its public gRPC API
// and checks, after the load, that nothing was oversold and no acknowledged
// reservation is missing. It drives a running cluster (--addr) or starts a
// local one in temporary folders (--spawn N) and tears it down afterwards.
// "stockbench suite" runs the fixed suite behind `make bench` on spawned
// clusters and writes RESULTS.md, the targets judged met or not,
// with the plots beside it.
//
// Every run measures the floor scenario (gRPC health checks on the same
// connections and concurrency) first, and reports each scenario's
// throughput as a ratio to it. Exit status: 0 when every scenario passed (or
// was skipped), 1 when one failed, 2 on a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/stockd/stockd/bench"
)

func main() {
	if os.Getenv("GOGC") == "" {
		// The harness shares the machine with the nodes it measures: its
		// collector's CPU is taken from them. Its heap is small (histograms,
		// the ledger), so collecting at 5x instead of 2x costs little memory
		// and cut its collector's CPU in a 30 s checkout run from 2.2 s to 0.7 s.
		debug.SetGCPercent(400)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var ue usageError
	switch {
	case err == nil:
	case errors.As(err, &ue):
		fmt.Fprintln(os.Stderr, "stockbench:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "stockbench:", err)
		os.Exit(1)
	}
}

// usageError is a bad command line (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

const usage = `usage: stockbench (--addr HOST:PORT[,HOST:PORT...] | --spawn N) [flags]
       stockbench suite [--out DIR] [--stockd PATH] [--quick]

Runs the floor scenario, then each --scenario in turn, against the cluster;
prints a live line per second on stderr and the final table on stdout.
"stockbench suite -h" describes the suite.

scenarios: %s

flags:
`

// config is the parsed command line.
type config struct {
	addrs        []string
	spawn        int
	stockd       string
	nodeArgs     []string
	nodeLog      string
	scenarios    []string
	noFloor      bool
	concurrency  int
	rate         float64
	duration     time.Duration
	floorDur     time.Duration // 0: the floor runs for duration
	warmup       time.Duration
	seed         uint64
	catalog      int
	locations    int
	batches      []int
	view         string // storefront's view: basic or full
	writes       string // where reservation writes go: leader or any
	cpuProfile   string
	backfillRows int
	jsonPath     string
	plotPath     string
	quiet        bool
	creds        credentialFlags
}

func parse(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("stockbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, usage, strings.Join(bench.ScenarioNames(), ", "))
		fs.PrintDefaults()
	}
	c := &config{}
	var addrs, scenarios, batches, nodeArgs string
	fs.StringVar(&addrs, "addr", "", "gRPC addresses of a running cluster's nodes, comma-separated")
	fs.IntVar(&c.spawn, "spawn", 0, "start an N-node local cluster in temporary folders instead (torn down at the end)")
	fs.StringVar(&c.stockd, "stockd", "", "prebuilt stockd binary for --spawn (default: go build ./cmd/stockd into a temporary folder)")
	fs.StringVar(&nodeArgs, "node-args", "", "extra flags for every spawned node, space-separated (e.g. \"--linger 2ms\")")
	fs.StringVar(&c.nodeLog, "node-log", "", "append the spawned nodes' logs to this file")
	fs.StringVar(&scenarios, "scenario", "storefront", "scenarios to run, comma-separated (floor always runs first)")
	fs.BoolVar(&c.noFloor, "no-floor", false, "do not run the floor scenario")
	fs.IntVar(&c.concurrency, "concurrency", 64, "closed loop: workers back to back; open loop: most operations in flight")
	fs.Float64Var(&c.rate, "rate", 0, "open loop: operations started per second (0: closed loop)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measured phase of each scenario")
	fs.DurationVar(&c.floorDur, "floor-duration", 0, "measured phase of the floor (default: --duration)")
	fs.DurationVar(&c.warmup, "warmup", 0, "load before each measured phase, not recorded")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the random choices (catalog popularity, carts)")
	fs.IntVar(&c.catalog, "catalog", 100_000, "SKUs in the catalog of storefront, checkout and peak-day")
	fs.IntVar(&c.locations, "locations", 3, "locations every SKU is stocked at")
	fs.StringVar(&batches, "batch", "1", "storefront: SKUs per GetAvailability, comma-separated sizes (1,20,100) mixed at random")
	fs.StringVar(&c.view, "view", "basic", "storefront: the GetAvailability view, basic (the figure a storefront shows) or full (with the per-location breakdown)")
	fs.StringVar(&c.writes, "writes", "leader", "checkout, flash-sale, peak-day: send reserve, confirm and release (and peak-day's set-stock) to the leader (found with Cluster.Status when the run starts, or from the stockd-leader header of a write a follower forwarded) or to any node, spread like reads (followers forward them)")
	fs.IntVar(&c.backfillRows, "backfill-rows", 1_000_000, "backfill: rows (counters) in the generation it loads")
	fs.StringVar(&c.jsonPath, "json", "", "write the report as JSON to this file")
	fs.StringVar(&c.plotPath, "plot", "", "draw latency and throughput over time into this .svg or .png file")
	fs.BoolVar(&c.quiet, "quiet", false, "no live progress line")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write the load client's own CPU profile to this file (go tool pprof)")
	c.creds.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	switch {
	case addrs == "" && c.spawn == 0:
		return nil, usageError{"need --addr or --spawn"}
	case addrs != "" && c.spawn != 0:
		return nil, usageError{"--addr and --spawn exclude each other"}
	case c.spawn < 0:
		return nil, usageError{"--spawn: want a node count >= 1"}
	case c.concurrency < 1:
		return nil, usageError{"--concurrency: want >= 1"}
	case c.rate < 0:
		return nil, usageError{"--rate: want >= 0"}
	case c.duration <= 0:
		return nil, usageError{"--duration: want > 0"}
	case c.floorDur < 0:
		return nil, usageError{"--floor-duration: want >= 0"}
	case c.warmup < 0:
		return nil, usageError{"--warmup: want >= 0"}
	case c.catalog < 1:
		return nil, usageError{"--catalog: want >= 1"}
	case c.locations < 1:
		return nil, usageError{"--locations: want >= 1"}
	case c.backfillRows < 1:
		return nil, usageError{"--backfill-rows: want >= 1"}
	}
	for a := range strings.SplitSeq(addrs, ",") {
		if a = strings.TrimSpace(a); a != "" {
			c.addrs = append(c.addrs, a)
		}
	}
	c.nodeArgs = strings.Fields(nodeArgs)
	for s := range strings.SplitSeq(scenarios, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if _, ok := bench.New(s); !ok {
			return nil, usageError{fmt.Sprintf("--scenario: unknown %q (known: %s)", s, strings.Join(bench.ScenarioNames(), ", "))}
		}
		if !slices.Contains(c.scenarios, s) {
			c.scenarios = append(c.scenarios, s)
		}
	}
	if len(c.scenarios) == 0 {
		return nil, usageError{"--scenario: name at least one"}
	}
	for b := range strings.SplitSeq(batches, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(b))
		if err != nil || n < 1 || n > 1000 {
			return nil, usageError{fmt.Sprintf("--batch: want sizes from 1 to 1000, got %q", b)}
		}
		c.batches = append(c.batches, n)
	}
	if c.view != "basic" && c.view != "full" {
		return nil, usageError{fmt.Sprintf("--view: want basic or full, got %q", c.view)}
	}
	if c.writes != "leader" && c.writes != "any" {
		return nil, usageError{fmt.Sprintf("--writes: want leader or any, got %q", c.writes)}
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "suite" {
		return runSuite(ctx, args[1:], stdout, stderr)
	}
	c, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if c.cpuProfile != "" {
		// Where the load client's CPU goes: on a shared machine it competes
		// with the nodes for the same cores.
		f, err := os.Create(c.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	rep, err := measure(ctx, c, append([]string{"stockbench"}, args...), stderr)
	if err != nil {
		return err
	}
	return finish(rep, c, stdout)
}

// finish prints the table, writes the JSON and the plot, and turns a failed
// scenario into an error.
func finish(rep *bench.Report, c *config, stdout io.Writer) error {
	if err := rep.WriteTable(stdout); err != nil {
		return err
	}
	if c.jsonPath != "" {
		if err := rep.WriteJSON(c.jsonPath); err != nil {
			return err
		}
	}
	if c.plotPath != "" {
		if err := rep.WritePlot(c.plotPath); err != nil {
			return err
		}
	}
	if rep.Failed() {
		var names []string
		for _, s := range rep.Scenarios {
			if s.Failed() {
				names = append(names, s.Name)
			}
		}
		return fmt.Errorf("failed: %s", strings.Join(names, ", "))
	}
	return nil
}

// target is the cluster runs drive: a connection per node and, for
// --spawn, the processes. Close tears it down.
type target struct {
	info  bench.Target
	conns []*grpc.ClientConn
	// dialOpts are what conns were dialled with (--tls-*, tokens).
	dialOpts []grpc.DialOption
	cluster  *bench.Cluster // nil for --addr
	nodeLog  *os.File       // nil without --node-log
}

// connect spawns the cluster (--spawn) or dials the running one (--addr). On
// an error, what it started is torn down.
func connect(ctx context.Context, c *config, stderr io.Writer) (t *target, err error) {
	t = &target{info: bench.Target{Addrs: c.addrs}}
	defer func() {
		if err != nil {
			_ = t.Close() // the error that stopped connect says more
			t = nil
		}
	}()
	if c.spawn > 0 {
		opts := bench.SpawnOptions{Stockd: c.stockd, Args: c.nodeArgs}
		if c.nodeLog != "" {
			if t.nodeLog, err = os.OpenFile(c.nodeLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
				return t, err
			}
			opts.Stderr = t.nodeLog
		}
		fmt.Fprintf(stderr, "spawning %d stockd node(s)...\n", c.spawn)
		if t.cluster, err = bench.Spawn(ctx, c.spawn, opts); err != nil {
			return t, err
		}
		t.info = bench.Target{Addrs: t.cluster.Addrs(), Spawned: c.spawn, NodeArgs: c.nodeArgs}
	}
	if t.dialOpts, err = c.creds.dialOptions(); err != nil {
		return t, err
	}
	for _, a := range t.info.Addrs {
		conn, err := grpc.NewClient(a, t.dialOpts...)
		if err != nil {
			return t, fmt.Errorf("dial %s: %w", a, err)
		}
		t.conns = append(t.conns, conn)
	}
	return t, nil
}

// Close closes the connections and kills a spawned cluster.
func (t *target) Close() error {
	var errs []error
	for _, conn := range t.conns {
		errs = append(errs, conn.Close())
	}
	if t.cluster != nil {
		errs = append(errs, t.cluster.Close())
	}
	if t.nodeLog != nil {
		errs = append(errs, t.nodeLog.Close())
	}
	return errors.Join(errs...)
}

// measure connects to (or spawns) the cluster, runs the floor and every
// scenario in turn and returns the report. A spawned cluster is torn down
// before it returns, on Ctrl-C too.
func measure(ctx context.Context, c *config, command []string, stderr io.Writer) (*bench.Report, error) {
	t, err := connect(ctx, c, stderr)
	if err != nil {
		return nil, err
	}
	rep := measureOn(ctx, t, c, command, stderr)
	if err := t.Close(); err != nil {
		// The figures stand: report them and say the teardown failed.
		fmt.Fprintf(stderr, "stockbench: tear down: %v\n", err)
	}
	return rep, nil
}

// measureOn runs the floor (unless --no-floor) and every scenario of c in
// turn on t and returns the report; ctx ending stops it after the scenario
// it interrupted. The suite calls it once per run on a cluster it keeps.
func measureOn(ctx context.Context, t *target, c *config, command []string, stderr io.Writer) *bench.Report {
	rep := &bench.Report{
		Schema:    bench.ReportSchema,
		StartedAt: time.Now().UTC(),
		Command:   command,
		Machine:   bench.ThisMachine(),
		Target:    t.info,
		Options: bench.ReportOptions{
			Concurrency: c.concurrency, Rate: c.rate, DurationS: c.duration.Seconds(),
			FloorDurationS: c.floorDuration().Seconds(), WarmupS: c.warmup.Seconds(),
			Seed: c.seed, Catalog: c.catalog, Locations: c.locations, Batches: c.batches, View: c.view,
			Writes: c.writes,
		},
	}
	env := &bench.Env{
		Conns:       t.conns,
		DialOptions: t.dialOpts,
		Log:         slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Opts: bench.Options{
			SKUs: c.catalog, Locations: c.locations, Seed: c.seed,
			Concurrency: c.concurrency, Duration: c.duration, Batches: c.batches, FullView: c.view == "full",
			WritesToLeader: c.writes == "leader",
		},
	}
	cfg := bench.RunConfig{Rate: c.rate, Warmup: c.warmup}
	if !c.quiet {
		cfg.Progress = stderr
		cfg.ProgressOverwrite = isTerminal(stderr)
	}
	names := c.scenarios
	if !c.noFloor && !slices.Contains(names, "floor") {
		names = append([]string{"floor"}, names...)
	}
	for _, name := range names {
		env.Opts.Duration = c.duration
		if name == "floor" {
			env.Opts.Duration = c.floorDuration()
		}
		sc, _ := bench.New(name)
		if b, ok := sc.(*bench.Backfill); ok {
			b.Rows = c.backfillRows
		}
		rep.Scenarios = append(rep.Scenarios, bench.RunScenario(ctx, sc, env, cfg))
		if ctx.Err() != nil {
			break
		}
	}
	rep.SetFloorRatios()
	return rep
}

// floorDuration is the floor's measured phase: --floor-duration, else
// --duration.
func (c *config) floorDuration() time.Duration {
	if c.floorDur > 0 {
		return c.floorDur
	}
	return c.duration
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
