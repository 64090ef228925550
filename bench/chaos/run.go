package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stockd/stockd/api/stockdv1"
)

// RunConfig configures one run: a workload under a schedule of faults.
type RunConfig struct {
	Seed uint64
	// Faults is how many faults the schedule injects (each nemesis in turn,
	// in an order drawn from the seed); 0 means one of each. Duration, when
	// set, instead keeps injecting faults drawn at random until it has passed.
	Faults   int
	Duration time.Duration
	// Hold is how long each fault lasts (longer than the 500 ms election
	// timeout); Quiet is the fault-free time after each recovery.
	Hold, Quiet time.Duration
	// Recover bounds the wait for the cluster to be ready after a heal.
	Recover time.Duration
	// Nemeses restricts the schedule to these names; empty means all.
	Nemeses  []string
	Workload WorkloadConfig
	// LinTimeout bounds porcupine per SKU (an inconclusive check is reported,
	// not failed).
	LinTimeout time.Duration
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
}

// Report is the outcome of a run.
type Report struct {
	Seed       uint64
	Faults     []string
	Injected   map[string]int // nemesis -> faults injected
	Ops        map[string]int // "kind outcome" -> count
	Violations []string
	Lin        []linResult
	History    []op
	FinalRev   uint64
	LinTook    time.Duration // the linearizability check's wall time
}

// Failed reports whether any checker found a violation.
func (r *Report) Failed() bool { return len(r.Violations) > 0 }

// Summary is a short table of the run.
func (r *Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d, %d faults, %d operations, final revision %d\n", r.Seed, len(r.Faults), len(r.History), r.FinalRev)
	names := make([]string, 0, len(r.Injected))
	for k := range r.Injected {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(&b, "  fault %-22s %6d\n", k, r.Injected[k])
	}
	keys := make([]string, 0, len(r.Ops))
	for k := range r.Ops {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "  %-22s %6d\n", k, r.Ops[k])
	}
	// Each history's verdict, or with many (a soak's generations) a count
	// per verdict and each history that is not Ok.
	if len(r.Lin) <= 20 {
		for _, l := range r.Lin {
			fmt.Fprintf(&b, "  linearizable %-8s %5d ops: %s\n", l.sku, l.ops, l.result)
		}
	} else {
		count, ops := map[porcupine.CheckResult]int{}, 0
		for _, l := range r.Lin {
			count[l.result]++
			ops += l.ops
			if l.result != porcupine.Ok {
				fmt.Fprintf(&b, "  linearizable %-8s %5d ops: %s\n", l.sku, l.ops, l.result)
			}
		}
		fmt.Fprintf(&b, "  linearizability: %d histories, %d ops: %d Ok, %d Illegal, %d Unknown (checked in %v)\n",
			len(r.Lin), ops, count[porcupine.Ok], count[porcupine.Illegal], count[porcupine.Unknown], r.LinTook.Round(time.Second))
	}
	fmt.Fprintf(&b, "  violations: %d\n", len(r.Violations))
	return b.String()
}

// Run sets up the catalog, runs the workload while the schedule injects
// faults, restores the cluster and runs every checker. An error means the
// run itself could not proceed (setup, or the cluster never recovered);
// checker findings are in the report.
func Run(ctx context.Context, c *Cluster, cfg RunConfig) (*Report, error) {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.Hold == 0 {
		cfg.Hold = 3 * time.Second
	}
	if cfg.Quiet == 0 {
		cfg.Quiet = time.Second
	}
	if cfg.Recover == 0 {
		// Generous: a snapshot catch-up may need two installs (the leader
		// compacts past the first while sending it) and a request stuck on
		// a black-holed connection waits out raft's 10 s transport timeout;
		// on 2 cores under -race that took 28 s once (seed 1795917791291577287).
		cfg.Recover = 60 * time.Second
	}
	if cfg.LinTimeout == 0 {
		cfg.LinTimeout = 30 * time.Second
	}
	cfg.Workload.Seed = cfg.Seed
	rep := &Report{Seed: cfg.Seed, Ops: map[string]int{}, Injected: map[string]int{}}
	w := newWorkload(cfg.Workload, c)
	if err := w.setup(ctx); err != nil {
		return rep, err
	}

	stop, done := make(chan struct{}), make(chan struct{})
	go func() { defer close(done); w.run(ctx, stop) }()
	schedErr := schedule(ctx, c, cfg, rep)
	close(stop)
	<-done
	rep.History = w.h.snapshot()
	for _, o := range rep.History {
		rep.Ops[string(o.Kind)+" "+string(o.Outcome)]++
	}
	if schedErr != nil {
		return rep, schedErr
	}
	for _, err := range c.Exited() {
		rep.Violations = append(rep.Violations, "node crashed: "+err.Error())
	}
	// Hygiene: no panic or fatal error in any run of any node.
	rep.Violations = append(rep.Violations, checkNodeLogs(c.nodeLogs())...)
	if err := c.Restore(); err != nil {
		return rep, fmt.Errorf("restore: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, cfg.Recover)
	defer cancel()
	if err := c.WaitReady(rctx, len(c.Nodes)); err != nil {
		rep.Violations = append(rep.Violations, "cluster did not recover after the final heal: "+err.Error())
		return rep, nil
	}
	cfg.Logf("healed; final write")
	final, err := finalChecks(rctx, c, w, rep)
	if err != nil {
		rep.Violations = append(rep.Violations, err.Error())
		return rep, nil
	}
	resolveUnknowns(rep.History, final)
	cfg.Logf("checking linearizability")
	t0 := time.Now()
	rep.Lin = checkLinearizable(rep.History, w.allLin(), w.cfg.InitialStock, cfg.LinTimeout)
	rep.Lin = append(rep.Lin, checkCartsLinearizable(rep.History, w.allCarts(), w.cfg.InitialStock, cfg.LinTimeout)...)
	rep.LinTook = time.Since(t0)
	// SKUs of generations the run never reached have nothing to check.
	rep.Lin = slices.DeleteFunc(rep.Lin, func(l linResult) bool { return l.ops == 0 })
	cfg.Logf("linearizability checked in %v", rep.LinTook.Round(time.Millisecond))
	for _, l := range rep.Lin {
		if l.result == porcupine.Illegal {
			rep.Violations = append(rep.Violations, fmt.Sprintf("linearizability: SKU %s history of %d operations is not linearizable", l.sku, l.ops))
		}
	}
	return rep, nil
}

// schedule injects faults until the count or the duration is reached.
// With a count, the pool goes round in an order drawn from the seed (each
// nemesis once per round); with a duration, each fault is drawn at random.
func schedule(ctx context.Context, c *Cluster, cfg RunConfig, rep *Report) error {
	pool, err := nemesisPool(cfg.Nemeses)
	if err != nil {
		return err
	}
	faults := cfg.Faults
	if faults == 0 {
		faults = len(pool)
	}
	r := rand.New(rand.NewPCG(cfg.Seed, 0x6e656d))
	r.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	start := time.Now()
	// Let the workload run fault-free first.
	if err := wait(ctx, cfg.Quiet); err != nil {
		return err
	}
	for i := 0; ; i++ {
		if cfg.Duration > 0 && time.Since(start) >= cfg.Duration || cfg.Duration == 0 && i >= faults {
			return nil
		}
		n := pool[i%len(pool)]
		if cfg.Duration > 0 {
			n = pool[r.IntN(len(pool))]
		} else if i > 0 && i%len(pool) == 0 {
			r.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
		}
		at := time.Since(start).Seconds()
		f, err := n.inject(ctx, c, r)
		if err != nil {
			return fmt.Errorf("inject %s: %w", n.name, err)
		}
		line := fmt.Sprintf("%6.1fs %s: %s", at, n.name, f.desc)
		if f.heal != nil {
			hold := cfg.Hold + time.Duration(r.Int64N(int64(cfg.Hold)/2+1))
			line += fmt.Sprintf(" for %v", hold.Round(time.Millisecond))
			cfg.Logf("%s", line)
			if err := wait(ctx, hold); err != nil {
				return err
			}
			if err := f.heal(); err != nil {
				return fmt.Errorf("heal %s: %w", n.name, err)
			}
		} else {
			cfg.Logf("%s", line)
		}
		rep.Faults = append(rep.Faults, line)
		rep.Injected[n.name]++
		rctx, cancel := context.WithTimeout(ctx, cfg.Recover)
		t0 := time.Now()
		err = c.WaitReady(rctx, len(c.Nodes))
		if err == nil && f.verify != nil {
			note, v := f.verify(rctx)
			if note != "" {
				cfg.Logf("        %s", note)
			}
			for _, s := range v {
				rep.Violations = append(rep.Violations, fmt.Sprintf("%s (fault at %.1fs)", s, at))
			}
		}
		cancel()
		if err != nil {
			return fmt.Errorf("after %s: %w", line, err)
		}
		cfg.Logf("        recovered in %v", time.Since(t0).Round(time.Millisecond))
		if err := wait(ctx, cfg.Quiet); err != nil {
			return err
		}
	}
}

// nemesisPool returns the nemeses named (all when names is empty).
func nemesisPool(names []string) ([]nemesis, error) {
	var pool []nemesis
	for _, n := range Nemeses() {
		if len(names) == 0 || contains(names, n.name) {
			pool = append(pool, n)
		}
	}
	for _, name := range names {
		found := false
		for _, n := range pool {
			found = found || n.name == name
		}
		if !found {
			return nil, fmt.Errorf("no nemesis named %q", name)
		}
	}
	return pool, nil
}

// wait holds for d: a schedule step, not synchronisation.
func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// finalChecks makes the final write, waits for convergence and runs the
// state checkers; it returns node1's final reservations. An error means a
// check could not run (itself a failure).
func finalChecks(ctx context.Context, c *Cluster, w *workload, rep *Report) (map[string]resView, error) {
	var rev uint64
	err := retry(ctx, "final write", func(ctx context.Context) error {
		resp, err := c.Nodes[0].Erp.SetStock(ctx, &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{
			{Item: finalItem, Location: chaosLocation, OnHandBaseUnits: w.cfg.InitialStock + 1, Version: 2}}})
		if err != nil {
			return err
		}
		// A retry of the same row after an unknown answer is stale: fine.
		rev = resp.GetRevision()
		return nil
	})
	if err != nil {
		return nil, err
	}
	rep.FinalRev = rev

	// I4: poll until every member applied one index, then compare digests.
	var last []memberView
	err = retry(ctx, "convergence", func(ctx context.Context) error {
		st, err := c.Nodes[0].Cl.Status(ctx, &stockdv1.StatusRequest{IncludeDigests: true})
		if err != nil {
			return err
		}
		last = last[:0]
		for _, m := range st.GetMembers() {
			last = append(last, memberView{ID: m.GetNodeId(), Applied: m.GetAppliedIndex(), Digest: m.GetStateDigest()})
		}
		settled, v := checkDigests(last)
		if len(v) > 0 {
			rep.Violations = append(rep.Violations, v...)
			return nil
		}
		if !settled {
			return fmt.Errorf("not settled: %+v", last)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	noLowering := func(sku string) bool { return !w.isLin(sku) }
	rep.Violations = append(rep.Violations, checkReads(rep.History, noLowering)...)
	rep.Violations = append(rep.Violations, checkMonotonic(rep.History)...)
	rep.Violations = append(rep.Violations, checkUnexpected(rep.History)...)

	finalRes := make([]map[string]resView, len(c.Nodes))
	finalFig := make([]map[string]skuRead, len(c.Nodes))
	for i, nd := range c.Nodes {
		if finalRes[i], err = listReservations(ctx, nd, rev); err != nil {
			return nil, fmt.Errorf("final reservations of %s: %w", nd.ID, err)
		}
		finalFig[i] = map[string]skuRead{}
		for skus := range slices.Chunk(w.allSKUs(), 1000) { // GetAvailability's limit
			err := retry(ctx, "final figures of "+nd.ID, func(ctx context.Context) error {
				resp, err := nd.Inv.GetAvailability(ctx, &stockdv1.GetAvailabilityRequest{Channel: chaosChannel, Skus: skus, MinRevision: rev})
				if err != nil {
					return err
				}
				for _, rd := range readsOf(resp.GetSkus()) {
					finalFig[i][rd.SKU] = rd
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
	}
	rep.Violations = append(rep.Violations, checkAcks(rep.History, finalRes)...)
	rep.Violations = append(rep.Violations, checkFinalFigures(finalFig, noLowering)...)
	rep.Violations = append(rep.Violations, checkAppliedOnce(finalFig, finalRes)...)
	return finalRes[0], nil
}

// listReservations pages through the chaos channel's reservations on nd at
// revision rev or later.
func listReservations(ctx context.Context, nd *Node, rev uint64) (map[string]resView, error) {
	out := map[string]resView{}
	token := ""
	for {
		var resp *stockdv1.ListReservationsResponse
		err := retry(ctx, "list reservations", func(ctx context.Context) error {
			var err error
			resp, err = nd.Inv.ListReservations(ctx, &stockdv1.ListReservationsRequest{Channel: chaosChannel, PageSize: 1000, PageToken: token, MinRevision: rev})
			if status.Code(err) == codes.InvalidArgument {
				return errors.Join(err, ctx.Err())
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, r := range resp.GetReservations() {
			v := resView{Found: true, State: strings.TrimPrefix(r.GetState().String(), "RESERVATION_STATE_"), Lines: map[string]int64{}}
			for _, l := range r.GetLines() {
				v.Lines[l.GetSku()] += l.GetQuantitySkuUnits()
			}
			out[r.GetReservationId()] = v
		}
		if token = resp.GetNextPageToken(); token == "" {
			return out, nil
		}
	}
}
