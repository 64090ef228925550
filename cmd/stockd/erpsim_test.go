package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/stockd/stockd/api/stockdv1"
)

// The simulator's catalog in TestERPSimLongRun.
const (
	simChannel = "erpsim"
	simItems   = 50
)

var simLocations = []string{"ams", "fra", "lyon"}

// simBook is the part of erpsim's --book-out file the test reads.
type simBook struct {
	Counters []struct {
		Item     string `json:"item"`
		Location string `json:"location"`
		OnHand   int64  `json:"on_hand"`
		Version  uint64 `json:"version"`
		Initial  int64  `json:"initial"`
		Receipts int64  `json:"receipts"`
		Damage   int64  `json:"damage"`
	} `json:"counters"`
	Totals struct {
		OrdersBooked         int    `json:"orders_booked"`
		OrdersRefused        int    `json:"orders_refused"`
		CancellationsDone    int    `json:"cancellations_done"`
		LinesMoved           int    `json:"lines_moved_location"`
		OutOfOrderOutcomes   int    `json:"out_of_order_outcomes"`
		NetBookedUnits       int64  `json:"net_booked_units"`
		StaleCountReplays    int    `json:"stale_count_replays"`
		AdjustReplays        int    `json:"adjust_replays"`
		RefusedShort         int    `json:"refused_short"`
		ShortagesExplained   int    `json:"shortages_explained"`
		ShortagesUnexplained int    `json:"shortages_unexplained"`
		SwappedCounts        int    `json:"swapped_counts"`
		Duplicates           int    `json:"duplicates"`
		AckReplays           int    `json:"ack_replays"`
		Surprises            int    `json:"surprises"`
		Contradictions       int    `json:"contradictions"`
		FinalMark            uint64 `json:"final_mark"`
	} `json:"totals"`
}

// simOrder is an order the load confirmed.
type simOrder struct {
	reservationID, ref string
}

// simLoad is what the channel load did, shared by its workers.
type simLoad struct {
	mu        sync.Mutex
	confirmed []simOrder
	cancelled map[string]bool // by order_ref
	reserves  int
	short     int
	released  int
}

// TestERPSimLongRun runs bench/erpsim against one stockd node while
// channels reserve, confirm, release and cancel concurrently, then checks
// that the ERP's book and stockd agree once the simulator has drained: every
// counter's on_hand and version as the book has it (I6: the ERP is the
// master), nothing promised beyond on_hand and nothing left committed after
// the final absorbed mark (I1, and no double count), and the units of the
// orders booked and not cancelled equal what the ERP took from its book. The
// simulator checks every answer it gets along the way, including that no
// booking runs short at a counter stockd had no reason to think fuller (an
// oversell), and exits 1 otherwise.
func TestERPSimLongRun(t *testing.T) {
	loadFor, workers := 25*time.Second, 4
	if testing.Short() {
		loadFor, workers = 4*time.Second, 3
	}
	bin := buildERPSim(t)
	dir := t.TempDir()
	p := startStockd(t, filepath.Join(dir, "node"))
	c := dial(t, p.addr)

	bookPath := filepath.Join(dir, "book.json")
	sim := startERPSim(t, bin, "--addr", p.addr, "--seed-catalog", "--seed", "7", "--items", fmt.Sprint(simItems),
		"--locations", strings.Join(simLocations, ","), "--channel", simChannel,
		"--max-stock", "30", "--receipt-rate", "8", "--duration", (loadFor + 2*time.Minute).String(), "--book-out", bookPath)
	sim.waitLine(t, `msg="following orders"`, 30*time.Second)

	load := &simLoad{cancelled: map[string]bool{}}
	ctx, stop := context.WithTimeout(context.Background(), loadFor)
	defer stop()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() { runSimWorker(ctx, t, c, load, w) })
	}
	wg.Wait()
	t.Logf("load: %d reserves (%d short of stock), %d confirmed, %d released, %d cancelled",
		load.reserves, load.short, len(load.confirmed), load.released, len(load.cancelled))
	if t.Failed() {
		return
	}

	// The load has ended: the simulator drains, checks and exits.
	if err := sim.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM erpsim: %v", err)
	}
	select {
	case <-sim.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("erpsim still running 2m after SIGTERM; log:\n%s", sim.output())
	}
	if code := sim.cmd.ProcessState.ExitCode(); code != 0 {
		// The checks below still run on the book it wrote, if any.
		t.Errorf("erpsim exit status: got %d, want 0; log:\n%s", code, sim.output())
	}

	// stockd has every outcome and the mark covers the last entry.
	var ob *stockdv1.GetOutboxResponse
	waitFor(t, 20*time.Second, "an outbox with nothing pending and the mark at its last seq", func() bool {
		var err error
		ob, err = c.erp.GetOutbox(ctxT(t), &stockdv1.GetOutboxRequest{})
		return err == nil && ob.GetPending() == 0 && ob.GetAbsorbedMark() == ob.GetNextSeq()-1
	})

	data, err := os.ReadFile(bookPath)
	if err != nil {
		t.Fatalf("erpsim's book: %v", err)
	}
	var book simBook
	if err := json.Unmarshal(data, &book); err != nil {
		t.Fatalf("erpsim's book %s: %v", bookPath, err)
	}
	tt := book.Totals
	t.Logf("erpsim: %+v", tt)
	if tt.Contradictions != 0 || tt.ShortagesUnexplained != 0 {
		t.Errorf("erpsim totals: got %d contradictions, %d unexplained shortages, want 0 and 0", tt.Contradictions, tt.ShortagesUnexplained)
	}
	if tt.FinalMark != ob.GetAbsorbedMark() {
		t.Errorf("final mark: erpsim's %d, stockd's %d", tt.FinalMark, ob.GetAbsorbedMark())
	}
	// The run did what it is for (rare events only in the long run).
	checks := map[string]int{"orders booked": tt.OrdersBooked, "stale count replays": tt.StaleCountReplays,
		"adjustment replays": tt.AdjustReplays}
	if !testing.Short() {
		checks["orders refused"], checks["lines moved"], checks["out-of-order outcomes"] = tt.OrdersRefused, tt.LinesMoved, tt.OutOfOrderOutcomes
		checks["swapped counts"], checks["ack replays"], checks["duplicate deliveries"] = tt.SwappedCounts, tt.AckReplays, tt.Duplicates
		if len(load.cancelled) > 0 {
			checks["cancellations processed"] = tt.CancellationsDone
		}
	}
	for what, n := range checks {
		if n == 0 {
			t.Errorf("erpsim %s: got 0, want some", what)
		}
	}

	checkSimCounters(t, c, &book)
	checkSimOrders(t, c, &book, load)
}

// checkSimCounters compares every counter with the book: on_hand equal, no
// units committed after the final mark, committed + reserved <= on_hand; a
// count replayed at the book's version and on_hand must be stale (already
// applied), which shows stockd holds that very version.
func checkSimCounters(t *testing.T, c *clients, book *simBook) {
	t.Helper()
	if want := simItems * len(simLocations); len(book.Counters) != want {
		t.Fatalf("erpsim's book: got %d counters, want %d", len(book.Counters), want)
	}
	items := make([]string, simItems)
	for i := range items {
		items[i] = fmt.Sprintf("SIM-%04d", i)
	}
	resp, err := c.inv.GetAvailability(ctxT(t), &stockdv1.GetAvailabilityRequest{Channel: simChannel, Skus: items, Linearizable: true})
	if err != nil {
		t.Fatalf("GetAvailability(%s, every item): %v", simChannel, err)
	}
	figures := map[string]*stockdv1.LocationAvailability{}
	for _, a := range resp.GetSkus() {
		for _, la := range a.GetLocations() {
			figures[a.GetItem()+"@"+la.GetLocation()] = la
		}
	}
	replay := &stockdv1.SetStockRequest{}
	for _, bc := range book.Counters {
		key := bc.Item + "@" + bc.Location
		la := figures[key]
		switch {
		case la == nil:
			t.Errorf("%s: no figure from stockd, the book has on_hand %d", key, bc.OnHand)
			continue
		case la.GetOnHandBaseUnits() != bc.OnHand:
			t.Errorf("%s on_hand: stockd %d, erpsim's book %d", key, la.GetOnHandBaseUnits(), bc.OnHand)
		}
		if la.GetCommittedBaseUnits() != 0 {
			t.Errorf("%s committed after the final mark: got %d, want 0", key, la.GetCommittedBaseUnits())
		}
		if promised := la.GetCommittedBaseUnits() + la.GetReservedBaseUnits(); promised > la.GetOnHandBaseUnits() || la.GetOversoldBaseUnits() != 0 {
			t.Errorf("%s oversold (I1): committed %d + reserved %d against on_hand %d, oversold %d; want promised <= on_hand",
				key, la.GetCommittedBaseUnits(), la.GetReservedBaseUnits(), la.GetOnHandBaseUnits(), la.GetOversoldBaseUnits())
		}
		replay.Rows = append(replay.Rows, &stockdv1.StockCount{Item: bc.Item, Location: bc.Location, OnHandBaseUnits: bc.OnHand, Version: bc.Version})
	}
	rr, err := c.erp.SetStock(ctxT(t), replay)
	if err != nil {
		t.Fatalf("SetStock(every counter at the book's version): %v", err)
	}
	for i, r := range rr.GetRows() {
		row := replay.GetRows()[i]
		if r.GetStatus() != stockdv1.RowStatus_ROW_STATUS_IGNORED_STALE || r.GetVersion() != row.GetVersion() || r.GetOnHandBaseUnits() != row.GetOnHandBaseUnits() {
			t.Errorf("SetStock(%s@%s on_hand %d at the book's version %d again): got %s version %d on_hand %d %q, want IGNORED_STALE with that version and on_hand",
				row.GetItem(), row.GetLocation(), row.GetOnHandBaseUnits(), row.GetVersion(), r.GetStatus(), r.GetVersion(), r.GetOnHandBaseUnits(), r.GetReason())
		}
	}
}

// checkSimOrders checks that the units of the load's orders that stockd has
// as booked and not cancelled are what the ERP took from its book, and that
// the book balances against them.
func checkSimOrders(t *testing.T, c *clients, book *simBook, load *simLoad) {
	t.Helper()
	var bookedUnits int64
	var booked, refused, cancelled int
	for _, o := range load.confirmed {
		resp, err := c.inv.GetOrder(ctxT(t), &stockdv1.GetOrderRequest{Channel: simChannel, OrderRef: o.ref})
		if err != nil {
			t.Fatalf("GetOrder(%s): %v", o.ref, err)
		}
		e := resp.GetOrder()
		if got, want := e.GetCancelled(), load.cancelled[o.ref]; got != want {
			t.Errorf("GetOrder(%s) cancelled: got %v, want %v (what CancelOrder answered)", o.ref, got, want)
		}
		switch e.GetOutcome() {
		case stockdv1.OrderOutcome_ORDER_OUTCOME_BOOKED:
			if e.GetCancelled() {
				cancelled++
				continue
			}
			if !e.GetAbsorbed() {
				t.Errorf("GetOrder(%s): booked, not cancelled, yet not absorbed after the final mark", o.ref)
			}
			booked++
			for _, l := range e.GetLines() {
				bookedUnits += l.GetQuantityBaseUnits()
			}
		case stockdv1.OrderOutcome_ORDER_OUTCOME_REFUSED:
			refused++
		default:
			t.Errorf("GetOrder(%s): outcome %s after the drain, want BOOKED or REFUSED", o.ref, e.GetOutcome())
		}
	}
	t.Logf("orders per stockd: %d booked, %d refused, %d booked then cancelled; %d base units booked", booked, refused, cancelled, bookedUnits)
	if bookedUnits != book.Totals.NetBookedUnits {
		t.Errorf("units of orders booked and not cancelled: stockd's orders %d, erpsim's net decrease %d", bookedUnits, book.Totals.NetBookedUnits)
	}
	var onHand, moved int64
	for _, bc := range book.Counters {
		onHand += bc.OnHand
		moved += bc.Initial + bc.Receipts - bc.Damage
	}
	if onHand != moved-bookedUnits {
		t.Errorf("book balance: on_hand sums to %d, want initial + receipts - damage (%d) - units booked (%d) = %d",
			onHand, moved, bookedUnits, moved-bookedUnits)
	}
}

// runSimWorker reserves random carts on the simulator's channel until ctx
// ends: most are confirmed, the rest released, and now and then one of its
// recent orders is cancelled. A cart short of stock is fine; any other
// error fails the test.
func runSimWorker(ctx context.Context, t *testing.T, c *clients, load *simLoad, w int) {
	rng := rand.New(rand.NewPCG(uint64(w), 99))
	var recent []simOrder
	pace := time.NewTimer(0)
	defer pace.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-pace.C:
		}
		pace.Reset(time.Duration(30+rng.IntN(40)) * time.Millisecond)
		rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := simCart(rctx, c, rng, load, w, n, &recent)
		cancel()
		if err != nil {
			t.Errorf("worker %d: %v", w, err)
			return
		}
	}
}

// simCart runs one cart: reserve, then confirm or release, then maybe a
// cancellation of a recent order.
func simCart(ctx context.Context, c *clients, rng *rand.Rand, load *simLoad, w, n int, recent *[]simOrder) error {
	id := fmt.Sprintf("w%d-%d", w, n)
	req := &stockdv1.ReserveRequest{Channel: simChannel, ReservationId: id, Ttl: durationpb.New(10 * time.Minute)}
	items := rng.Perm(simItems)[:1+rng.IntN(3)]
	for _, i := range items {
		l := &stockdv1.ReserveLine{Sku: fmt.Sprintf("SIM-%04d", i), Quantity: int64(1 + rng.IntN(4))}
		if rng.IntN(10) < 3 {
			l.Location = simLocations[rng.IntN(len(simLocations))]
		}
		req.Lines = append(req.Lines, l)
	}
	_, err := c.inv.Reserve(ctx, req)
	load.mu.Lock()
	load.reserves++
	load.mu.Unlock()
	switch {
	case status.Code(err) == codes.FailedPrecondition:
		load.mu.Lock()
		load.short++
		load.mu.Unlock()
		return nil
	case err != nil:
		return fmt.Errorf("Reserve(%s): %w", id, err)
	}
	if rng.IntN(10) < 8 {
		o := simOrder{reservationID: id, ref: "ORD-" + id}
		if _, err := c.inv.Confirm(ctx, &stockdv1.ConfirmRequest{Channel: simChannel, ReservationId: id, OrderRef: o.ref}); err != nil {
			return fmt.Errorf("Confirm(%s): %w", id, err)
		}
		load.mu.Lock()
		load.confirmed = append(load.confirmed, o)
		load.mu.Unlock()
		*recent = append(*recent, o)
		if len(*recent) > 10 {
			*recent = (*recent)[1:]
		}
	} else {
		if _, err := c.inv.Release(ctx, &stockdv1.ReleaseRequest{Channel: simChannel, ReservationId: id}); err != nil {
			return fmt.Errorf("Release(%s): %w", id, err)
		}
		load.mu.Lock()
		load.released++
		load.mu.Unlock()
	}
	if len(*recent) == 0 || rng.IntN(100) >= 5 {
		return nil
	}
	i := rng.IntN(len(*recent))
	o := (*recent)[i]
	*recent = slices.Delete(*recent, i, i+1)
	_, err = c.inv.CancelOrder(ctx, &stockdv1.CancelOrderRequest{Channel: simChannel, ReservationId: o.reservationID})
	switch {
	case status.Code(err) == codes.FailedPrecondition:
		// The ERP's counts include it already: too late to cancel.
	case err != nil:
		return fmt.Errorf("CancelOrder(%s): %w", o.reservationID, err)
	default:
		load.mu.Lock()
		load.cancelled[o.ref] = true
		load.mu.Unlock()
	}
	return nil
}

// buildERPSim builds bench/erpsim into a temporary folder.
func buildERPSim(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "erpsim")
	build := exec.Command("go", "build", "-o", bin, "github.com/stockd/stockd/bench/erpsim")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build erpsim: %v\n%s", err, out)
	}
	return bin
}

// simProc is a running erpsim and its log.
type simProc struct {
	cmd  *exec.Cmd
	done chan struct{}

	mu    sync.Mutex
	cond  *sync.Cond
	lines []string
}

// startERPSim starts erpsim with args; it is killed at cleanup.
func startERPSim(t *testing.T, bin string, args ...string) *simProc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &simProc{cmd: cmd, done: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start erpsim: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			s.mu.Lock()
			s.lines = append(s.lines, sc.Text())
			s.cond.Broadcast()
			s.mu.Unlock()
		}
		_ = cmd.Wait()
		s.mu.Lock()
		close(s.done)
		s.cond.Broadcast()
		s.mu.Unlock()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-s.done
	})
	return s
}

// waitLine waits for a log line containing want.
func (s *simProc) waitLine(t *testing.T, want string, timeout time.Duration) {
	t.Helper()
	timer := time.AfterFunc(timeout, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(timeout)
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; ; {
		for ; i < len(s.lines); i++ {
			if strings.Contains(s.lines[i], want) {
				return
			}
		}
		select {
		case <-s.done:
			t.Fatalf("erpsim exited before logging %q; log:\n%s", want, strings.Join(s.lines, "\n"))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("erpsim did not log %q within %v; log:\n%s", want, timeout, strings.Join(s.lines, "\n"))
		}
		s.cond.Wait()
	}
}

// output is erpsim's log so far.
func (s *simProc) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b bytes.Buffer
	for _, l := range s.lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}
