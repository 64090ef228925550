package bench

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/stockd/stockd/api/stockdv1"
)

func TestSpawnStartsAndTearsDownANode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := Spawn(ctx, 1, SpawnOptions{Stockd: testStockd(t)})
	if err != nil {
		t.Fatalf("Spawn(1): %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	addrs := c.Addrs()
	if len(addrs) != 1 {
		t.Fatalf("Addrs() after Spawn(1): got %v, want one address", addrs)
	}
	conn, err := grpc.NewClient(addrs[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health of %s: got %v, %v, want SERVING", addrs[0], h.GetStatus(), err)
	}
	_ = conn.Close()
	dir := c.dir
	pid := c.nodes[0].cmd.Process.Pid
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat %s after Close: got %v, want not exist", dir, err)
	}
	if _, err := os.Stat("/proc/" + itoa(pid)); err == nil {
		t.Errorf("process %d after Close: still running", pid)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: got %v, want nil", err)
	}
}

func TestSpawnThreeNodesAllServe(t *testing.T) {
	c := SpawnTest(t, 3)
	addrs := c.Addrs()
	if len(addrs) != 3 || addrs[0] == addrs[1] || addrs[1] == addrs[2] || addrs[0] == addrs[2] {
		t.Fatalf("Addrs() after Spawn(3): got %v, want 3 distinct addresses", addrs)
	}
	for _, a := range addrs {
		conn, err := grpc.NewClient(a, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		h, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
		_ = conn.Close()
		if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of %s: got %v, %v, want SERVING", a, h.GetStatus(), err)
		}
	}

	// --writes leader finds the node that leads among the spawned ones.
	env := scenarioTestEnv(t, c, Options{WritesToLeader: true})
	ctx := testContext(t, 30*time.Second)
	got := findLeader(ctx, env)
	i := slices.IndexFunc(addrs, func(a string) bool { return got == "leader "+a })
	if i < 0 {
		t.Fatalf("findLeader on a spawned 3-node cluster: got %q, want \"leader \" and one of %v", got, addrs)
	}
	st, err := stockdv1.NewClusterClient(env.WriteConn(0)).Status(ctx, &stockdv1.StatusRequest{})
	if err != nil || st.GetLeaderId() != st.GetNodeId() {
		t.Errorf("the node writes go to (%s) answers Status: leader %q, itself %q, %v; want itself", addrs[i], st.GetLeaderId(), st.GetNodeId(), err)
	}

	// Without Status (a token that may not call it), a reserve a follower
	// forwarded names the leader, and later writes go there.
	learner := scenarioTestEnv(t, c, Options{WritesToLeader: true})
	if err := loadCatalog(ctx, learner, "learn", []string{"L-1"}, benchLocations(1), 100, 1, newERPBook()); err != nil {
		t.Fatal(err)
	}
	follower := (i + 1) % 3
	rec := newTallyRecorder()
	h := reserve(ctx, learner, follower, "learn", "learn-1", []*stockdv1.ReserveLine{{Sku: "L-1", Quantity: 1}}, longTTL, fateKeep, rec)
	if h.outcome != reserveAcked {
		t.Fatalf("reserve through follower %s: got outcome %v (errors %v), want acknowledged", addrs[follower], h.outcome, rec.errorsOf())
	}
	if learner.WriteConn(follower) != learner.Conns[i] {
		t.Errorf("after a reserve the follower %s forwarded: writes do not go to the leader %s", addrs[follower], addrs[i])
	}
	if got, want := learner.learntNote(), " until a follower named the leader, then leader "+addrs[i]; got != want {
		t.Errorf("writes label: got %q, want %q", got, want)
	}
}
