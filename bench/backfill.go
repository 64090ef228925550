package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stockd/stockd/api/stockdv1"
)

// backfillChannel is the channel the backfill scenario declares over its
// locations (a storefront of the loaded catalog).
const backfillChannel = "bench-backfill"

// Backfill defaults.
const (
	// backfillRows is the default size of the generation.
	backfillRows = 1_000_000
	// backfillChunkRows is the default rows per message, the most stockd takes.
	backfillChunkRows = 10_000
	// backfillTimeout bounds the whole load.
	backfillTimeout = 10 * time.Minute
)

// Backfill is the `backfill` scenario, a Runner: a full count of Rows rows
// (items at Options.Locations locations of the scenario's own) loaded as one
// generation through Erp.Backfill in messages of ChunkRows rows, the last
// one carrying commit. It records op "backfill" once (first chunk sent to
// commit answered), "backfill-commit" once (commit sent to answered) and
// "backfill-chunk" per message (the time its Send took: stockd reads the
// next chunk only once the previous one is applied, so this is the chunk's
// share of the load once flow control pushes back); its Summary gives rows/s
// over the whole load. Verify reads every counter back through
// Erp.ExportStock and checks that each holds the count and version the
// generation gave it. Options.Duration is ignored. A Backfill is used for
// one run.
type Backfill struct {
	// Rows is the generation's size; 0 means 1,000,000.
	Rows int
	// ChunkRows is the rows per message; 0 means 10,000, at most 10,000.
	ChunkRows int

	locs []string
	gen  string
	// version is every row's version; salt varies the counts from run to
	// run, so a run that applied nothing cannot pass on an earlier run's
	// counts.
	version uint64
	salt    uint64
	elapsed time.Duration
	rows    uint64
}

// NewBackfill returns the backfill scenario with its defaults.
func NewBackfill() *Backfill { return &Backfill{} }

// Name implements Scenario.
func (*Backfill) Name() string { return "backfill" }

// Setup implements Scenario: it declares the scenario's locations and
// channel and checks that the node serves Backfill.
func (b *Backfill) Setup(ctx context.Context, env *Env) error {
	if b.Rows <= 0 {
		b.Rows = backfillRows
	}
	if b.ChunkRows <= 0 {
		b.ChunkRows = backfillChunkRows
	}
	b.ChunkRows = min(b.ChunkRows, maxStockRows)
	b.locs = scenarioLocations("backfill", env.Opts.Locations)
	b.gen = "backfill-" + runNonce()
	b.version = scenarioVersionBase()
	b.salt = rand.Uint64() % 1000
	if err := probeBackfill(ctx, env.Conn(0)); err != nil {
		return err
	}
	return putLocationsAndChannel(ctx, env, backfillChannel, b.locs)
}

// probeBackfill opens a Backfill stream and ends it without a message:
// stockd answers FAILED_PRECONDITION (no commit, nothing staged or applied),
// a node without the RPC Unimplemented.
func probeBackfill(ctx context.Context, conn *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	st, err := stockdv1.NewErpClient(conn).Backfill(ctx)
	if err == nil {
		_, err = st.CloseAndRecv()
	}
	if status.Code(err) == codes.FailedPrecondition {
		return nil
	}
	if err == nil {
		return fmt.Errorf("probe backfill: an empty generation was answered OK, want FAILED_PRECONDITION")
	}
	return unavailableIf(fmt.Errorf("probe backfill: %w", err), "Erp/Backfill")
}

// row is row g of the generation: item g / locations at location
// g % locations.
func (b *Backfill) row(g int, item string) *stockdv1.StockCount {
	return &stockdv1.StockCount{Item: item, Location: b.locs[g%len(b.locs)],
		OnHandBaseUnits: backfillCount(g, b.salt), Version: b.version}
}

// backfillCount is row g's count with salt.
func backfillCount(g int, salt uint64) int64 {
	return int64((uint64(g)*2654435761 + salt) % 10_000)
}

// Do implements Scenario. The driver runs a Runner through Run and never
// calls Do; it does nothing.
func (*Backfill) Do(context.Context, *Env, int, *rand.Rand, Recorder) {}

// Run implements Runner: it sends the generation and waits for the commit's
// answer, which must count every row applied.
func (b *Backfill) Run(ctx context.Context, env *Env, rec Recorder) error {
	ctx, cancel := context.WithTimeout(ctx, backfillTimeout)
	defer cancel()
	st, err := stockdv1.NewErpClient(env.Conn(0)).Backfill(ctx)
	if err != nil {
		rec.Record("backfill", 0, err)
		return fmt.Errorf("backfill: %w", err)
	}
	start := time.Now()
	var commitSent time.Time
	item := ""
	for first := 0; first < b.Rows; first += b.ChunkRows {
		n := min(b.ChunkRows, b.Rows-first)
		req := &stockdv1.BackfillRequest{GenerationId: b.gen, Rows: make([]*stockdv1.StockCount, n)}
		for i := range n {
			g := first + i
			if g%len(b.locs) == 0 || item == "" {
				item = fmt.Sprintf("backfill-%06d", g/len(b.locs))
			}
			req.Rows[i] = b.row(g, item)
		}
		req.Commit = first+n >= b.Rows
		sendStart := time.Now()
		if req.Commit {
			commitSent = sendStart
		}
		err := st.Send(req)
		rec.Record("backfill-chunk", time.Since(sendStart), err)
		if err != nil {
			break // the stream's status comes from CloseAndRecv
		}
	}
	resp, err := st.CloseAndRecv()
	b.elapsed = time.Since(start)
	rec.Record("backfill", b.elapsed, err)
	if !commitSent.IsZero() {
		rec.Record("backfill-commit", time.Since(commitSent), err)
	}
	if err != nil {
		return fmt.Errorf("backfill generation %s: %w", b.gen, err)
	}
	b.rows = resp.GetRows()
	if resp.GetRows() != uint64(b.Rows) || resp.GetApplied() != uint32(b.Rows) {
		return fmt.Errorf("backfill generation %s of %d rows: got %d rows, %d applied, %d stale, %d rejected (first: %v), want all applied",
			b.gen, b.Rows, resp.GetRows(), resp.GetApplied(), resp.GetIgnoredStale(), resp.GetRejected(), resp.GetRejectedRows())
	}
	if env.Log != nil {
		env.Log.Info("backfill committed", "generation", b.gen, "rows", b.Rows, "elapsed", b.elapsed,
			"rows_per_sec", float64(b.Rows)/b.elapsed.Seconds())
	}
	return nil
}

// Verify implements Scenario: every counter of the generation holds its
// row's count and version.
func (b *Backfill) Verify(ctx context.Context, env *Env) error {
	return joinLimited(b.checkCounters(ctx, env, b.salt), 20)
}

// checkCounters exports the scenario's locations and checks each counter of
// the generation against its row's count with salt (Verify passes the run's
// own; a test passes another to see the check fail).
func (b *Backfill) checkCounters(ctx context.Context, env *Env, salt uint64) []error {
	var errs []error
	seen := make([]bool, b.Rows)
	found := 0
	for li, loc := range b.locs {
		err := scenarioExport(ctx, env.Conn(0), loc, func(sc *stockdv1.StockCounter) {
			num, ok := strings.CutPrefix(sc.GetItem(), "backfill-")
			i, err := strconv.Atoi(num)
			g := i*len(b.locs) + li
			if !ok || err != nil || i < 0 || g >= b.Rows || sc.GetItem() != fmt.Sprintf("backfill-%06d", i) {
				return // an earlier, larger generation's
			}
			seen[g] = true
			found++
			if want := backfillCount(g, salt); sc.GetOnHandBaseUnits() != want || sc.GetVersion() != b.version {
				errs = append(errs, fmt.Errorf("counter %s@%s: got count %d version %d, want count %d version %d",
					sc.GetItem(), loc, sc.GetOnHandBaseUnits(), sc.GetVersion(), want, b.version))
			}
		})
		if err != nil {
			return append(errs, err)
		}
	}
	if found != b.Rows {
		for g, ok := range seen {
			if !ok {
				errs = append(errs, fmt.Errorf("counter backfill-%06d@%s: missing from ExportStock (%d of %d counters found)",
					g/len(b.locs), b.locs[g%len(b.locs)], found, b.Rows))
				break
			}
		}
	}
	return errs
}

// Summary implements Summarizer: rows loaded per second, first chunk sent
// to commit answered.
func (b *Backfill) Summary(*ScenarioResult) []Figure {
	if b.elapsed <= 0 || b.rows == 0 {
		return nil
	}
	return []Figure{
		{Name: "rows loaded", Value: float64(b.rows), Unit: "rows"},
		{Name: "load rate", Value: float64(b.rows) / b.elapsed.Seconds(), Unit: "rows/s"},
		{Name: "load time", Value: b.elapsed.Seconds(), Unit: "s"},
	}
}
