package main

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/stockd/stockd/api/client"
	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/server"
)

// The server names the header and api/client reads it, each without
// importing the other: the two names must agree.
func TestLeaderHeaderNamesAgree(t *testing.T) {
	if server.LeaderHeader != client.LeaderHeader {
		t.Fatalf("header names differ: server %q, client %q", server.LeaderHeader, client.LeaderHeader)
	}
}

// A follower that forwards a write names the leader's gRPC address in the
// answer's header; the leader's own answers carry no hint.
func TestAFollowerNamesTheLeaderOnAForwardedWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: starts three stockd processes")
	}
	tc := startCluster(t, 3)
	leader := tc.waitLeader(10*time.Second, nil)
	setupCatalog(t, leader.c)
	if _, err := leader.c.erp.SetStock(ctxT(t), &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{
		{Item: "ROSE", Location: "ams", OnHandBaseUnits: 40, Version: 1}}}); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(tc.nodes, func(nd *clusterNode) bool { return nd != leader })
	follower := tc.nodes[i]

	reserve := func(nd *clusterNode, id string) []string {
		t.Helper()
		var md metadata.MD
		if _, err := nd.c.inv.Reserve(ctxT(t), &stockdv1.ReserveRequest{Channel: "web", ReservationId: id,
			Lines: []*stockdv1.ReserveLine{{Sku: "ROSE", Quantity: 1}}}, grpc.Header(&md)); err != nil {
			t.Fatalf("reserve %s on %s: %v", id, nd.id, err)
		}
		return md.Get(server.LeaderHeader)
	}
	if got := reserve(follower, "via-follower"); !slices.Equal(got, []string{leader.grpcAddr}) {
		t.Errorf("reserve on follower %s: got %s %q, want the leader's address %q", follower.id, server.LeaderHeader, got, leader.grpcAddr)
	}
	if got := reserve(leader, "via-leader"); len(got) != 0 {
		t.Errorf("reserve on leader %s: got %s %q, want none", leader.id, server.LeaderHeader, got)
	}
	// A read is never forwarded and carries no hint.
	var md metadata.MD
	if _, err := follower.c.inv.GetAvailability(ctxT(t), &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: []string{"ROSE"}}, grpc.Header(&md)); err != nil {
		t.Fatal(err)
	}
	if got := md.Get(server.LeaderHeader); len(got) != 0 {
		t.Errorf("read on follower: got %s %q, want none", server.LeaderHeader, got)
	}
}
