package server

import (
	"context"
	"errors"
	"fmt"
	"google.golang.org/protobuf/proto"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

func TestReserveStreamPipelines10000Requests(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []streamOption
	}{
		{"behind the synchronous proposer", nil},
		{"behind the batching proposer", []streamOption{withBatching()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newStreamHarness(t, tc.opts...)
			h.seed(t)
			h.setStock(t, "TULIP", "WH1", 6000, 1)
			h.setStock(t, "TULIP", "WH2", 3000, 1)
			var entries0, commands0 uint64
			if h.batch != nil {
				entries0, commands0 = h.batch.stats()
			}

			const n = 10_000
			qty := func(i int) int64 { return int64(i%3) + 1 } // 19,999 units asked of 9,000
			reqs := make([]*stockdv1.ReserveStreamRequest, n)
			for i := range reqs {
				reqs[i] = streamReserve("q-"+strconv.Itoa(i), "r-"+strconv.Itoa(i), "TULIP", qty(i))
			}
			answers, err := exchange(h.open(t, testContext(t), "pipelined"), reqs)
			if err != nil {
				t.Fatalf("%d pipelined reserves: stream ended with %v, want a clean end", n, err)
			}
			got := byRequest(t, reqs, answers)

			after, _ := h.available(t, "web", "TULIP")
			var held int64
			var refused int
			for i := range n {
				a := got["q-"+strconv.Itoa(i)]
				if e := a.GetError(); e != nil {
					checkStreamError(t, fmt.Sprintf("reserve r-%d of %d TULIP", i, qty(i)), a, codes.FailedPrecondition, "lines[0].quantity")
					// Availability only falls here, so a refusal asked for
					// more than is left at the end.
					if qty(i) <= after {
						t.Errorf("reserve r-%d of %d TULIP: refused, yet %d are still available at the end", i, qty(i), after)
					}
					refused++
					continue
				}
				r := a.GetReserve().GetReservation()
				if r.GetReservationId() != "r-"+strconv.Itoa(i) || r.GetLines()[0].GetQuantitySkuUnits() != qty(i) ||
					r.GetState() != stockdv1.ReservationState_RESERVATION_STATE_HELD {
					t.Fatalf("request q-%d (reserve r-%d of %d): got %v, want r-%d HELD with %d", i, i, qty(i), r, i, qty(i))
				}
				held += qty(i)
			}
			if held+after != 9000 || reservedUnits(t, h.m, "TULIP") != held {
				t.Fatalf("after %d reserves of 9,000 TULIP: got %d held in answers, %d available, %d reserved in the machine; want held + available = 9000 and reserved = held",
					n, held, after, reservedUnits(t, h.m, "TULIP"))
			}
			if refused == 0 || after >= 3 {
				t.Fatalf("after asking 19,999 TULIP of 9,000: got %d refused and %d left, want some refused and fewer than 3 left", refused, after)
			}
			if h.batch != nil {
				entries, commands := h.batch.stats()
				entries, commands = entries-entries0, commands-commands0
				if commands != n || entries*2 > commands {
					t.Fatalf("%d pipelined reserves: got %d commands in %d entries, want %d commands at 2 or more per entry", n, commands, entries, n)
				}
				t.Logf("%d commands in %d entries (%.1f per entry)", commands, entries, float64(commands)/float64(entries))
			}
		})
	}
}

func TestReserveStreamMixedOps(t *testing.T) {
	h := newStreamHarness(t)
	h.seed(t)
	h.setStock(t, "TULIP", "WH1", 1000, 1)
	ctx := testContext(t)
	st := h.open(t, ctx, "mixed")

	// Each reserve's answer triggers, on the same stream, a confirm (i%3 ==
	// 0), a release (i%3 == 1) or nothing; a confirm must wait for its
	// reserve's answer, since requests on a stream are not ordered.
	const n = 300
	toSend := make(chan *stockdv1.ReserveStreamRequest, 2*n)
	var closeOnce sync.Once
	closeToSend := func() { closeOnce.Do(func() { close(toSend) }) }
	defer closeToSend()
	sendErr := make(chan error, 1)
	go func() {
		for r := range toSend {
			if err := st.Send(r); err != nil {
				sendErr <- err
				for range toSend {
				}
				return
			}
		}
		sendErr <- st.CloseSend()
	}()
	for i := range n {
		toSend <- streamReserve("res-"+strconv.Itoa(i), "m-"+strconv.Itoa(i), "TULIP", 2)
	}
	// Extras answered on the same stream: an unknown reservation, and an
	// input error mapped as the unary call maps it.
	toSend <- streamConfirm("confirm-nope", "nope")
	toSend <- streamReserve("bad-qty", "m-bad", "TULIP", 0)
	_, unaryErr := h.inv.Reserve(ctx, &stockdv1.ReserveRequest{Channel: "web", ReservationId: "m-bad", Lines: []*stockdv1.ReserveLine{{Sku: "TULIP", Quantity: 0}}})

	want := n + 2
	for i := range n {
		if i%3 != 2 {
			want++
		}
	}
	got := make(map[string]*stockdv1.ReserveStreamResponse, want)
	for len(got) < want {
		a, err := st.Recv()
		if err != nil {
			t.Fatalf("mixed stream after %d of %d answers: Recv: %v", len(got), want, err)
		}
		id := a.GetRequestId()
		if got[id] != nil {
			t.Fatalf("mixed stream: request id %q answered twice (%v, then %v)", id, got[id], a)
		}
		got[id] = a
		if rest, ok := strings.CutPrefix(id, "res-"); ok {
			if a.GetReserve() == nil {
				t.Fatalf("reserve %s of 2 TULIP of 1000: got %v, want a hold", id, a)
			}
			i, _ := strconv.Atoi(rest)
			switch i % 3 {
			case 0:
				toSend <- streamConfirm("confirm-"+rest, "m-"+rest)
			case 1:
				toSend <- streamRelease("release-"+rest, "m-"+rest)
			}
		}
	}
	closeToSend()
	if a, err := st.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("mixed stream after every answer and CloseSend: got %v %v, want the stream to end cleanly", a, err)
	}
	if err := <-sendErr; err != nil {
		t.Fatalf("mixed stream: send: %v", err)
	}

	var confirmed, heldLeft int64
	for i := range n {
		id := strconv.Itoa(i)
		r, err := h.m.Reservation("web", store.ReservationID("m-"+id))
		if err != nil {
			t.Fatalf("reservation m-%s after the stream: %v", id, err)
		}
		var wantState store.ReservationState
		switch i % 3 {
		case 0:
			a := got["confirm-"+id].GetConfirm().GetReservation()
			if a.GetState() != stockdv1.ReservationState_RESERVATION_STATE_CONFIRMED || a.GetOrderRef() != "order-m-"+id {
				t.Fatalf("confirm m-%s: got %v, want CONFIRMED with order-m-%s", id, got["confirm-"+id], id)
			}
			wantState, confirmed = store.StateConfirmed, confirmed+2
		case 1:
			if got["release-"+id].GetRelease().GetReservation().GetState() != stockdv1.ReservationState_RESERVATION_STATE_RELEASED {
				t.Fatalf("release m-%s: got %v, want RELEASED", id, got["release-"+id])
			}
			wantState = store.StateReleased
		default:
			wantState, heldLeft = store.StateHeld, heldLeft+2
		}
		if r.State != wantState {
			t.Fatalf("reservation m-%s after the stream: got state %v, want %v", id, r.State, wantState)
		}
	}
	if total, _ := h.available(t, "web", "TULIP"); total != 1000-confirmed-heldLeft || reservedUnits(t, h.m, "TULIP") != heldLeft {
		t.Fatalf("TULIP after the mixed stream: got %d available, %d reserved; want %d available (1000 - %d confirmed - %d held), %d reserved",
			total, reservedUnits(t, h.m, "TULIP"), 1000-confirmed-heldLeft, confirmed, heldLeft, heldLeft)
	}
	checkStreamError(t, "confirm of an unknown reservation on the stream", got["confirm-nope"], codes.NotFound, "")
	checkStatus(t, "unary reserve of 0 TULIP", unaryErr, codes.InvalidArgument, "lines[0].quantity")
	e, ue := got["bad-qty"].GetError(), status.Convert(unaryErr)
	if codes.Code(e.GetCode()) != ue.Code() || e.GetMessage() != ue.Message() {
		t.Fatalf("reserve of 0 TULIP on the stream: got %v, want what the unary call answered: %s %q", got["bad-qty"], ue.Code(), ue.Message())
	}
	if want := ue.Proto().GetDetails(); len(want) == 0 || len(e.GetDetails()) != len(want) || !proto.Equal(e.GetDetails()[0], want[0]) {
		t.Fatalf("reserve of 0 TULIP on the stream: details %v, want the unary call's %v", e.GetDetails(), want)
	}
}

func TestReserveStreamBadRequests(t *testing.T) {
	h := newStreamHarness(t)
	h.seed(t)
	before := h.p.count()
	reqs := []*stockdv1.ReserveStreamRequest{
		streamReserve("first", "b-1", "ROSE", 1),
		streamReserve("", "b-2", "ROSE", 1),
		streamReserve(strings.Repeat("x", store.MaxIDBytes+1), "b-3", "ROSE", 1),
		streamReserve("ctl\x01", "b-4", "ROSE", 1),
		{RequestId: "no-op"},
		streamReserve(strings.Repeat("y", store.MaxIDBytes), "b-5", "ROSE", 1),
	}
	answers, err := exchange(h.open(t, testContext(t), "bad"), reqs)
	if err != nil {
		t.Fatalf("stream with bad requests: ended with %v, want the stream to go on and end cleanly", err)
	}
	if len(answers) != len(reqs) {
		t.Fatalf("stream with %d requests, 4 bad: got %d answers, want %d", len(reqs), len(answers), len(reqs))
	}
	got := make(map[string]*stockdv1.ReserveStreamResponse)
	for _, a := range answers {
		got[a.GetRequestId()] = a
	}
	for _, tc := range []struct {
		input, requestID, field string
	}{
		{"an empty request_id", "", "request_id"},
		{"a request_id of 257 bytes", strings.Repeat("x", store.MaxIDBytes+1), "request_id"},
		{"a request_id with a control character", "ctl\x01", "request_id"},
		{"a request with no op", "no-op", "op"},
	} {
		a := got[tc.requestID]
		if a == nil {
			t.Fatalf("%s: no answer tagged with it among %v", tc.input, answers)
		}
		checkStreamError(t, tc.input, a, codes.InvalidArgument, tc.field)
	}
	for _, id := range []string{"first", strings.Repeat("y", store.MaxIDBytes)} {
		if got[id].GetReserve().GetReservation() == nil {
			t.Fatalf("valid request %.10q… after bad ones: got %v, want a hold", id, got[id])
		}
	}
	if proposed := h.p.count() - before; proposed != 2 {
		t.Fatalf("stream with 2 valid and 4 bad requests: got %d proposed, want 2 (input errors are never proposed)", proposed)
	}
	if total, _ := h.available(t, "web", "ROSE"); total != 13 {
		t.Fatalf("ROSE after 2 holds of 1 on 15: got %d, want 13", total)
	}
}

// panickyProposer panics on a reserve of the reservation id "boom".
type panickyProposer struct{ Proposer }

func (p panickyProposer) Propose(ctx context.Context, cmd *logv1.Command) (store.Result, error) {
	if cmd.GetReserve().GetReservationId() == "boom" {
		panic("proposer exploded with secret detail")
	}
	return p.Proposer.Propose(ctx, cmd)
}

func TestReserveStreamPanicIsInternal(t *testing.T) {
	h := newStreamHarness(t, withProposerWrap(func(p Proposer) Proposer { return panickyProposer{p} }))
	h.seed(t)
	reqs := []*stockdv1.ReserveStreamRequest{
		streamReserve("before", "p-1", "ROSE", 1),
		streamReserve("boom", "boom", "ROSE", 1),
		streamReserve("after", "p-2", "ROSE", 1),
	}
	answers, err := exchange(h.open(t, testContext(t), "panic"), reqs)
	if err != nil {
		t.Fatalf("stream with a panicking request: ended with %v, want the stream to go on", err)
	}
	got := byRequest(t, reqs, answers)
	checkStreamError(t, "reserve that panics", got["boom"], codes.Internal, "")
	if msg := got["boom"].GetError().GetMessage(); msg != internalMessage {
		t.Errorf("reserve that panics: got message %q, want only %q", msg, internalMessage)
	}
	for _, id := range []string{"before", "after"} {
		if got[id].GetReserve() == nil {
			t.Fatalf("request %s beside a panicking one: got %v, want a hold", id, got[id])
		}
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "proposer exploded") || !strings.Contains(logs, "panickyProposer.Propose") {
		t.Errorf("reserve that panics: the panic and its stack are missing from the log:\n%s", logs)
	}
}

// TestReserveStreamStalledClient: a client that stops reading its answers
// holds at most 1,024 requests in the server, costs it no more work once its
// transport is full, and does not hold up the other streams: while it stays
// stalled, 4 busy streams on the same server each get 1,000 answers. How
// much a stalled stream slows the others is a throughput figure, measured by
// BenchmarkReserveStreamBesideStalled rather than asserted here (on 2 cores
// beside other packages' tests the ratio between two runs swings from 13% to
// 140% by scheduling alone).
func TestReserveStreamStalledClient(t *testing.T) {
	const bulk = 1_000_000_000
	h := newStreamHarness(t)
	h.seed(t)
	h.setStock(t, "BULK", "WH1", bulk, 1)
	h.setStock(t, "STALL", "WH2", bulk, 1)
	testCtx := testContext(t)
	c, unstall := h.stall(t, testCtx, "stalled")
	defer unstall()
	stalledRecv, stalledSent := c.recv.Load(), c.sent.Load()

	const streams, each = 4, 1_000
	ctx, cancel := context.WithCancel(testCtx)
	defer cancel()
	var answered [streams]atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for k := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tag := fmt.Sprintf("busy/%d", k)
			if err := pump(ctx, h.inv, tag, &answered[k]); err != nil {
				errs <- fmt.Errorf("stream %s: %w", tag, err)
			}
		}()
	}
	waitUntil(t, fmt.Sprintf("%d streams beside a stalled one each answered %d times", streams, each), func() bool {
		if len(errs) > 0 {
			return true // reported below
		}
		for k := range answered {
			if answered[k].Load() < each {
				return false
			}
		}
		return true
	})
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if in, peak := c.inflight(), c.maxInflight.Load(); in != maxStreamInflight || peak > maxStreamInflight {
		t.Fatalf("stalled stream after the others ran: got %d held now, %d at most; want %d now (still stalled) and never more",
			in, peak, maxStreamInflight)
	}
	if r, snt := c.recv.Load(), c.sent.Load(); r != stalledRecv || snt != stalledSent {
		t.Fatalf("stalled stream while the others ran: read %d -> %d requests, answered %d -> %d; want no work once its transport is full",
			stalledRecv, r, stalledSent, snt)
	}
}

// TestReserveStreamResendAfterBreak: a client breaks its stream with
// requests unanswered (some applied, some never read by the server) and
// re-sends those on a new stream: each gets one answer, the first one for
// those applied before the break (I3), and nothing is held twice.
func TestReserveStreamResendAfterBreak(t *testing.T) {
	h := newStreamHarness(t)
	h.seed(t)
	const stock = 100_000
	h.setStock(t, "TULIP", "WH1", stock, 1)
	testCtx := testContext(t)

	const n, read = 4 * maxStreamInflight, 200
	reqs := make([]*stockdv1.ReserveStreamRequest, n)
	for i := range reqs {
		reqs[i] = streamReserve("q-"+strconv.Itoa(i), "r-"+strconv.Itoa(i), "TULIP", 1)
	}
	ctx, cancel := context.WithCancel(testCtx)
	defer cancel()
	first := h.open(t, ctx, "first")
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for _, r := range reqs {
			if first.Send(r) != nil {
				return
			}
		}
	}()
	acked := make(map[string]*stockdv1.ReserveStreamResponse)
	for len(acked) < read {
		a, err := first.Recv()
		if err != nil {
			t.Fatalf("first stream after %d answers: Recv: %v", len(acked), err)
		}
		if a.GetReserve() == nil {
			t.Fatalf("first stream: request %s: got %v, want a hold", a.GetRequestId(), a)
		}
		acked[a.GetRequestId()] = a
	}
	// Stop reading, let the server fill its window and apply all of it, then
	// break the stream.
	c := h.tap.counts("first")
	waitUntil(t, "first stream holding a full window, all of it applied", func() bool {
		checkWindow(t, "first stream", c)
		return c.inflight() == maxStreamInflight && reservedUnits(t, h.m, "TULIP") == c.recv.Load()
	})
	appliedAtBreak := c.recv.Load()
	cancel()
	<-sent
	waitUntil(t, "first stream's handler exiting", func() bool { return h.tap.running.Load() == 0 })
	if appliedAtBreak >= n {
		t.Fatalf("first stream of %d requests: the server read all of them; want some never read", n)
	}
	for id, a := range acked {
		r, err := h.m.Reservation("web", store.ReservationID(a.GetReserve().GetReservation().GetReservationId()))
		if err != nil || r.State != store.StateHeld {
			t.Fatalf("acknowledged %s after the break: got %v %v, want it held", id, r, err)
		}
	}

	// New holds would be stamped a minute later than the first ones.
	h.p.advance(time.Minute)
	var resend []*stockdv1.ReserveStreamRequest
	for _, r := range reqs {
		if acked[r.GetRequestId()] == nil {
			resend = append(resend, r)
		}
	}
	answers, err := exchange(h.open(t, testCtx, "second"), resend)
	if err != nil {
		t.Fatalf("second stream re-sending %d requests: ended with %v, want a clean end", len(resend), err)
	}
	got := byRequest(t, resend, answers)
	var firstAnswers int64
	for _, r := range resend {
		a := got[r.GetRequestId()]
		res := a.GetReserve().GetReservation()
		if res.GetReservationId() != r.GetReserve().GetReservationId() {
			t.Fatalf("re-sent %s (%s): got %v, want a hold of %s", r.GetRequestId(), r.GetReserve().GetReservationId(), a, r.GetReserve().GetReservationId())
		}
		if res.GetCreatedAt().AsTime().UnixNano() == int64(t0) {
			firstAnswers++
		}
	}
	if want := appliedAtBreak - read; firstAnswers != want {
		t.Fatalf("re-sent %d requests after %d were applied and %d acknowledged: got %d first answers (created before the break), want %d",
			len(resend), appliedAtBreak, read, firstAnswers, want)
	}
	if total, _ := h.available(t, "web", "TULIP"); total != stock-n || reservedUnits(t, h.m, "TULIP") != n {
		t.Fatalf("TULIP after %d reserves of 1, %d of them re-sent: got %d available, %d reserved; want %d, %d (nothing held twice)",
			n, len(resend), total, reservedUnits(t, h.m, "TULIP"), stock-n, n)
	}
}

// TestReserveStreamEndsWithItsContext: a client that cancels with requests
// in flight (some queued in the proposer) ends the handler and every
// goroutine it started (goleak at cleanup).
func TestReserveStreamEndsWithItsContext(t *testing.T) {
	h := newStreamHarness(t, withBatching())
	h.seed(t)
	h.setStock(t, "TULIP", "WH1", 1_000_000, 1)
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	st := h.open(t, ctx, "cancelled")
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := range 4 * maxStreamInflight {
			if st.Send(streamReserve("q-"+strconv.Itoa(i), "r-"+strconv.Itoa(i), "TULIP", 1)) != nil {
				return
			}
		}
	}()
	c := h.tap.counts("cancelled")
	waitUntil(t, "the server reading the stream", func() bool { return c.recv.Load() >= maxStreamInflight/2 })
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
