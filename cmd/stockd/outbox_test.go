package main

import (
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stockd/stockd/api/stockdv1"
)

// confirmOrder reserves qty ROSE on web as id and confirms it as ref; it
// returns the order's outbox sequence.
func confirmOrder(t *testing.T, c *clients, id, ref string, qty int64) uint64 {
	t.Helper()
	if _, err := c.inv.Reserve(ctxT(t), &stockdv1.ReserveRequest{Channel: "web", ReservationId: id,
		Lines: []*stockdv1.ReserveLine{{Sku: "ROSE", Quantity: qty}}}); err != nil {
		t.Fatalf("Reserve(%s): %v", id, err)
	}
	resp, err := c.inv.Confirm(ctxT(t), &stockdv1.ConfirmRequest{Channel: "web", ReservationId: id, OrderRef: ref})
	if err != nil {
		t.Fatalf("Confirm(%s as %s): %v", id, ref, err)
	}
	seq := resp.GetReservation().GetOrderSeq()
	if seq == 0 {
		t.Fatalf("Confirm(%s as %s): got order_seq 0, want its outbox sequence", id, ref)
	}
	return seq
}

// pullAll reads PullOrders without follow after seq 0 to its end: what is
// pending on this node now.
func pullAll(t *testing.T, c *clients) []uint64 {
	t.Helper()
	st, err := c.erp.PullOrders(ctxT(t), &stockdv1.PullOrdersRequest{})
	if err != nil {
		t.Fatalf("PullOrders: %v", err)
	}
	var seqs []uint64
	for {
		e, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return seqs
		}
		if err != nil {
			t.Fatalf("PullOrders after %v: %v", seqs, err)
		}
		seqs = append(seqs, e.GetSeq())
	}
}

// firstPending opens a following PullOrders on a restarted node and returns
// the first entry it delivers: the log's tail may still be replaying, and a
// following stream waits for it rather than answering too early.
func firstPending(t *testing.T, c *clients) *stockdv1.OutboxEntry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := c.erp.PullOrders(ctx, &stockdv1.PullOrdersRequest{Follow: true})
	if err != nil {
		t.Fatalf("PullOrders(follow): %v", err)
	}
	e, err := st.Recv()
	if err != nil {
		t.Fatalf("PullOrders(follow) after a restart: got %v, want the pending entry", err)
	}
	return e
}

// TestOutboxSurvivesKill9: an order confirmed before a SIGKILL and not yet
// acknowledged is delivered again after a restart on the same folder (at
// least once, DESIGN.md I2); once AckOrders has returned, it is never
// delivered again, across further restarts. A graceful stop does not wait
// for a following PullOrders.
func TestOutboxSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: builds and kills stockd")
	}
	dir := t.TempDir()
	p := startStockd(t, dir)
	c := dial(t, p.addr)
	setupCatalog(t, c)
	if _, err := c.erp.SetStock(ctxT(t), &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{
		{Item: "ROSE", Location: "ams", OnHandBaseUnits: 10, Version: 1},
	}}); err != nil {
		t.Fatalf("SetStock: %v", err)
	}
	s1 := confirmOrder(t, c, "r-1", "ORD-1", 3)
	if got := pullAll(t, c); !slices.Equal(got, []uint64{s1}) {
		t.Fatalf("PullOrders before the kill: got %v, want [%d]", got, s1)
	}
	p.kill()

	p = startStockd(t, dir)
	c = dial(t, p.addr)
	if e := firstPending(t, c); e.GetSeq() != s1 || e.GetOrderRef() != "ORD-1" || len(e.GetLines()) != 1 ||
		e.GetLines()[0].GetQuantityBaseUnits() != 3 {
		t.Fatalf("PullOrders after kill -9 before AckOrders: got %v, want order %d (ORD-1, 3 ROSE) again", e, s1)
	}
	resp, err := c.erp.AckOrders(ctxT(t), &stockdv1.AckOrdersRequest{Acks: []*stockdv1.OrderAck{
		{Seq: s1, Outcome: stockdv1.OrderOutcome_ORDER_OUTCOME_BOOKED},
	}})
	if err != nil || len(resp.GetRows()) != 1 || resp.GetRows()[0].GetStatus() != stockdv1.RowStatus_ROW_STATUS_APPLIED {
		t.Fatalf("AckOrders(%d BOOKED): got %v %v, want one APPLIED row", s1, resp, err)
	}
	s2 := confirmOrder(t, c, "r-2", "ORD-2", 2)
	if got := pullAll(t, c); !slices.Equal(got, []uint64{s2}) {
		t.Fatalf("PullOrders after booking %d: got %v, want [%d]", s1, got, s2)
	}
	p.kill()

	p = startStockd(t, dir, "--shutdown-timeout", "60s")
	c = dial(t, p.addr)
	if e := firstPending(t, c); e.GetSeq() != s2 {
		t.Fatalf("PullOrders after a second kill -9: got seq %d (%s), want %d: the booked %d must never come back",
			e.GetSeq(), e.GetOrderRef(), s2, s1)
	}
	if got := pullAll(t, c); !slices.Equal(got, []uint64{s2}) {
		t.Fatalf("PullOrders after a second kill -9: got %v, want [%d]", got, s2)
	}
	o, err := c.inv.GetOrder(ctxT(t), &stockdv1.GetOrderRequest{Channel: "web", OrderRef: "ORD-1", Linearizable: true})
	if err != nil || o.GetOrder().GetOutcome() != stockdv1.OrderOutcome_ORDER_OUTCOME_BOOKED {
		t.Fatalf("GetOrder(ORD-1) after restarts: got %v %v, want BOOKED", o.GetOrder(), err)
	}

	// A follower of the outbox is open while the node stops: the stop ends
	// it (UNAVAILABLE) instead of waiting out the 60 s shutdown timeout.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := c.erp.PullOrders(ctx, &stockdv1.PullOrdersRequest{AfterSeq: s2, Follow: true})
	if err != nil {
		t.Fatalf("PullOrders(follow after %d): %v", s2, err)
	}
	ended := make(chan error, 1)
	go func() {
		_, err := st.Recv()
		ended <- err
	}()
	p.stop()
	select {
	case err := <-ended:
		if status.Code(err) != codes.Unavailable {
			t.Errorf("a following PullOrders when stockd stops: got %v, want UNAVAILABLE", err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("a following PullOrders still open 10s after stockd stopped")
	}
}
