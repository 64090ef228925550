package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/stockd/stockd/api/peerv1"
	"github.com/stockd/stockd/cluster"
	"github.com/stockd/stockd/server"
	"github.com/stockd/stockd/store"
)

// rzNode is one in-process node of TestReadyzFollowsContactWithLeader: a
// real cluster.Node on raft's in-memory transport (so links can be cut),
// its Peer service on loopback gRPC (joins, forwarding), a server.Server
// doing the start-up catch-up, and the HTTP routes stockd serves.
type rzNode struct {
	id   string
	tr   *raft.InmemTransport
	node *cluster.Node
	mux  *http.ServeMux
}

func startRZNode(t *testing.T, id string, join []string, peers []*rzNode) *rzNode {
	t.Helper()
	_, tr := raft.NewInmemTransport(raft.ServerAddress(id))
	for _, p := range peers {
		tr.Connect(p.tr.LocalAddr(), p.tr)
		p.tr.Connect(tr.LocalAddr(), tr)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	machine := store.New(store.DefaultConfig())
	node, err := cluster.New(cluster.Config{NodeID: id, DataDir: filepath.Join(t.TempDir(), id), Transport: tr,
		GRPCAddr: lis.Addr().String(), Join: join, Machine: machine, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatalf("cluster.New(%s): %v", id, err)
	}
	srv := server.New(server.Config{Proposer: node, Reader: machine, Cluster: clusterAdapter{node},
		Unavailable: []error{cluster.ErrNotLeader, cluster.ErrNoLeader, cluster.ErrStopped}, CatchUpOnStart: true})
	gs := grpc.NewServer()
	peerv1.RegisterPeerServer(gs, cluster.NewPeerServer(node))
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	if err := node.Start(); err != nil {
		gs.Stop()
		t.Fatalf("Start(%s): %v", id, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	caughtUp := make(chan struct{})
	go func() { defer close(caughtUp); _ = srv.CatchUp(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-caughtUp
		if err := node.Close(); err != nil {
			t.Errorf("Close(%s): %v", id, err)
		}
		gs.Stop()
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("serve %s: %v", id, err)
		}
	})
	mux := newHTTPMux(httpConfig{Gatherer: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler),
		Ready: readiness(srv, node, 1000, time.Second)})
	return &rzNode{id: id, tr: tr, node: node, mux: mux}
}

// readyz is the node's /readyz answer.
func (n *rzNode) readyz() (int, string) {
	rec := httptest.NewRecorder()
	n.mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	return rec.Code, strings.TrimSpace(rec.Body.String())
}

// waitReadyz polls n's /readyz until it answers want.
func (n *rzNode) waitReadyz(t *testing.T, want int, why string) string {
	t.Helper()
	var code int
	var body string
	poll(t, 30*time.Second, func() bool { code, body = n.readyz(); return code == want },
		func() string {
			return fmt.Sprintf("%s: /readyz on %s: got %d %q, want %d", why, n.id, code, body, want)
		})
	return body
}

// TestReadyzFollowsContactWithLeader: on a three-node cluster every node
// becomes ready; a follower whose raft links are all cut turns 503 (with a
// reason naming the leader problem) while the leader, which keeps a
// majority, stays 200; once the links are back the follower is 200 again.
func TestReadyzFollowsContactWithLeader(t *testing.T) {
	n1 := startRZNode(t, "n1", nil, nil)
	poll(t, 30*time.Second, n1.node.IsLeader, func() string { return "n1 never led the cluster it bootstrapped" })
	nodes := []*rzNode{n1}
	for _, id := range []string{"n2", "n3"} {
		nodes = append(nodes, startRZNode(t, id, []string{grpcAddrOf(t, n1)}, nodes))
	}
	for _, n := range nodes {
		n.waitReadyz(t, http.StatusOK, "after the cluster formed")
	}
	var leader, follower *rzNode
	for _, n := range nodes {
		if n.node.IsLeader() {
			leader = n
		} else if follower == nil {
			follower = n
		}
	}
	if leader == nil || follower == nil {
		t.Fatalf("roles: got leader %v follower %v, want both", leader, follower)
	}

	follower.tr.DisconnectAll()
	for _, n := range nodes {
		if n != follower {
			n.tr.Disconnect(follower.tr.LocalAddr())
		}
	}
	body := follower.waitReadyz(t, http.StatusServiceUnavailable, "follower cut off")
	if !strings.HasPrefix(body, "not ready: ") || !strings.Contains(body, "leader") {
		t.Errorf("/readyz of the cut-off follower: got %q, want a reason about the leader", body)
	}
	if code, body := leader.readyz(); code != http.StatusOK {
		t.Errorf("/readyz of the leader keeping a majority while %s is cut off: got %d %q, want 200", follower.id, code, body)
	}

	for _, n := range nodes {
		if n != follower {
			follower.tr.Connect(n.tr.LocalAddr(), n.tr)
			n.tr.Connect(follower.tr.LocalAddr(), follower.tr)
		}
	}
	follower.waitReadyz(t, http.StatusOK, "links healed")
}

// grpcAddrOf is the loopback gRPC address n's Peer service listens on.
func grpcAddrOf(t *testing.T, n *rzNode) string {
	t.Helper()
	st, err := n.node.Status(context.Background(), false)
	if err != nil {
		t.Fatalf("Status(%s): %v", n.id, err)
	}
	for _, m := range st.Members {
		if m.NodeID == n.id {
			return m.GRPCAddr
		}
	}
	t.Fatalf("Status(%s): no member for itself in %+v", n.id, st.Members)
	return ""
}
