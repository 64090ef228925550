package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stockd/stockd/api/stockdv1"
)

// erpStormChannel is the channel erp-storm's readers read through.
const erpStormChannel = "bench-erp-storm"

// ERP storm defaults and bounds.
const (
	// erpStormBatchRows is the default rows per PushStock batch.
	erpStormBatchRows = 1000
	// erpStormWindow is the default batches in flight; stockd reads up to
	// 64 ahead of the one it applies.
	erpStormWindow = 16
	// erpStormDrain bounds Verify's wait for the batches in flight.
	erpStormDrain = 30 * time.Second
)

// ERPStorm is the `erp-storm` scenario: an ERP adapter pushing counts
// through Erp.PushStock as fast as stockd takes them, on a connection of its
// own, while the workers read like a storefront. The push runs from the
// first Do until Verify: batches of BatchRows rows sweep the catalog's
// counters (Items items at Options.Locations locations of the scenario's
// own) round after round, each round with a higher version and new counts,
// up to Window batches in flight (op "push-<BatchRows>", from a batch's send
// to its tagged answer). Each Do is one GetAvailability of one uniformly
// drawn item (op "get-1"): the reader latency under ingestion. Verify stops
// the push, waits for every answer, and reads every counter back through
// Erp.ExportStock: each must hold the last count acknowledged for it (a
// batch in doubt, when the stream broke, may have moved it on to a count
// sent later, never to one not sent). An ERPStorm is used for one run.
type ERPStorm struct {
	// BatchRows is the rows per PushStock batch; 0 means 1,000; at most
	// 10,000.
	BatchRows int
	// Window is the batches in flight; 0 means 16.
	Window int
	// Items is the catalog size; 0 means Options.SKUs.
	Items int

	items []string
	locs  []string
	base  uint64 // the setup's version; round r is sent with base + r
	// setupRev is the revision that acknowledged the setup's counts: reads
	// wait for it, on followers too.
	setupRev uint64
	// sentRound and ackedRound are, per counter, the last round sent and
	// the highest acknowledged (0: the setup's count).
	sentRound  []atomic.Uint32
	ackedRound []atomic.Uint32
	op         string

	startOnce sync.Once
	pusher    *erpPusher

	mu        sync.Mutex
	anomalies []error
}

// NewERPStorm returns the erp-storm scenario with its defaults.
func NewERPStorm() *ERPStorm { return &ERPStorm{} }

// Name implements Scenario.
func (*ERPStorm) Name() string { return "erp-storm" }

// erpPusher is the running push.
type erpPusher struct {
	stop     chan struct{} // closed by Verify: send no more
	stopOnce sync.Once
	done     chan struct{} // closed once the stream is finished
	// stopping: Verify gave up waiting and cancelled the stream.
	stopping atomic.Bool
	cancel   context.CancelFunc

	start   time.Time
	last    atomic.Int64 // ns since start of the last answer
	rows    atomic.Int64 // rows acknowledged
	batches atomic.Int64
}

// erpBatch is a batch in flight.
type erpBatch struct {
	sent  time.Time
	first uint64 // the batch's first row, numbered across the run
}

// Setup implements Scenario: it declares the scenario's locations and
// channel, loads every counter through Erp.SetStock, and checks that the
// node serves PushStock.
func (e *ERPStorm) Setup(ctx context.Context, env *Env) error {
	if e.BatchRows <= 0 {
		e.BatchRows = erpStormBatchRows
	}
	e.BatchRows = min(e.BatchRows, maxStockRows)
	if e.Window <= 0 {
		e.Window = erpStormWindow
	}
	n := e.Items
	if n <= 0 {
		n = env.Opts.SKUs
	}
	e.items = itemNames("erp-storm", max(n, 1))
	e.locs = scenarioLocations("erp-storm", env.Opts.Locations)
	e.base = scenarioVersionBase()
	counters := len(e.items) * len(e.locs)
	e.sentRound = make([]atomic.Uint32, counters)
	e.ackedRound = make([]atomic.Uint32, counters)
	e.op = "push-" + strconv.Itoa(e.BatchRows)

	if err := probePushStock(ctx, env.Conn(0)); err != nil {
		return err
	}
	if err := putLocationsAndChannel(ctx, env, erpStormChannel, e.locs); err != nil {
		return err
	}
	rows := make([]*stockdv1.StockCount, counters)
	for c := range rows {
		rows[c] = e.row(c, 0)
	}
	var err error
	e.setupRev, err = setStockRev(ctx, env, rows)
	return err
}

// probePushStock opens a PushStock stream and closes it at once: Unavailable
// if the node lacks the RPC.
func probePushStock(ctx context.Context, conn *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	st, err := stockdv1.NewErpClient(conn).PushStock(ctx)
	if err == nil {
		err = st.CloseSend()
	}
	if err == nil {
		_, err = st.Recv()
	}
	if errors.Is(err, io.EOF) {
		return nil
	}
	return unavailableIf(fmt.Errorf("probe push stock: %w", err), "Erp/PushStock")
}

// row is counter c's row of round r: item c / locations at location
// c % locations.
func (e *ERPStorm) row(c int, r uint32) *stockdv1.StockCount {
	return &stockdv1.StockCount{Item: e.items[c/len(e.locs)], Location: e.locs[c%len(e.locs)],
		OnHandBaseUnits: erpStormCount(c, r), Version: e.base + uint64(r)}
}

// erpStormCount is the count counter c gets in round r: a fixed function,
// so Verify knows the count of every version it finds.
func erpStormCount(c int, r uint32) int64 {
	return int64((uint64(c)*2654435761 + uint64(r)*40503) % 100_000)
}

// Do implements Scenario: it starts the push on the first call, then reads
// one item's availability.
func (e *ERPStorm) Do(ctx context.Context, env *Env, w int, rnd *rand.Rand, rec Recorder) {
	e.startOnce.Do(func() { e.startPush(ctx, env, rec) })
	sku := e.items[rnd.IntN(len(e.items))]
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	start := time.Now()
	resp, err := stockdv1.NewInventoryClient(env.Conn(w)).GetAvailability(cctx,
		// min_revision: a follower may not have applied the setup yet.
		&stockdv1.GetAvailabilityRequest{Channel: erpStormChannel, Skus: []string{sku}, MinRevision: e.setupRev})
	d := time.Since(start)
	if err == nil && (len(resp.GetSkus()) != 1 || !resp.GetSkus()[0].GetKnown()) {
		err = fmt.Errorf("availability of %s: got %v, want one known sku", sku, resp.GetSkus())
	}
	rec.Record("get-1", d, err)
}

// startPush starts the pusher under ctx (the run's context: it outlives this
// call) on a connection of its own to the first node.
func (e *ERPStorm) startPush(ctx context.Context, env *Env, rec Recorder) {
	p := &erpPusher{stop: make(chan struct{}), done: make(chan struct{}), start: time.Now()}
	e.pusher = p
	conn, err := scenarioDialOwn(env, env.Conn(0))
	if err != nil {
		e.anomaly(fmt.Errorf("push: %w", err))
		close(p.done)
		return
	}
	sctx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	go func() {
		defer close(p.done)
		defer conn.Close()
		defer cancel()
		e.push(sctx, conn, p, rec)
	}()
}

// push sends batches until p.stop is closed or the stream breaks, then
// half-closes the stream and waits for the receiver to take every answer.
func (e *ERPStorm) push(ctx context.Context, conn *grpc.ClientConn, p *erpPusher, rec Recorder) {
	st, err := stockdv1.NewErpClient(conn).PushStock(ctx)
	if err != nil {
		rec.Record(e.op, 0, err)
		return
	}
	slots := make(chan struct{}, e.Window)
	var mu sync.Mutex
	pending := map[uint64]erpBatch{}
	received := make(chan struct{})
	go func() {
		defer close(received)
		e.receive(st, p, slots, &mu, pending, rec)
	}()
	counters := uint64(len(e.sentRound))
	for b := uint64(0); e.acquire(p, slots, received); b++ {
		first := b * uint64(e.BatchRows)
		rows := make([]*stockdv1.StockCount, e.BatchRows)
		for i := range rows {
			g := first + uint64(i)
			c, r := int(g%counters), uint32(g/counters)+1
			rows[i] = e.row(c, r)
			e.sentRound[c].Store(r)
		}
		mu.Lock()
		pending[b] = erpBatch{sent: time.Now(), first: first}
		mu.Unlock()
		if err := st.Send(&stockdv1.PushStockRequest{BatchId: strconv.FormatUint(b, 10),
			Batch: &stockdv1.SetStockRequest{Rows: rows}}); err != nil {
			break // the receiver reports the stream's status
		}
	}
	_ = st.CloseSend() // a broken stream's receiver has exited or will
	timer := time.NewTimer(erpStormDrain)
	defer timer.Stop()
	select {
	case <-received:
	case <-timer.C:
		p.stopping.Store(true)
		p.cancel()
		<-received
	}
}

// acquire takes a window slot for the next batch; false once the push is
// to stop or the stream broke.
func (e *ERPStorm) acquire(p *erpPusher, slots chan struct{}, received <-chan struct{}) bool {
	select {
	case <-p.stop:
		return false
	case <-received:
		return false
	default:
	}
	select {
	case slots <- struct{}{}:
		return true
	case <-p.stop:
		return false
	case <-received:
		return false
	}
}

// receive takes the answers, in the order sent: it records each batch and
// notes the rounds acknowledged, until the stream ends; then it records the
// batches still pending as failed with the stream's status (unless Verify
// cancelled it).
func (e *ERPStorm) receive(st grpc.BidiStreamingClient[stockdv1.PushStockRequest, stockdv1.PushStockResponse],
	p *erpPusher, slots chan struct{}, mu *sync.Mutex, pending map[uint64]erpBatch, rec Recorder) {
	counters := uint64(len(e.ackedRound))
	for {
		resp, err := st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || p.stopping.Load() {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, b := range pending {
				rec.Record(e.op, time.Since(b.sent), err)
			}
			return
		}
		id, perr := strconv.ParseUint(resp.GetBatchId(), 10, 64)
		mu.Lock()
		b, ok := pending[id]
		delete(pending, id)
		mu.Unlock()
		if perr != nil || !ok {
			e.anomaly(fmt.Errorf("push: answer to batch %q, which is not in flight", resp.GetBatchId()))
			continue
		}
		d := time.Since(b.sent)
		<-slots
		if code := resp.GetErrorCode(); code != 0 {
			// Refused as a whole: none of its rows applied.
			rec.Record(e.op, d, status.Error(codes.Code(code), resp.GetErrorMessage()))
			continue
		}
		rows := resp.GetResult().GetRows()
		if len(rows) != e.BatchRows {
			e.anomaly(fmt.Errorf("push: batch %d answered %d rows, want %d", id, len(rows), e.BatchRows))
		}
		for i, row := range rows[:min(len(rows), e.BatchRows)] {
			g := b.first + uint64(i)
			c, r := int(g%counters), uint32(g/counters)+1
			want := e.row(c, r)
			if row.GetStatus() != stockdv1.RowStatus_ROW_STATUS_APPLIED || row.GetVersion() != want.GetVersion() ||
				row.GetOnHandBaseUnits() != want.GetOnHandBaseUnits() {
				e.anomaly(fmt.Errorf("push: batch %d row %d (%s@%s round %d): got %v %q version %d on hand %d, want applied version %d on hand %d",
					id, i, want.GetItem(), want.GetLocation(), r, row.GetStatus(), row.GetReason(), row.GetVersion(),
					row.GetOnHandBaseUnits(), want.GetVersion(), want.GetOnHandBaseUnits()))
				continue
			}
			if r > e.ackedRound[c].Load() {
				e.ackedRound[c].Store(r) // this goroutine alone writes it
			}
		}
		p.rows.Add(int64(len(rows)))
		p.batches.Add(1)
		p.last.Store(int64(time.Since(p.start)))
		rec.Record(e.op, d, nil)
	}
}

func (e *ERPStorm) anomaly(err error) {
	e.mu.Lock()
	e.anomalies = append(e.anomalies, err)
	e.mu.Unlock()
}

// stopPush stops the push and waits for it to finish (it bounds its own
// wait for answers); a push that never started has nothing to stop.
func (e *ERPStorm) stopPush(ctx context.Context) {
	p := e.pusher
	if p == nil {
		return
	}
	p.stopOnce.Do(func() { close(p.stop) })
	select {
	case <-p.done:
	case <-ctx.Done():
		p.stopping.Store(true)
		if p.cancel != nil {
			p.cancel()
		}
		<-p.done
	}
}

// Verify implements Scenario: it stops the push and checks every counter
// against the rounds sent and acknowledged.
func (e *ERPStorm) Verify(ctx context.Context, env *Env) error {
	e.stopPush(ctx)
	e.mu.Lock()
	errs := append([]error(nil), e.anomalies...)
	e.mu.Unlock()
	errs = append(errs, e.checkCounters(ctx, env)...)
	return joinLimited(errs, 20)
}

// checkCounters reads every counter of the scenario's locations and checks
// each against the ledger: its version is a round between the last
// acknowledged and the last sent, with that round's count.
func (e *ERPStorm) checkCounters(ctx context.Context, env *Env) []error {
	var errs []error
	seen := make([]bool, len(e.sentRound))
	for li, loc := range e.locs {
		err := scenarioExport(ctx, env.Conn(0), loc, func(sc *stockdv1.StockCounter) {
			num, ok := strings.CutPrefix(sc.GetItem(), "erp-storm-")
			i, err := strconv.Atoi(num)
			if !ok || err != nil || i < 0 || i >= len(e.items) || e.items[i] != sc.GetItem() {
				return // an earlier run's larger catalog
			}
			c := i*len(e.locs) + li
			seen[c] = true
			if err := e.checkCounter(c, sc.GetOnHandBaseUnits(), sc.GetVersion()); err != nil {
				errs = append(errs, err)
			}
		})
		if err != nil {
			return append(errs, err)
		}
	}
	for c, ok := range seen {
		if !ok {
			errs = append(errs, fmt.Errorf("counter %s@%s: missing from ExportStock", e.items[c/len(e.locs)], e.locs[c%len(e.locs)]))
		}
	}
	return errs
}

// checkCounter checks counter c, which holds onHand at version.
func (e *ERPStorm) checkCounter(c int, onHand int64, version uint64) error {
	key := e.items[c/len(e.locs)] + "@" + e.locs[c%len(e.locs)]
	acked, sent := e.ackedRound[c].Load(), e.sentRound[c].Load()
	if version < e.base || version-e.base > uint64(sent) {
		return fmt.Errorf("counter %s: holds version %d, but the last sent was %d", key, version, e.base+uint64(sent))
	}
	r := uint32(version - e.base)
	if r < acked {
		return fmt.Errorf("counter %s: holds version %d (count %d), but version %d (count %d) was acknowledged (lost acknowledgement)",
			key, version, onHand, e.base+uint64(acked), erpStormCount(c, acked))
	}
	if want := erpStormCount(c, r); onHand != want {
		return fmt.Errorf("counter %s: holds count %d at version %d, but %d was sent with it", key, onHand, version, want)
	}
	return nil
}

// Summary implements Summarizer: the rows pushed and their rate over the
// push's own span (first Do to last answer).
func (e *ERPStorm) Summary(*ScenarioResult) []Figure {
	p := e.pusher
	if p == nil {
		return nil
	}
	out := []Figure{{Name: "rows pushed", Value: float64(p.rows.Load()), Unit: "rows"}}
	if span := time.Duration(p.last.Load()); span > 0 {
		out = append(out, Figure{Name: "push rate", Value: float64(p.rows.Load()) / span.Seconds(), Unit: "rows/s"})
	}
	return out
}
