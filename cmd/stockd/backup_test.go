package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stockd/stockd/api/stockdv1"
)

// TestSnapshotSaveAndRestoreSeedsANewCluster takes a snapshot from a live
// node over the API, seeds an empty folder with `stockd restore`, and starts
// a node on it: it serves the same state (same digest at the same index) as
// a one-voter cluster that accepts writes.
func TestSnapshotSaveAndRestoreSeedsANewCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: builds and runs stockd")
	}
	p := startStockd(t, t.TempDir())
	c := dial(t, p.addr)
	setupCatalog(t, c)
	if _, err := c.erp.SetStock(ctxT(t), &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{
		{Item: "ROSE", Location: "ams", OnHandBaseUnits: 40, Version: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.inv.Reserve(ctxT(t), &stockdv1.ReserveRequest{Channel: "web", ReservationId: "r1",
		Lines: []*stockdv1.ReserveLine{{Sku: "ROSE", Quantity: 3}}}); err != nil {
		t.Fatal(err)
	}
	cl := stockdv1.NewClusterClient(c.conn)
	file := filepath.Join(t.TempDir(), "stock.snap")
	index := saveSnapshot(t, cl, file)
	before := memberAt(t, cl, index)

	dir := filepath.Join(t.TempDir(), "restored")
	raftAddr := freePorts(t, 1)[0]
	out, err := exec.Command(stockdBin, "restore", "--data-dir", dir, "--node-id", "n9", "--raft-addr", raftAddr, file).CombinedOutput()
	if err != nil {
		t.Fatalf("stockd restore: %v\n%s", err, out)
	}
	out, err = exec.Command(stockdBin, "restore", "--data-dir", dir, "--node-id", "n9", "--raft-addr", raftAddr, file).CombinedOutput()
	if err == nil {
		t.Fatalf("stockd restore into a non-empty folder: got success (%s), want a refusal", out)
	}

	p2 := startStockd(t, dir, "--node-id", "n9", "--raft-addr", raftAddr)
	c2 := dial(t, p2.addr)
	cl2 := stockdv1.NewClusterClient(c2.conn)
	after := memberAt(t, cl2, index)
	if after.GetStateDigest() != before.GetStateDigest() {
		t.Fatalf("digest at index %d: restored %s, original %s", index, after.GetStateDigest(), before.GetStateDigest())
	}
	got, err := c2.inv.GetReservation(ctxT(t), &stockdv1.GetReservationRequest{Channel: "web", ReservationId: "r1"})
	if err != nil || got.GetReservation().GetState() != stockdv1.ReservationState_RESERVATION_STATE_HELD {
		t.Fatalf("reservation r1 on the restored node: got %v, %v; want HELD", got.GetReservation().GetState(), err)
	}
	if _, err := c2.inv.Reserve(ctxT(t), &stockdv1.ReserveRequest{Channel: "web", ReservationId: "r2",
		Lines: []*stockdv1.ReserveLine{{Sku: "ROSE", Quantity: 1}}}); err != nil {
		t.Fatalf("write on the restored node: %v", err)
	}
}

// fetchSnapshot streams a node's SaveSnapshot into w and returns the
// snapshot's index (0 if no chunk carried one).
func fetchSnapshot(ctx context.Context, cl stockdv1.ClusterClient, w io.Writer) (uint64, error) {
	stream, err := cl.SaveSnapshot(ctx, &stockdv1.SaveSnapshotRequest{})
	if err != nil {
		return 0, err
	}
	var index uint64
	for {
		chunk, err := stream.Recv()
		if err == io.EOF {
			return index, nil
		}
		if err != nil {
			return index, err
		}
		index = chunk.GetIndex()
		if _, err := w.Write(chunk.GetData()); err != nil {
			return index, err
		}
	}
}

// saveSnapshot writes a node's snapshot to file and returns its index.
func saveSnapshot(t *testing.T, cl stockdv1.ClusterClient, file string) uint64 {
	t.Helper()
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	index, err := fetchSnapshot(ctxT(t), cl, f)
	if err != nil {
		t.Fatalf("SaveSnapshot: %v", err)
	}
	if index == 0 {
		t.Fatal("SaveSnapshot: no chunk carried an index")
	}
	return index
}

// memberAt waits until the node answering cl reports itself at applied index
// want (no writes arrive meanwhile) and returns its own member entry.
func memberAt(t *testing.T, cl stockdv1.ClusterClient, want uint64) *stockdv1.Member {
	t.Helper()
	var m *stockdv1.Member
	waitFor(t, 10*time.Second, fmt.Sprintf("the node at applied index %d", want), func() bool {
		st, err := statusOf(cl)
		if err != nil {
			return false
		}
		m = selfMember(st)
		return m != nil && m.GetAppliedIndex() == want && m.GetStateDigest() != ""
	})
	return m
}

// TestRecoverAfterLosingQuorum loses two of three nodes for good, recovers
// the survivor with `stockd recover` as the sole voter, and finds every
// acknowledged write there and the node accepting new ones.
func TestRecoverAfterLosingQuorum(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: builds and runs stockd")
	}
	tc := startCluster(t, 3)
	leader := tc.waitLeader(10*time.Second, nil)
	setupCatalog(t, leader.c)
	if _, err := leader.c.erp.SetStock(ctxT(t), &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{
		{Item: "ROSE", Location: "ams", OnHandBaseUnits: 40, Version: 1}}}); err != nil {
		t.Fatal(err)
	}
	var acked []string
	var lastRev uint64
	for i := 0; i < 20; i++ {
		id := fmt.Sprintf("q-%d", i)
		r, err := leader.c.inv.Reserve(ctxT(t), &stockdv1.ReserveRequest{Channel: "web", ReservationId: id,
			Lines: []*stockdv1.ReserveLine{{Sku: "ROSE", Quantity: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, id)
		lastRev = r.GetRevision()
	}
	// Keep a follower: it has every acknowledged write (a majority of 3 is
	// 2, so wait until it applied them) and loses its peers for good.
	var survivor *clusterNode
	for _, nd := range tc.nodes {
		if nd != leader {
			survivor = nd
			break
		}
	}
	memberAtLeast(t, survivor.cl, lastRev)
	for _, nd := range tc.nodes {
		tc.kill(nd)
	}

	out, err := exec.Command(stockdBin, "recover", "--data-dir", survivor.dir, "--node-id", survivor.id,
		"--raft-addr", survivor.raftAddr, "--voters", survivor.id+"="+survivor.raftAddr).CombinedOutput()
	if err != nil {
		t.Fatalf("stockd recover: %v\n%s", err, out)
	}
	tc.start(survivor)
	if got := tc.waitLeader(10*time.Second, nil); got != survivor {
		t.Fatalf("leader after recovery: got %s, want %s", got.id, survivor.id)
	}
	for _, id := range acked {
		r, err := survivor.c.inv.GetReservation(ctxT(t), &stockdv1.GetReservationRequest{Channel: "web", ReservationId: id})
		if err != nil || r.GetReservation().GetState() != stockdv1.ReservationState_RESERVATION_STATE_HELD {
			t.Fatalf("acknowledged reservation %s after recovery: got %v, %v; want HELD", id, r.GetReservation().GetState(), err)
		}
	}
	if _, err := survivor.c.inv.Reserve(ctxT(t), &stockdv1.ReserveRequest{Channel: "web", ReservationId: "after",
		Lines: []*stockdv1.ReserveLine{{Sku: "ROSE", Quantity: 1}}}); err != nil {
		t.Fatalf("write after recovery: %v", err)
	}
}

// memberAtLeast waits until the node answering cl has applied at least want.
func memberAtLeast(t *testing.T, cl stockdv1.ClusterClient, want uint64) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("applied index >= %d", want), func() bool {
		st, err := statusOf(cl)
		if err != nil {
			return false
		}
		m := selfMember(st)
		return m != nil && m.GetAppliedIndex() >= want
	})
}
