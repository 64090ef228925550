package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/stockd/stockd/api/stockdv1"
)

// watchChannel is the channel the watch scenario's watchers watch.
const watchChannel = "bench-watch"

// Watch defaults.
const (
	watchWatchers = 100
	watchMaxSKUs  = 1000
	// watchRate is the default ERP changes per second.
	watchRate = 200
	// watchSettle is the default time every watcher has, once the last
	// change is acknowledged, to see the final figures.
	watchSettle = 10 * time.Second
	// watchReady bounds the wait for every watcher's first state.
	watchReady = 30 * time.Second
	// watchRetries is how often a broken watch resumes before it gives up.
	watchRetries = 3
	// watchPoll is how often Run looks at the watchers while it waits.
	watchPoll = 20 * time.Millisecond
)

// Watch is the `watch` scenario, a Runner: Watchers streams on
// Inventory.Watch over a catalog of SKUs (stocked at one location of the
// scenario's own), spread over every node, even ones by SKU prefix (the
// whole catalog) and odd ones by an explicit list (every other SKU). Once
// each has its first state, an ERP writer sends one SetStock change at a
// time at Rate changes per second for Options.Duration, each change giving
// one SKU a count no earlier change used (op "set-stock"). The latency of an
// event is from the change's send to a watcher's receipt of a figure that
// includes it (op "watch-event"; a change that a later one on the same SKU
// overtook before it was sent is coalesced and not measured); with several
// nodes the Summary gives it per node. Then every watcher has SettleTimeout
// to see the final count of each SKU it watches. Verify checks that each
// did, and that the cluster holds those counts. A Watch is used for one run.
type Watch struct {
	// Watchers is the number of Watch streams; 0 means 100.
	Watchers int
	// SKUs is the catalog size; 0 means Options.SKUs, at most 1,000.
	SKUs int
	// Rate is the ERP changes per second; 0 means 200.
	Rate float64
	// SettleTimeout is how long the watchers have to see the final counts
	// after the last change; 0 means 10 s.
	SettleTimeout time.Duration

	items []string
	index map[string]int
	loc   string
	// base is the setup's version and count of every SKU; change k sends
	// base + k as both. Counts thus only grow, across runs too, so a
	// follower that shows an earlier run's figures for a moment cannot pass
	// for a change of this run.
	base uint64

	// What Run leaves for Verify and Summary.
	final    []int64 // per SKU: the last count acknowledged (base: the setup's)
	watchers []*watchWatcher
	changes  int
	nodes    []*Recording // per node: "watch-event" of its watchers
	elapsed  time.Duration
}

// NewWatch returns the watch scenario with its defaults.
func NewWatch() *Watch { return &Watch{} }

// Name implements Scenario.
func (*Watch) Name() string { return "watch" }

// watchWatcher is one Watch stream's filter and what it has seen.
type watchWatcher struct {
	id, node int
	prefix   bool  // watches by prefix (every SKU), else the explicit skus
	skus     []int // the catalog indexes it watches

	mu       sync.Mutex
	seen     []int64 // per catalog index: the highest count seen
	revision uint64  // the last progress mark: resume from it
	ready    bool    // its first state transfer is complete
	err      error   // the stream failed for good
}

// watchClock is, per change k, when it was sent and to which SKU. Safe for concurrent use.
type watchClock struct {
	mu  sync.RWMutex
	at  []time.Time
	sku []int
}

func (c *watchClock) add(k int64, sku int, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for int64(len(c.at)) <= k {
		c.at = append(c.at, time.Time{})
		c.sku = append(c.sku, -1)
	}
	c.at[k], c.sku[k] = at, sku
}

func (c *watchClock) lookup(k int64) (time.Time, int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if k <= 0 || k >= int64(len(c.at)) {
		return time.Time{}, -1
	}
	return c.at[k], c.sku[k]
}

// Setup implements Scenario: it declares the scenario's location and
// channel, sets every SKU's count to the run's base, and checks that the
// node serves Watch.
func (wt *Watch) Setup(ctx context.Context, env *Env) error {
	if wt.Watchers <= 0 {
		wt.Watchers = watchWatchers
	}
	if wt.Rate <= 0 {
		wt.Rate = watchRate
	}
	if wt.SettleTimeout <= 0 {
		wt.SettleTimeout = watchSettle
	}
	n := wt.SKUs
	if n <= 0 {
		n = env.Opts.SKUs
	}
	wt.items = itemNames("watch", min(max(n, 1), watchMaxSKUs))
	wt.index = make(map[string]int, len(wt.items))
	for i, s := range wt.items {
		wt.index[s] = i
	}
	wt.loc = scenarioLocations("watch", 1)[0]
	wt.base = scenarioVersionBase()
	if err := putLocationsAndChannel(ctx, env, watchChannel, []string{wt.loc}); err != nil {
		return err
	}
	rev, err := setStockRev(ctx, env, catalogRows(wt.items, []string{wt.loc}, int64(wt.base), wt.base))
	if err != nil {
		return err
	}
	// Watchers start on every node: each must have applied the channel
	// first, or a follower answers NOT_FOUND for it.
	if err := awaitApplied(ctx, env, watchChannel, wt.items[0], rev); err != nil {
		return err
	}
	return probeWatch(ctx, env.Conn(0), wt.items[0])
}

// probeWatch opens a Watch of one SKU and reads its first message:
// Unavailable if the node lacks the RPC.
func probeWatch(ctx context.Context, conn *grpc.ClientConn, sku string) error {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	st, err := stockdv1.NewInventoryClient(conn).Watch(ctx, &stockdv1.WatchRequest{Channel: watchChannel, Skus: []string{sku}})
	if err == nil {
		_, err = st.Recv()
	}
	if err == nil {
		return nil
	}
	return unavailableIf(fmt.Errorf("probe watch: %w", err), "Inventory/Watch")
}

// Do implements Scenario. The driver runs a Runner through Run and never
// calls Do; it does nothing.
func (*Watch) Do(context.Context, *Env, int, *rand.Rand, Recorder) {}

// Run implements Runner: it starts the watchers, waits for their first
// state, runs the writer for Options.Duration, gives the watchers
// SettleTimeout to catch up, then stops them. Only a watcher that never got
// its first state, or a writer that cannot write, fails the run; what the
// watchers missed is Verify's to report.
func (wt *Watch) Run(ctx context.Context, env *Env, rec Recorder) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	clock := &watchClock{}
	wt.final = make([]int64, len(wt.items))
	for j := range wt.final {
		wt.final[j] = int64(wt.base)
	}
	wt.nodes = make([]*Recording, len(env.Conns))
	for i := range wt.nodes {
		wt.nodes[i] = NewRecording()
	}
	wt.watchers = make([]*watchWatcher, wt.Watchers)
	for i := range wt.watchers {
		w := &watchWatcher{id: i, node: i % len(env.Conns), prefix: i%2 == 0, seen: slices.Clone(wt.final)}
		for j := range wt.items {
			if w.prefix || j%2 == 1 || len(wt.items) == 1 {
				w.skus = append(w.skus, j)
			}
		}
		wt.watchers[i] = w
		wg.Go(func() { wt.watch(ctx, env.Conns[w.node], w, clock, rec) })
	}
	if err := wt.waitWatchers(ctx, watchReady, func(w *watchWatcher) bool { return w.ready }); err != nil {
		return fmt.Errorf("watchers' first state: %w", err)
	}

	start := time.Now()
	if err := wt.write(ctx, env, clock, rec); err != nil {
		return err
	}
	// A watcher that misses the final counts is Verify's to report.
	_ = wt.waitWatchers(ctx, wt.SettleTimeout, wt.converged)
	wt.elapsed = time.Since(start)
	return nil
}

// write sends the changes at wt.Rate for Options.Duration, one at a time,
// through the first node. A change that fails is sent again with the same
// version (a duplicate is ignored as stale), so every SKU's final count is
// known.
func (wt *Watch) write(ctx context.Context, env *Env, clock *watchClock, rec Recorder) error {
	erp := stockdv1.NewErpClient(env.Conn(0))
	rnd := rand.New(rand.NewPCG(env.Opts.Seed, 0x7761746368)) // "watch"
	interval := time.Duration(float64(time.Second) / wt.Rate)
	start := time.Now()
	end := start.Add(env.Opts.Duration)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for k := int64(1); ; k++ {
		due := start.Add(time.Duration(k-1) * interval)
		if !due.Before(end) {
			return nil
		}
		timer.Reset(time.Until(due))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		sku := rnd.IntN(len(wt.items))
		row := &stockdv1.StockCount{Item: wt.items[sku], Location: wt.loc, OnHandBaseUnits: int64(wt.base) + k, Version: wt.base + uint64(k)}
		var err error
		for range watchRetries {
			sent := time.Now()
			clock.add(k, sku, sent)
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			var resp *stockdv1.SetStockResponse
			resp, err = erp.SetStock(cctx, &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{row}})
			cancel()
			if err == nil && (len(resp.GetRows()) != 1 || resp.GetRows()[0].GetVersion() != row.GetVersion()) {
				err = fmt.Errorf("set stock %s@%s version %d: got %v", row.GetItem(), row.GetLocation(), row.GetVersion(), resp.GetRows())
			}
			rec.Record("set-stock", time.Since(sent), err)
			if err == nil || ctx.Err() != nil {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("change %d: %w", k, err)
		}
		wt.final[sku] = row.GetOnHandBaseUnits()
		wt.changes = int(k)
	}
}

// converged reports whether w has seen the final count of every SKU it
// watches.
func (wt *Watch) converged(w *watchWatcher) bool {
	for _, j := range w.skus {
		if w.seen[j] != wt.final[j] {
			return false
		}
	}
	return true
}

// waitWatchers polls until ok holds for every watcher (called under the
// watcher's lock), a watcher fails, or timeout passes.
func (wt *Watch) waitWatchers(ctx context.Context, timeout time.Duration, ok func(*watchWatcher) bool) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(watchPoll)
	defer tick.Stop()
	for {
		waiting := 0
		for _, w := range wt.watchers {
			w.mu.Lock()
			err, done := w.err, ok(w)
			w.mu.Unlock()
			if err != nil {
				return fmt.Errorf("watcher %d on node %d: %w", w.id, w.node+1, err)
			}
			if !done {
				waiting++
			}
		}
		if waiting == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d watchers still waiting after %v", waiting, len(wt.watchers), timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// watch runs watcher w until ctx ends, resuming from its last progress mark
// when its stream breaks (watchRetries times in a row at most).
func (wt *Watch) watch(ctx context.Context, conn *grpc.ClientConn, w *watchWatcher, clock *watchClock, rec Recorder) {
	inv := stockdv1.NewInventoryClient(conn)
	for failures := 0; ; {
		req := &stockdv1.WatchRequest{Channel: watchChannel}
		if w.prefix {
			req.SkuPrefix = "watch-"
		} else {
			for _, j := range w.skus {
				req.Skus = append(req.Skus, wt.items[j])
			}
		}
		w.mu.Lock()
		req.FromRevision = w.revision
		w.mu.Unlock()
		err := wt.follow(ctx, inv, req, w, clock, rec, &failures)
		if ctx.Err() != nil {
			return
		}
		rec.Record("watch-stream", 0, err)
		if failures++; failures > watchRetries {
			w.mu.Lock()
			w.err = err
			w.mu.Unlock()
			return
		}
	}
}

// follow reads one Watch stream until it ends, noting what w sees and
// recording each change's latency.
func (wt *Watch) follow(ctx context.Context, inv stockdv1.InventoryClient, req *stockdv1.WatchRequest,
	w *watchWatcher, clock *watchClock, rec Recorder, failures *int) error {
	st, err := inv.Watch(ctx, req)
	if err != nil {
		return err
	}
	for {
		msg, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return errors.New("the server ended the watch")
		}
		if err != nil {
			return err
		}
		now := time.Now()
		w.mu.Lock()
		for _, ev := range msg.GetEvents() {
			a := ev.GetAvailability()
			j, ok := wt.index[a.GetSku()]
			if !ok {
				continue
			}
			count := a.GetAvailableSkuUnits()
			if count <= w.seen[j] {
				continue // a figure seen already, or older than this run's setup
			}
			w.seen[j] = count
			sent, sku := clock.lookup(count - int64(wt.base))
			if sku != j {
				continue // not a change of this run's writer: nothing to measure
			}
			d := now.Sub(sent)
			rec.Record("watch-event", d, nil)
			wt.nodes[w.node].Record("watch-event", d, nil)
		}
		if msg.GetRevision() != 0 {
			w.revision = msg.GetRevision()
			w.ready = true
			*failures = 0
		}
		w.mu.Unlock()
	}
}

// Verify implements Scenario: every watcher saw the final count of every SKU
// it watches, and the cluster holds those counts.
func (wt *Watch) Verify(ctx context.Context, env *Env) error {
	errs := wt.checkWatchers()
	counters, err := readCounters(ctx, env, watchChannel, wt.items)
	if err != nil {
		errs = append(errs, err)
	}
	for j, s := range wt.items {
		c, ok := counters[counterKey{s, wt.loc}]
		if err == nil && (!ok || c.onHand != wt.final[j]) {
			errs = append(errs, fmt.Errorf("counter %s@%s: holds %d, want the last count sent %d", s, wt.loc, c.onHand, wt.final[j]))
		}
	}
	return joinLimited(errs, 20)
}

// checkWatchers compares what each watcher saw last with the final counts.
func (wt *Watch) checkWatchers() []error {
	var errs []error
	for _, w := range wt.watchers {
		w.mu.Lock()
		for _, j := range w.skus {
			if w.seen[j] != wt.final[j] {
				errs = append(errs, fmt.Errorf("watcher %d on node %d: sku %s: last saw %d, want the final %d",
					w.id, w.node+1, wt.items[j], w.seen[j], wt.final[j]))
			}
		}
		w.mu.Unlock()
	}
	return errs
}

// Summary implements Summarizer: the changes sent and, with several nodes,
// the event latency per node.
func (wt *Watch) Summary(*ScenarioResult) []Figure {
	out := []Figure{{Name: "changes sent", Value: float64(wt.changes)}, {Name: "watchers", Value: float64(len(wt.watchers))}}
	if len(wt.nodes) < 2 {
		return out
	}
	for i, r := range wt.nodes {
		ops, _ := r.Results(wt.elapsed)
		for _, o := range ops {
			node := "node " + strconv.Itoa(i+1)
			out = append(out,
				Figure{Name: o.Op + " p50 on " + node, Value: o.P50Ms, Unit: "ms"},
				Figure{Name: o.Op + " p99 on " + node, Value: o.P99Ms, Unit: "ms"})
		}
	}
	return out
}
