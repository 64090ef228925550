package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

// confirmOrder reserves qty ROSE on web as id and confirms it as order ref.
func (h *harness) confirmOrder(t testing.TB, id, ref string, qty int64) *stockdv1.ConfirmResponse {
	t.Helper()
	ctx := testContext(t)
	if _, err := h.inv.Reserve(ctx, reserveReq(id, qty)); err != nil {
		t.Fatalf("Reserve(%s, %d ROSE): %v", id, qty, err)
	}
	resp, err := h.inv.Confirm(ctx, &stockdv1.ConfirmRequest{Channel: "web", ReservationId: id, OrderRef: ref})
	if err != nil {
		t.Fatalf("Confirm(%s as %s): %v", id, ref, err)
	}
	if resp.GetReservation().GetOrderSeq() == 0 {
		t.Fatalf("Confirm(%s as %s): got order_seq 0, want the order's outbox sequence", id, ref)
	}
	return resp
}

// pull reads a PullOrders without follow after seq to its end.
func (h *harness) pull(t testing.TB, after uint64) []*stockdv1.OutboxEntry {
	t.Helper()
	st, err := h.erp.PullOrders(testContext(t), &stockdv1.PullOrdersRequest{AfterSeq: after})
	if err != nil {
		t.Fatalf("PullOrders(after %d): %v", after, err)
	}
	var out []*stockdv1.OutboxEntry
	for {
		e, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("PullOrders(after %d) after %d entries: %v", after, len(out), err)
		}
		out = append(out, e)
	}
}

// ack sends acks and checks that each answer has the wanted status.
func (h *harness) ack(t testing.TB, want []stockdv1.RowStatus, acks ...*stockdv1.OrderAck) *stockdv1.AckOrdersResponse {
	t.Helper()
	resp, err := h.erp.AckOrders(testContext(t), &stockdv1.AckOrdersRequest{Acks: acks})
	if err != nil {
		t.Fatalf("AckOrders(%v): %v", acks, err)
	}
	var got []stockdv1.RowStatus
	for _, r := range resp.GetRows() {
		got = append(got, r.GetStatus())
	}
	if !slices.Equal(got, want) {
		t.Fatalf("AckOrders(%v): got rows %v, want statuses %v", acks, resp.GetRows(), want)
	}
	return resp
}

func (h *harness) order(t testing.TB, ref string) *stockdv1.GetOrderResponse {
	t.Helper()
	resp, err := h.inv.GetOrder(testContext(t), &stockdv1.GetOrderRequest{Channel: "web", OrderRef: ref})
	if err != nil {
		t.Fatalf("GetOrder(web, %s): %v", ref, err)
	}
	return resp
}

func (h *harness) outbox(t testing.TB) *stockdv1.GetOutboxResponse {
	t.Helper()
	resp, err := h.erp.GetOutbox(testContext(t), &stockdv1.GetOutboxRequest{})
	if err != nil {
		t.Fatalf("GetOutbox: %v", err)
	}
	return resp
}

func entrySeqs(es []*stockdv1.OutboxEntry) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.GetSeq()
	}
	return out
}

func ackOf(seq uint64, o stockdv1.OrderOutcome, reason string) *stockdv1.OrderAck {
	return &stockdv1.OrderAck{Seq: seq, Outcome: o, Reason: reason}
}

const (
	booked  = stockdv1.OrderOutcome_ORDER_OUTCOME_BOOKED
	refused = stockdv1.OrderOutcome_ORDER_OUTCOME_REFUSED
	done    = stockdv1.OrderOutcome_ORDER_OUTCOME_DONE

	rowApplied  = stockdv1.RowStatus_ROW_STATUS_APPLIED
	rowStale    = stockdv1.RowStatus_ROW_STATUS_IGNORED_STALE
	rowRejected = stockdv1.RowStatus_ROW_STATUS_REJECTED
)

func TestPullOrdersDeliversAConfirmedOrder(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	conf := h.confirmOrder(t, "cart-1", "ORD-1", 4)
	seq := conf.GetReservation().GetOrderSeq()

	got := h.pull(t, 0)
	want := &stockdv1.OutboxEntry{
		Seq: seq, Kind: stockdv1.OutboxKind_OUTBOX_KIND_ORDER, Channel: "web", ReservationId: "cart-1", OrderRef: "ORD-1",
		Lines:     []*stockdv1.OutboxLine{{Item: "ROSE", Location: "WH1", QuantityBaseUnits: 4}},
		CreatedAt: timestamp(t0),
	}
	if len(got) != 1 {
		t.Fatalf("PullOrders(after 0) after confirming ORD-1: got %v, want one entry", got)
	}
	rev := got[0].GetRevision()
	if rev < conf.GetRevision() || rev > uint64(h.m.AppliedIndex()) {
		t.Errorf("PullOrders: entry read at revision %d, want from the confirm's %d to the applied %d", rev, conf.GetRevision(), h.m.AppliedIndex())
	}
	got[0].Revision = 0
	if !proto.Equal(got[0], want) {
		t.Errorf("PullOrders(after 0): got %v, want %v", got[0], want)
	}
	if again := h.pull(t, seq); len(again) != 0 {
		t.Errorf("PullOrders(after %d), the order's own seq: got %v, want nothing", seq, again)
	}
	// Nothing acknowledged: a new pull from the start delivers it again.
	if again := h.pull(t, 0); !slices.Equal(entrySeqs(again), []uint64{seq}) {
		t.Errorf("PullOrders(after 0) again: got seqs %v, want [%d] (at least once)", entrySeqs(again), seq)
	}

	ob := h.outbox(t)
	if ob.GetPending() != 1 || ob.GetOldestPendingSeq() != seq || ob.GetNextSeq() != seq+1 ||
		ob.GetOldestPendingCreatedAt().AsTime().UnixNano() != int64(t0) || ob.GetAbsorbedMark() != 0 ||
		ob.GetRevision() != uint64(h.m.AppliedIndex()) {
		t.Errorf("GetOutbox after confirming ORD-1 (seq %d at %d): got %v, want 1 pending, oldest %d created then, next %d, mark 0, revision %d",
			seq, t0, ob, seq, seq+1, h.m.AppliedIndex())
	}
}

func TestAckOrdersBookedIsNotDeliveredAgain(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	s1 := h.confirmOrder(t, "cart-1", "ORD-1", 4).GetReservation().GetOrderSeq()
	s2 := h.confirmOrder(t, "cart-2", "ORD-2", 3).GetReservation().GetOrderSeq()
	if s2 <= s1 {
		t.Fatalf("Confirm ORD-1 then ORD-2: got seqs %d, %d, want increasing", s1, s2)
	}

	resp := h.ack(t, []stockdv1.RowStatus{rowApplied}, ackOf(s1, booked, ""))
	if resp.GetRevision() == 0 {
		t.Errorf("AckOrders(%d BOOKED): got revision 0, want the ack's", s1)
	}
	if got := entrySeqs(h.pull(t, 0)); !slices.Equal(got, []uint64{s2}) {
		t.Fatalf("PullOrders(after 0) after booking %d: got seqs %v, want [%d]", s1, got, s2)
	}
	// Booked units stay committed until the absorbed mark passes the order.
	if total, per := h.available(t, "web", "ROSE"); total != 8 || fmt.Sprint(per) != "[3 5]" {
		t.Errorf("ROSE on web with 4 booked and 3 confirmed at WH1: got %d %v, want 8 [3 5]", total, per)
	}
	o := h.order(t, "ORD-1").GetOrder()
	if o.GetOutcome() != booked || o.GetAbsorbed() || o.GetSeq() != s1 {
		t.Errorf("GetOrder(ORD-1) after booking: got %v, want seq %d BOOKED, not absorbed", o, s1)
	}
	if ob := h.outbox(t); ob.GetPending() != 1 || ob.GetOldestPendingSeq() != s2 {
		t.Errorf("GetOutbox after booking %d: got %v, want 1 pending, the oldest %d", s1, ob, s2)
	}

	t.Run("the same outcome again is stale, another is rejected", func(t *testing.T) {
		h.ack(t, []stockdv1.RowStatus{rowStale}, ackOf(s1, booked, ""))
		resp := h.ack(t, []stockdv1.RowStatus{rowRejected, rowRejected}, ackOf(s1, refused, "too late"), ackOf(9999, booked, ""))
		for i, field := range []string{"acks[0]", "acks[1].seq"} {
			if r := resp.GetRows()[i].GetReason(); !strings.HasPrefix(r, field) {
				t.Errorf("AckOrders row %d: got reason %q, want it to name %s", i, r, field)
			}
		}
		if o := h.order(t, "ORD-1").GetOrder(); o.GetOutcome() != booked {
			t.Errorf("GetOrder(ORD-1) after a refusal of a booked order: got %v, want still BOOKED", o.GetOutcome())
		}
	})

	t.Run("the absorbed mark frees the booked units", func(t *testing.T) {
		// The ERP's count at WH1 now includes the 4 booked: 10 - 4.
		resp, err := h.erp.SetStock(testContext(t), &stockdv1.SetStockRequest{
			Rows:         []*stockdv1.StockCount{{Item: "ROSE", Location: "WH1", OnHandBaseUnits: 6, Version: 2}},
			AbsorbedMark: s1,
		})
		if err != nil || resp.GetApplied() != 1 {
			t.Fatalf("SetStock(ROSE@WH1=6, mark %d): got %v %v, want 1 applied", s1, resp, err)
		}
		if total, per := h.available(t, "web", "ROSE"); total != 8 || fmt.Sprint(per) != "[3 5]" {
			t.Errorf("ROSE on web once the count includes the booked 4: got %d %v, want 8 [3 5] (not counted twice)", total, per)
		}
		if o := h.order(t, "ORD-1").GetOrder(); !o.GetAbsorbed() {
			t.Errorf("GetOrder(ORD-1) after the mark %d: got %v, want absorbed", s1, o)
		}
		if o := h.order(t, "ORD-2").GetOrder(); o.GetAbsorbed() {
			t.Errorf("GetOrder(ORD-2) after the mark %d: got absorbed, want not (seq %d)", s1, s2)
		}
		if ob := h.outbox(t); ob.GetAbsorbedMark() != s1 {
			t.Errorf("GetOutbox after the mark %d: got absorbed_mark %d", s1, ob.GetAbsorbedMark())
		}
	})
}

func TestAckOrdersRefusedFreesTheUnits(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	conf := h.confirmOrder(t, "cart-1", "ORD-1", 4)
	seq := conf.GetReservation().GetOrderSeq()
	if total, _ := h.available(t, "web", "ROSE"); total != 11 {
		t.Fatalf("ROSE on web with 4 confirmed: got %d, want 11", total)
	}
	h.ack(t, []stockdv1.RowStatus{rowApplied}, ackOf(seq, refused, "customer on credit hold"))
	if total, per := h.available(t, "web", "ROSE"); total != 15 || fmt.Sprint(per) != "[10 5]" {
		t.Errorf("ROSE on web after the ERP refused the 4: got %d %v, want 15 [10 5]", total, per)
	}
	o := h.order(t, "ORD-1").GetOrder()
	if o.GetOutcome() != refused || o.GetOutcomeReason() != "customer on credit hold" {
		t.Errorf("GetOrder(ORD-1) after the refusal: got %v, want REFUSED with its reason", o)
	}
	if got := h.pull(t, 0); len(got) != 0 {
		t.Errorf("PullOrders(after 0) after the refusal: got %v, want nothing", got)
	}
	if ob := h.outbox(t); ob.GetPending() != 0 || ob.GetNextSeq() != seq+1 {
		t.Errorf("GetOutbox after the refusal: got %v, want 0 pending, next seq %d", ob, seq+1)
	}
}

func TestCancelledOrderGoesOutAsACancellation(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	seq := h.confirmOrder(t, "cart-1", "ORD-1", 4).GetReservation().GetOrderSeq()
	h.p.advance(1000)
	resp, err := h.inv.CancelOrder(testContext(t), &stockdv1.CancelOrderRequest{Channel: "web", ReservationId: "cart-1"})
	if err != nil || resp.GetReservation().GetState() != stockdv1.ReservationState_RESERVATION_STATE_CANCELLED {
		t.Fatalf("CancelOrder(cart-1): got %v %v, want CANCELLED", resp, err)
	}
	if total, _ := h.available(t, "web", "ROSE"); total != 15 {
		t.Errorf("ROSE on web after the cancel: got %d, want 15", total)
	}
	var cancel *stockdv1.OutboxEntry
	for _, e := range h.pull(t, 0) {
		if e.GetKind() == stockdv1.OutboxKind_OUTBOX_KIND_CANCELLATION {
			cancel = e
		}
	}
	want := &stockdv1.OutboxEntry{
		Seq: seq + 1, Kind: stockdv1.OutboxKind_OUTBOX_KIND_CANCELLATION, Channel: "web", ReservationId: "cart-1",
		OrderRef: "ORD-1", Lines: []*stockdv1.OutboxLine{{Item: "ROSE", Location: "WH1", QuantityBaseUnits: 4}},
		CreatedAt: timestamp(t0 + 1000), CancelsSeq: seq, Revision: cancel.GetRevision(),
	}
	if !proto.Equal(cancel, want) {
		t.Fatalf("PullOrders after cancelling order %d: got cancellation %v, want %v", seq, cancel, want)
	}
	if o := h.order(t, "ORD-1").GetOrder(); !o.GetCancelled() || o.GetSeq() != seq {
		t.Errorf("GetOrder(ORD-1) after the cancel: got %v, want order %d, cancelled", o, seq)
	}

	h.ack(t, []stockdv1.RowStatus{rowApplied}, ackOf(cancel.GetSeq(), done, ""))
	for _, e := range h.pull(t, 0) {
		if e.GetSeq() == cancel.GetSeq() {
			t.Errorf("PullOrders after DONE on cancellation %d: got it again, want it trimmed", cancel.GetSeq())
		}
	}
}

func TestPullOrdersPagesThroughALargeBacklog(t *testing.T) {
	const n = 2*pullPageSize + 100
	h := newHarness(t)
	h.seed(t)
	h.setStock(t, "ROSE", "WH1", n, 2)
	ctx := testContext(t)
	for i := range n {
		id := "cart-" + strconv.Itoa(i)
		for _, cmd := range []*logv1.Command{
			{Kind: &logv1.Command_Reserve{Reserve: &logv1.Reserve{Channel: "web", ReservationId: id,
				Lines: []*logv1.ReserveLine{{Sku: "ROSE", QuantitySkuUnits: 1, Location: "WH1"}}}}},
			{Kind: &logv1.Command_Confirm{Confirm: &logv1.Confirm{Channel: "web", ReservationId: id, OrderRef: "ORD-" + strconv.Itoa(i)}}},
		} {
			if res, err := h.p.Propose(ctx, cmd); err != nil || res.Err != nil {
				t.Fatalf("propose %v: %v %v", cmd, err, res.Err)
			}
		}
	}
	all := h.pull(t, 0)
	seqs := entrySeqs(all)
	if len(seqs) != n || !slices.IsSorted(seqs) || len(slices.Compact(slices.Clone(seqs))) != n {
		t.Fatalf("PullOrders(after 0) of %d orders: got %d entries, sorted %v; want %d distinct, in order", n, len(seqs), slices.IsSorted(seqs), n)
	}
	for i := 1; i < n; i++ {
		if all[i].GetRevision() < all[i-1].GetRevision() {
			t.Fatalf("PullOrders: entry %d read at revision %d after entry %d at %d, want non-decreasing",
				seqs[i], all[i].GetRevision(), seqs[i-1], all[i-1].GetRevision())
		}
	}
	from := seqs[pullPageSize+499]
	if got := entrySeqs(h.pull(t, from)); !slices.Equal(got, seqs[pullPageSize+500:]) {
		t.Errorf("PullOrders(after %d): got %d entries from %v, want the last %d", from, len(got), got[:min(1, len(got))], n-pullPageSize-500)
	}

	acks := make([]*stockdv1.OrderAck, 2*pullPageSize)
	statuses := make([]stockdv1.RowStatus, len(acks))
	for i := range acks {
		acks[i], statuses[i] = ackOf(seqs[i], booked, ""), rowApplied
	}
	h.ack(t, statuses, acks...)
	if got := entrySeqs(h.pull(t, 0)); !slices.Equal(got, seqs[2*pullPageSize:]) {
		t.Errorf("PullOrders(after 0) after booking the first %d: got %d entries, want the last 100", len(acks), len(got))
	}
	if ob := h.outbox(t); ob.GetPending() != 100 || ob.GetOldestPendingSeq() != seqs[2*pullPageSize] {
		t.Errorf("GetOutbox after booking %d of %d: got %v, want 100 pending from seq %d", len(acks), n, ob, seqs[2*pullPageSize])
	}
}

// waitCounter counts WaitApplied calls: a following PullOrders makes one per
// revision it waits for.
type waitCounter struct {
	Proposer
	waits atomic.Int64
}

func (w *waitCounter) WaitApplied(ctx context.Context, rev store.Revision) error {
	w.waits.Add(1)
	return w.Proposer.WaitApplied(ctx, rev)
}

// TestPullOrdersFollowsNewOrders: a following stream delivers an order
// confirmed after it caught up, wakes at most once per applied revision (no
// busy loop), and ends with the client's cancel, leaving no goroutine.
func TestPullOrdersFollowsNewOrders(t *testing.T) {
	wc := &waitCounter{}
	h := newStreamHarness(t, withProposerWrap(func(p Proposer) Proposer { wc.Proposer = p; return wc }))
	h.seed(t)
	s1 := h.confirmOrder(t, "cart-1", "ORD-1", 4).GetReservation().GetOrderSeq()

	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	st, err := h.erp.PullOrders(ctx, &stockdv1.PullOrdersRequest{Follow: true})
	if err != nil {
		t.Fatalf("PullOrders(follow): %v", err)
	}
	if e, err := st.Recv(); err != nil || e.GetSeq() != s1 {
		t.Fatalf("PullOrders(follow) first entry: got %v %v, want seq %d", e, err, s1)
	}
	waitUntil(t, "the stream waiting for the next revision", func() bool { return wc.waits.Load() >= 1 })
	before := wc.waits.Load()

	const unrelated = 5
	for i := range unrelated {
		h.setStock(t, "TULIP", "WH1", int64(i), uint64(i+1))
	}
	conf := h.confirmOrder(t, "cart-2", "ORD-2", 3)
	e, err := st.Recv()
	if err != nil || e.GetSeq() != conf.GetReservation().GetOrderSeq() || e.GetOrderRef() != "ORD-2" {
		t.Fatalf("PullOrders(follow) after confirming ORD-2 at revision %d: got %v %v, want seq %d", conf.GetRevision(), e, err,
			conf.GetReservation().GetOrderSeq())
	}
	if e.GetRevision() < conf.GetRevision() {
		t.Errorf("PullOrders(follow): ORD-2 read at revision %d, want at least its confirm's %d", e.GetRevision(), conf.GetRevision())
	}
	// Each applied revision wakes the stream at most once: 5 counts, a
	// reserve and a confirm.
	if woke := wc.waits.Load() - before; woke > unrelated+2 {
		t.Errorf("PullOrders(follow) over %d applied revisions: waited %d times, want at most %d (one per revision)", unrelated+2, woke, unrelated+2)
	}

	cancel()
	if _, err := st.Recv(); status.Code(err) != codes.Canceled {
		t.Fatalf("Recv after cancelling the following stream: got %v, want Canceled", err)
	}
	waitUntil(t, "the cancelled stream's handler exiting", func() bool { return h.tap.running.Load() == 0 })
}

// TestPullOrdersFollowEndsOnDrain: Drain ends a following stream with
// UNAVAILABLE, so a graceful stop does not wait for it; a stream opened after
// Drain still gets the backlog, then ends the same way.
func TestPullOrdersFollowEndsOnDrain(t *testing.T) {
	h := newStreamHarness(t)
	h.seed(t)
	s1 := h.confirmOrder(t, "cart-1", "ORD-1", 4).GetReservation().GetOrderSeq()
	ctx := testContext(t)
	st, err := h.erp.PullOrders(ctx, &stockdv1.PullOrdersRequest{Follow: true})
	if err != nil {
		t.Fatalf("PullOrders(follow): %v", err)
	}
	if e, err := st.Recv(); err != nil || e.GetSeq() != s1 {
		t.Fatalf("PullOrders(follow) first entry: got %v %v, want seq %d", e, err, s1)
	}
	h.srv.Drain()
	_, err = st.Recv()
	checkStatus(t, "Recv on a following stream after Drain", err, codes.Unavailable, "")
	waitUntil(t, "the drained stream's handler exiting", func() bool { return h.tap.running.Load() == 0 })

	st, err = h.erp.PullOrders(ctx, &stockdv1.PullOrdersRequest{Follow: true})
	if err != nil {
		t.Fatalf("PullOrders(follow) after Drain: %v", err)
	}
	if e, err := st.Recv(); err != nil || e.GetSeq() != s1 {
		t.Fatalf("PullOrders(follow) after Drain, first entry: got %v %v, want seq %d", e, err, s1)
	}
	_, err = st.Recv()
	checkStatus(t, "PullOrders(follow) after Drain, past the backlog", err, codes.Unavailable, "")
}

// TestPullOrdersLeavesNoGoroutine: the client leaving a following stream at
// any point ends the handler and its drain watcher.
func TestPullOrdersLeavesNoGoroutine(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	h.confirmOrder(t, "cart-1", "ORD-1", 4)
	// The harness's server and connection goroutines live on; only what the
	// streams start must end.
	ignore := goleak.IgnoreCurrent()
	for i := range 20 {
		ctx, cancel := context.WithCancel(testContext(t))
		st, err := h.erp.PullOrders(ctx, &stockdv1.PullOrdersRequest{Follow: true})
		if err != nil {
			t.Fatalf("PullOrders(follow) #%d: %v", i, err)
		}
		if i%2 == 0 {
			if _, err := st.Recv(); err != nil {
				t.Fatalf("PullOrders(follow) #%d: %v", i, err)
			}
		}
		cancel()
		for err == nil {
			_, err = st.Recv()
		}
	}
	// The handlers end shortly after their clients: Find retries, bounded.
	if err := goleak.Find(ignore); err != nil {
		t.Errorf("after 20 cancelled following streams: %v", err)
	}
}

func TestGetOrder(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	conf := h.confirmOrder(t, "cart-1", "ORD-1", 4)
	ctx := testContext(t)
	got, err := h.inv.GetOrder(ctx, &stockdv1.GetOrderRequest{Channel: "web", OrderRef: "ORD-1", MinRevision: conf.GetRevision()})
	if err != nil {
		t.Fatalf("GetOrder(web, ORD-1, min %d): %v", conf.GetRevision(), err)
	}
	want := &stockdv1.OutboxEntry{
		Seq: conf.GetReservation().GetOrderSeq(), Kind: stockdv1.OutboxKind_OUTBOX_KIND_ORDER, Channel: "web",
		ReservationId: "cart-1", OrderRef: "ORD-1", CreatedAt: timestamp(t0), Revision: got.GetRevision(),
		Lines: []*stockdv1.OutboxLine{{Item: "ROSE", Location: "WH1", QuantityBaseUnits: 4}},
	}
	if !proto.Equal(got.GetOrder(), want) || got.GetRevision() < conf.GetRevision() {
		t.Errorf("GetOrder(web, ORD-1): got %v at %d, want %v at >= %d", got.GetOrder(), got.GetRevision(), want, conf.GetRevision())
	}

	cases := []struct {
		name  string
		req   *stockdv1.GetOrderRequest
		code  codes.Code
		field string
	}{
		{"an unknown order ref is not found", &stockdv1.GetOrderRequest{Channel: "web", OrderRef: "ORD-404"}, codes.NotFound, "order_ref"},
		{"a reservation id is not an order ref", &stockdv1.GetOrderRequest{Channel: "web", OrderRef: "cart-1"}, codes.NotFound, "order_ref"},
		{"an empty channel", &stockdv1.GetOrderRequest{OrderRef: "ORD-1"}, codes.InvalidArgument, "channel"},
		{"a 257-byte channel", &stockdv1.GetOrderRequest{Channel: longID, OrderRef: "ORD-1"}, codes.InvalidArgument, "channel"},
		{"an empty order ref", &stockdv1.GetOrderRequest{Channel: "web"}, codes.InvalidArgument, "order_ref"},
		{"a 257-byte order ref", &stockdv1.GetOrderRequest{Channel: "web", OrderRef: longID}, codes.InvalidArgument, "order_ref"},
		{"a control character in the order ref", &stockdv1.GetOrderRequest{Channel: "web", OrderRef: "ORD\n1"}, codes.InvalidArgument, "order_ref"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.inv.GetOrder(ctx, tc.req)
			checkStatus(t, fmt.Sprintf("GetOrder(%v)", tc.req), err, tc.code, tc.field)
		})
	}
}

func TestListRejected(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	ctx := testContext(t)
	set, err := h.erp.SetStock(ctx, &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{
		{Item: "ROSE", Location: "WH1", OnHandBaseUnits: 12, Version: 2},
		{Item: "ROSE", Location: "MARS", OnHandBaseUnits: 1, Version: 1},
	}})
	if err != nil || set.GetRejected() != 1 {
		t.Fatalf("SetStock with a row at MARS: got %v %v, want 1 rejected", set, err)
	}
	h.p.advance(5)
	adj, err := h.erp.AdjustStock(ctx, &stockdv1.AdjustStockRequest{Rows: []*stockdv1.StockAdjustment{
		{DeltaId: "d-1", Item: "ROSE", Location: "VENUS", DeltaBaseUnits: 1},
	}})
	if err != nil || adj.GetRejected() != 1 {
		t.Fatalf("AdjustStock at VENUS: got %v %v, want 1 rejected", adj, err)
	}

	got, err := h.erp.ListRejected(ctx, &stockdv1.ListRejectedRequest{})
	if err != nil {
		t.Fatalf("ListRejected: %v", err)
	}
	rows := got.GetRows()
	if len(rows) != 2 {
		t.Fatalf("ListRejected after two rejected rows: got %v, want 2 rows", rows)
	}
	newest, oldest := rows[0], rows[1]
	if newest.GetSource() != "adjust_stock" || newest.GetRow() != 0 || newest.GetKey() != "d-1" ||
		newest.GetRevision() != adj.GetRevision() || newest.GetAt().AsTime().UnixNano() != int64(t0+5) ||
		!strings.HasPrefix(newest.GetReason(), "rows[0].location") {
		t.Errorf("ListRejected newest: got %v, want adjust_stock row 0 d-1 at revision %d, time %d, naming rows[0].location",
			newest, adj.GetRevision(), t0+5)
	}
	if oldest.GetSource() != "set_stock" || oldest.GetRow() != 1 || oldest.GetKey() != "ROSE@MARS" ||
		oldest.GetRevision() != set.GetRevision() || !strings.HasPrefix(oldest.GetReason(), "rows[1].location") {
		t.Errorf("ListRejected oldest: got %v, want set_stock row 1 ROSE@MARS at revision %d naming rows[1].location", oldest, set.GetRevision())
	}
	var total uint64
	for _, c := range got.GetCounts() {
		total += c.GetCount()
		if !strings.Contains(c.GetReason(), "location") {
			t.Errorf("ListRejected counts: got reason %q, want only location faults", c.GetReason())
		}
	}
	if total != 2 || got.GetRevision() != uint64(h.m.AppliedIndex()) {
		t.Errorf("ListRejected: got counts %v at revision %d, want 2 in all at %d", got.GetCounts(), got.GetRevision(), h.m.AppliedIndex())
	}

	one, err := h.erp.ListRejected(ctx, &stockdv1.ListRejectedRequest{Limit: 1})
	if err != nil || len(one.GetRows()) != 1 || one.GetRows()[0].GetKey() != "d-1" {
		t.Errorf("ListRejected(limit 1): got %v %v, want the newest row only", one.GetRows(), err)
	}
	if _, err := h.erp.ListRejected(ctx, &stockdv1.ListRejectedRequest{Limit: maxRejectedLimit}); err != nil {
		t.Errorf("ListRejected(limit %d): %v", maxRejectedLimit, err)
	}
}

// TestOutboxInputErrors: malformed outbox requests are INVALID_ARGUMENT
// naming the field, and nothing is proposed.
func TestOutboxInputErrors(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	seq := h.confirmOrder(t, "cart-1", "ORD-1", 4).GetReservation().GetOrderSeq()
	manyAcks := make([]*stockdv1.OrderAck, store.MaxRows+1)
	for i := range manyAcks {
		manyAcks[i] = ackOf(seq, booked, "")
	}
	ackCall := func(acks ...*stockdv1.OrderAck) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := h.erp.AckOrders(ctx, &stockdv1.AckOrdersRequest{Acks: acks})
			return err
		}
	}
	cases := []struct {
		name  string
		call  func(context.Context) error
		field string
	}{
		{"an ack batch without acks", ackCall(), "acks"},
		{"more than 10,000 acks", ackCall(manyAcks...), "acks"},
		{"a refusal reason over 256 bytes", ackCall(ackOf(seq, refused, strings.Repeat("x", 257))), "acks[0].reason"},
		{"a rejected list over 10,000", func(ctx context.Context) error {
			_, err := h.erp.ListRejected(ctx, &stockdv1.ListRejectedRequest{Limit: maxRejectedLimit + 1})
			return err
		}, "limit"},
	}
	ctx := testContext(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before, digest := h.p.count(), h.digest(t)
			checkStatus(t, tc.name, tc.call(ctx), codes.InvalidArgument, tc.field)
			if got := h.p.count(); got != before {
				t.Errorf("%s: got %d proposals, want none", tc.name, got-before)
			}
			if h.digest(t) != digest {
				t.Errorf("%s: the state changed", tc.name)
			}
		})
	}
	if got := entrySeqs(h.pull(t, 0)); !slices.Equal(got, []uint64{seq}) {
		t.Errorf("PullOrders after refused acks: got %v, want [%d] still pending", got, seq)
	}
}

// TestPullOrdersStartsAtTheReadIndex: with a Cluster, a pull first waits for
// the leader's read index, so an ack applied on the leader before the stream
// began is seen even on a node that had not applied it yet: the booked order
// is not sent again.
func TestPullOrdersStartsAtTheReadIndex(t *testing.T) {
	fc := &fakeCluster{}
	h := newHarness(t, withCluster(fc), withReadWait(time.Minute))
	h.seed(t)
	s1 := h.confirmOrder(t, "cart-1", "ORD-1", 4).GetReservation().GetOrderSeq()
	s2 := h.confirmOrder(t, "cart-2", "ORD-2", 3).GetReservation().GetOrderSeq()
	// The leader has applied the ack of s1 (one entry on): this node will.
	target := h.m.AppliedIndex() + 1
	called := make(chan struct{}, 1)
	fc.barrier = func(context.Context) (store.Revision, error) {
		called <- struct{}{}
		return target, nil
	}
	got := make(chan []uint64, 1)
	go func() {
		st, err := h.erp.PullOrders(testContext(t), &stockdv1.PullOrdersRequest{})
		var seqs []uint64
		for err == nil {
			var e *stockdv1.OutboxEntry
			if e, err = st.Recv(); err == nil {
				seqs = append(seqs, e.GetSeq())
			}
		}
		if !errors.Is(err, io.EOF) {
			seqs = append(seqs, 0) // marks the failure
		}
		got <- seqs
	}()
	select {
	case <-called:
	case <-time.After(20 * time.Second):
		t.Fatalf("PullOrders with a Cluster: no read barrier within 20s, want one before the first page")
	}
	h.ack(t, []stockdv1.RowStatus{rowApplied}, ackOf(s1, booked, ""))
	if seqs := <-got; !slices.Equal(seqs, []uint64{s2}) {
		t.Fatalf("PullOrders at read index %d, which books %d: got seqs %v, want [%d]", target, s1, seqs, s2)
	}

	fc.barrier = func(context.Context) (store.Revision, error) { return 0, errFakeNotLeader }
	st, err := h.erp.PullOrders(testContext(t), &stockdv1.PullOrdersRequest{Follow: true})
	if err == nil {
		_, err = st.Recv()
	}
	checkStatus(t, "PullOrders without a leader to give the read index", err, codes.Unavailable, "")
}
