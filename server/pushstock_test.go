package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

// openPush starts a PushStock stream tagged tag under ctx.
func (h *streamHarness) openPush(t testing.TB, ctx context.Context, tag string) stockdv1.Erp_PushStockClient {
	t.Helper()
	st, err := h.erp.PushStock(metadata.AppendToOutgoingContext(ctx, streamTagKey, tag))
	if err != nil {
		t.Fatalf("PushStock(%s): %v", tag, err)
	}
	return st
}

// pushExchange sends reqs pipelined, closes the send side and reads answers
// until the server ends the stream; a clean end is nil.
func pushExchange(st stockdv1.Erp_PushStockClient, reqs []*stockdv1.PushStockRequest) ([]*stockdv1.PushStockResponse, error) {
	sendErr := make(chan error, 1)
	go func() {
		for _, r := range reqs {
			if err := st.Send(r); err != nil {
				sendErr <- err // io.EOF: the stream ended; Recv has the status
				return
			}
		}
		sendErr <- st.CloseSend()
	}()
	var out []*stockdv1.PushStockResponse
	for {
		a, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			<-sendErr
			return out, err
		}
		out = append(out, a)
	}
	if err := <-sendErr; err != nil {
		return out, fmt.Errorf("send: %w", err)
	}
	return out, nil
}

func pushBatchOf(id string, rows ...*stockdv1.StockCount) *stockdv1.PushStockRequest {
	return &stockdv1.PushStockRequest{BatchId: id, Batch: &stockdv1.SetStockRequest{Rows: rows}}
}

func count(item, loc string, onHand int64, version uint64) *stockdv1.StockCount {
	return &stockdv1.StockCount{Item: item, Location: loc, OnHandBaseUnits: onHand, Version: version}
}

// checkInOrder fails unless answers carry the batch ids of reqs, one each,
// in the order sent.
func checkInOrder(t testing.TB, reqs []*stockdv1.PushStockRequest, answers []*stockdv1.PushStockResponse) {
	t.Helper()
	if len(answers) != len(reqs) {
		t.Fatalf("%d batches: got %d answers, want %d", len(reqs), len(answers), len(reqs))
	}
	for i, a := range answers {
		if a.GetBatchId() != reqs[i].GetBatchId() {
			t.Fatalf("%d batches: answer %d has batch id %q, want %q (send order)", len(reqs), i, a.GetBatchId(), reqs[i].GetBatchId())
		}
	}
}

// TestPushStockPipelines1000Batches: 1,000 batches sent without waiting are
// each answered once, in the order sent, at increasing revisions, with every
// row applied, and the counters end at the last batch's counts.
func TestPushStockPipelines1000Batches(t *testing.T) {
	h := newStreamHarness(t, withBatching())
	h.seed(t)
	const batches, rows = 1000, 10
	reqs := make([]*stockdv1.PushStockRequest, batches)
	for k := range batches {
		rs := make([]*stockdv1.StockCount, rows)
		for j := range rows {
			rs[j] = count("P"+strconv.Itoa(j), "WH1", int64(k*rows+j), uint64(k+1))
		}
		reqs[k] = pushBatchOf("b-"+strconv.Itoa(k), rs...)
	}
	answers, err := pushExchange(h.openPush(t, testContext(t), "push"), reqs)
	if err != nil {
		t.Fatalf("%d batches: stream ended with %v, want a clean end", batches, err)
	}
	checkInOrder(t, reqs, answers)
	var last uint64
	for k, a := range answers {
		if a.GetErrorCode() != 0 {
			t.Fatalf("batch %d: got error %d %q, want a result", k, a.GetErrorCode(), a.GetErrorMessage())
		}
		r := a.GetResult()
		if r.GetRevision() <= last {
			t.Fatalf("batch %d: got revision %d after %d, want increasing", k, r.GetRevision(), last)
		}
		last = r.GetRevision()
		if r.GetApplied() != rows || len(r.GetRows()) != rows {
			t.Fatalf("batch %d: got %d applied of %d rows, want %d", k, r.GetApplied(), len(r.GetRows()), rows)
		}
		for j, row := range r.GetRows() {
			want := int64(k*rows + j)
			if row.GetStatus() != stockdv1.RowStatus_ROW_STATUS_APPLIED || row.GetVersion() != uint64(k+1) || row.GetOnHandBaseUnits() != want {
				t.Fatalf("batch %d row %d: got %v, want APPLIED version %d on_hand %d", k, j, row, k+1, want)
			}
		}
	}
	for j := range rows {
		sku := "P" + strconv.Itoa(j)
		if got, _ := h.available(t, "web", sku); got != int64((batches-1)*rows+j) {
			t.Errorf("after %d batches: available %s = %d, want %d", batches, sku, got, (batches-1)*rows+j)
		}
	}
}

// gatedProposer holds every SetStock proposal until open is closed.
type gatedProposer struct {
	Proposer
	open chan struct{}
}

func (p gatedProposer) Propose(ctx context.Context, cmd *logv1.Command) (store.Result, error) {
	if cmd.GetSetStock() != nil {
		select {
		case <-p.open:
		case <-ctx.Done():
			return store.Result{}, ctx.Err()
		}
	}
	return p.Proposer.Propose(ctx, cmd)
}

// TestPushStockReadsAheadUpToTheWindow: while the first batch is in flight
// the server reads further batches, up to maxPushInflight and no further;
// once the proposal goes through, every batch is answered in order.
func TestPushStockReadsAheadUpToTheWindow(t *testing.T) {
	open := make(chan struct{})
	h := newStreamHarness(t, withProposerWrap(func(p Proposer) Proposer { return gatedProposer{p, open} }))
	// Locations go through PutLocation, not SetStock, so the gate does not hold them.
	for _, id := range []string{"WH1"} {
		if _, err := h.adm.PutLocation(testContext(t), &stockdv1.PutLocationRequest{Location: &stockdv1.Location{Id: id, Name: id}}); err != nil {
			t.Fatalf("PutLocation(%s): %v", id, err)
		}
	}
	const n = 3 * maxPushInflight
	reqs := make([]*stockdv1.PushStockRequest, n)
	for k := range n {
		reqs[k] = pushBatchOf("w-"+strconv.Itoa(k), count("W", "WH1", int64(k), uint64(k+1)))
	}
	type result struct {
		answers []*stockdv1.PushStockResponse
		err     error
	}
	done := make(chan result, 1)
	st := h.openPush(t, testContext(t), "window")
	go func() {
		a, err := pushExchange(st, reqs)
		done <- result{a, err}
	}()
	c := h.tap.counts("window")
	waitUntil(t, "the server reading a full window", func() bool { return c.recv.Load() >= maxPushInflight })
	if got := c.recv.Load(); got != maxPushInflight || c.sent.Load() != 0 {
		t.Fatalf("first batch held: got %d read and %d answered, want %d read and none answered", got, c.sent.Load(), maxPushInflight)
	}
	close(open)
	r := <-done
	if r.err != nil {
		t.Fatalf("%d batches: stream ended with %v, want a clean end", n, r.err)
	}
	checkInOrder(t, reqs, r.answers)
	for k, a := range r.answers {
		if a.GetResult().GetApplied() != 1 {
			t.Fatalf("batch %d: got %v, want its row applied", k, a)
		}
	}
	if got := c.maxInflight.Load(); got > maxPushInflight {
		t.Errorf("%d batches: the server held up to %d at once, want at most %d", n, got, maxPushInflight)
	}
}

// TestPushStockAppliesInSendOrder: versions are judged in the order the
// batches were sent, even when they are pipelined: version 2 then version 1
// of a counter leaves version 2 and answers the second IGNORED_STALE; the
// same version with another count is ignored too, and had it come first it
// would have set 30.
func TestPushStockAppliesInSendOrder(t *testing.T) {
	h := newStreamHarness(t, withBatching())
	h.seed(t)
	var reqs []*stockdv1.PushStockRequest
	// Many rounds in one stream so that a reordering would show up.
	const rounds = 200
	for i := range rounds {
		item := "V" + strconv.Itoa(i)
		reqs = append(reqs,
			pushBatchOf(item+"-v2", count(item, "WH1", 20, 2)),
			pushBatchOf(item+"-v1", count(item, "WH1", 10, 1)),
			pushBatchOf(item+"-v2b", count(item, "WH1", 30, 2)))
	}
	answers, err := pushExchange(h.openPush(t, testContext(t), "order"), reqs)
	if err != nil {
		t.Fatalf("stream ended with %v, want a clean end", err)
	}
	checkInOrder(t, reqs, answers)
	want := []stockdv1.RowStatus{stockdv1.RowStatus_ROW_STATUS_APPLIED, stockdv1.RowStatus_ROW_STATUS_IGNORED_STALE, stockdv1.RowStatus_ROW_STATUS_IGNORED_STALE}
	for k, a := range answers {
		rows := a.GetResult().GetRows()
		if len(rows) != 1 || rows[0].GetStatus() != want[k%3] {
			t.Fatalf("batch %s: got %v, want one row %s", a.GetBatchId(), a, want[k%3])
		}
		if k%3 != 0 && (rows[0].GetVersion() != 2 || rows[0].GetOnHandBaseUnits() != 20) {
			t.Fatalf("batch %s (stale): got row %v, want the counter left at version 2, on_hand 20", a.GetBatchId(), rows[0])
		}
	}
	for i := range rounds {
		sku := "V" + strconv.Itoa(i)
		if got, _ := h.available(t, "web", sku); got != 20 {
			t.Fatalf("after v2, v1, v2 with another count: available %s = %d, want 20", sku, got)
		}
	}
}

// TestPushStockBadBatches: a batch refused before proposing, or whose
// proposal fails, is answered with an error in its place; the stream goes
// on and the good batches around it are applied.
func TestPushStockBadBatches(t *testing.T) {
	h := newStreamHarness(t)
	h.seed(t)
	tooMany := make([]*stockdv1.StockCount, store.MaxRows+1)
	for i := range tooMany {
		tooMany[i] = count("T", "WH1", 1, uint64(i+1))
	}
	reqs := []*stockdv1.PushStockRequest{
		pushBatchOf("g-1", count("G", "WH1", 1, 1)),
		pushBatchOf("", count("G", "WH1", 2, 2)),
		pushBatchOf(strings.Repeat("x", store.MaxIDBytes+1), count("G", "WH1", 2, 2)),
		{BatchId: "no-batch"},
		pushBatchOf("no-rows"),
		pushBatchOf("too-many", tooMany...),
		pushBatchOf("g-2", count("G", "WH1", 3, 3), count("G", "NOWHERE", 1, 1)),
	}
	type bad struct {
		code  codes.Code
		field string
	}
	wantBad := map[int]bad{
		1: {codes.InvalidArgument, "batch_id"},
		2: {codes.InvalidArgument, "batch_id"},
		3: {codes.InvalidArgument, "batch"},
		4: {codes.InvalidArgument, "batch.rows"},
		5: {codes.InvalidArgument, "batch.rows"},
	}
	answers, err := pushExchange(h.openPush(t, testContext(t), "bad"), reqs)
	if err != nil {
		t.Fatalf("stream with bad batches: ended with %v, want the stream to go on", err)
	}
	checkInOrder(t, reqs, answers)
	for k, a := range answers {
		b, isBad := wantBad[k]
		if !isBad {
			if a.GetErrorCode() != 0 || a.GetResult() == nil {
				t.Fatalf("good batch %d (%q): got %v, want a result", k, reqs[k].GetBatchId(), a)
			}
			continue
		}
		if codes.Code(a.GetErrorCode()) != b.code || a.GetResult() != nil || !strings.HasPrefix(a.GetErrorMessage(), b.field+": ") {
			t.Fatalf("bad batch %d (%q): got %v, want error %s naming %q and no result", k, reqs[k].GetBatchId(), a, b.code, b.field)
		}
	}
	// A row refused by the state machine sinks only itself.
	g2 := answers[6].GetResult()
	if g2.GetApplied() != 1 || g2.GetRejected() != 1 || g2.GetRows()[1].GetStatus() != stockdv1.RowStatus_ROW_STATUS_REJECTED {
		t.Fatalf("batch g-2 with an unknown location in row 1: got %v, want row 0 applied and row 1 rejected", g2)
	}
	if got, _ := h.available(t, "web", "G"); got != 3 {
		t.Fatalf("after g-1 and g-2: available G = %d, want 3", got)
	}

	// A failed proposal answers its batch and the stream goes on.
	st := h.openPush(t, testContext(t), "failing")
	step := func(req *stockdv1.PushStockRequest) *stockdv1.PushStockResponse {
		t.Helper()
		if err := st.Send(req); err != nil {
			t.Fatalf("send %q: %v", req.GetBatchId(), err)
		}
		a, err := st.Recv()
		if err != nil {
			t.Fatalf("recv the answer to %q: %v", req.GetBatchId(), err)
		}
		if a.GetBatchId() != req.GetBatchId() {
			t.Fatalf("send %q: got the answer to %q", req.GetBatchId(), a.GetBatchId())
		}
		return a
	}
	h.p.setFail(errFakeQueueFull)
	if a := step(pushBatchOf("f-1", count("G", "WH1", 4, 4))); codes.Code(a.GetErrorCode()) != codes.ResourceExhausted {
		t.Fatalf("batch whose proposal fails with a full queue: got %v, want RESOURCE_EXHAUSTED", a)
	}
	h.p.setFail(nil)
	if a := step(pushBatchOf("f-2", count("G", "WH1", 5, 5))); a.GetResult().GetApplied() != 1 {
		t.Fatalf("batch after a failed one: got %v, want it applied", a)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatalf("CloseSend: %v", err)
	}
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("Recv after CloseSend: got %v, want io.EOF", err)
	}
}

// panickyPushProposer panics on a SetStock of item "BOOM".
type panickyPushProposer struct{ Proposer }

func (p panickyPushProposer) Propose(ctx context.Context, cmd *logv1.Command) (store.Result, error) {
	if rows := cmd.GetSetStock().GetRows(); len(rows) > 0 && rows[0].GetItem() == "BOOM" {
		panic("push proposer exploded")
	}
	return p.Proposer.Propose(ctx, cmd)
}

// TestPushStockPanicIsInternal: a panic on one batch answers it INTERNAL,
// logged with its stack, and the stream goes on.
func TestPushStockPanicIsInternal(t *testing.T) {
	h := newStreamHarness(t, withProposerWrap(func(p Proposer) Proposer { return panickyPushProposer{p} }))
	h.seed(t)
	reqs := []*stockdv1.PushStockRequest{
		pushBatchOf("before", count("A", "WH1", 1, 1)),
		pushBatchOf("boom", count("BOOM", "WH1", 1, 1)),
		pushBatchOf("after", count("A", "WH1", 2, 2)),
	}
	answers, err := pushExchange(h.openPush(t, testContext(t), "panic"), reqs)
	if err != nil {
		t.Fatalf("stream with a panicking batch: ended with %v, want the stream to go on", err)
	}
	checkInOrder(t, reqs, answers)
	if a := answers[1]; codes.Code(a.GetErrorCode()) != codes.Internal || a.GetErrorMessage() != internalMessage {
		t.Fatalf("batch that panics: got %v, want INTERNAL %q", a, internalMessage)
	}
	for _, k := range []int{0, 2} {
		if answers[k].GetResult().GetApplied() != 1 {
			t.Fatalf("batch %q beside a panicking one: got %v, want it applied", reqs[k].GetBatchId(), answers[k])
		}
	}
	if logs := h.logs.String(); !strings.Contains(logs, "push proposer exploded") || !strings.Contains(logs, "panickyPushProposer.Propose") {
		t.Errorf("batch that panics: the panic and its stack are missing from the log:\n%s", logs)
	}
}

// TestPushStockEndsWithItsContext: a client that cancels with batches in
// flight ends the handler and every goroutine it started (goleak at cleanup).
func TestPushStockEndsWithItsContext(t *testing.T) {
	h := newStreamHarness(t, withBatching())
	h.seed(t)
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	st := h.openPush(t, ctx, "cancelled")
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for k := range 100 * maxPushInflight {
			rows := make([]*stockdv1.StockCount, 100)
			for j := range rows {
				rows[j] = count("C"+strconv.Itoa(j), "WH1", int64(k), uint64(k+1))
			}
			if st.Send(pushBatchOf("c-"+strconv.Itoa(k), rows...)) != nil {
				return
			}
		}
	}()
	c := h.tap.counts("cancelled")
	waitUntil(t, "the server reading the stream", func() bool { return c.recv.Load() >= maxPushInflight })
	cancel()
	<-sent
	var err error
	for err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.Canceled {
		t.Fatalf("Recv after cancelling the stream: got %v, want Canceled", err)
	}
	waitUntil(t, "the cancelled stream's handler exiting", func() bool { return h.tap.running.Load() == 0 })
}
