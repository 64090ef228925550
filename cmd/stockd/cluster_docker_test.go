package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stockd/stockd/api/stockdv1"
)

// Bounds of the partition test. A node cut off from its peers is a
// follower or candidate with no leader: Propose waits up to 2 s for one
// (cluster.Node.Propose) and then answers ErrNoLeader, which the server maps
// to UNAVAILABLE. The client's 3 s deadline is above that wait, so the
// expected answer is UNAVAILABLE; DEADLINE_EXCEEDED would mean the write hung
// (for example on a deposed leader that never stepped down).
const (
	cutOffWriteDeadline = 3 * time.Second
	cutOffReadDeadline  = 3 * time.Second
)

// composeCmd is how this machine runs Compose: the docker plugin (v2) if it
// answers, else the standalone docker-compose (v1); nil if neither.
func composeCmd() []string {
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if exec.Command("docker-compose", "version").Run() == nil {
		return []string{"docker-compose"}
	}
	return nil
}

// composeProject is one compose cluster started by a test.
type composeProject struct {
	t       *testing.T
	cmd     []string
	name    string
	file    string
	env     []string
	network string // the nodes' cluster network, <project>_cluster
}

func (cp *composeProject) run(args ...string) (string, error) {
	all := append(append(append([]string{}, cp.cmd[1:]...), "-p", cp.name, "-f", cp.file), args...)
	c := exec.Command(cp.cmd[0], all...)
	c.Env = append(os.Environ(), cp.env...)
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	err := c.Run()
	return strings.TrimSpace(out.String()), err
}

func (cp *composeProject) mustRun(args ...string) string {
	cp.t.Helper()
	out, err := cp.run(args...)
	if err != nil {
		cp.t.Fatalf("%s %s: %v\n%s", strings.Join(cp.cmd, " "), strings.Join(args, " "), err, out)
	}
	return out
}

func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// buildImage builds the static binary and the image from the repository's
// Dockerfile into a context holding only bin/stockd-linux. It skips the test
// when Docker cannot build the image.
func buildImage(t *testing.T, root, tag string) {
	t.Helper()
	ctxDir := t.TempDir()
	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(ctxDir, "bin", "stockd-linux"), ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("static build of stockd: %v\n%s", err, out)
	}
	out, err := exec.Command("docker", "build", "-q", "-t", tag, "-f", filepath.Join(root, "Dockerfile"), ctxDir).CombinedOutput()
	if err != nil {
		t.Skipf("docker build of %s failed, Docker partition test skipped: %v\n%s", tag, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", tag).Run() })
}

// TestDockerPartition cuts the leader's container off its peers with
// `docker network disconnect`: the majority elects a new leader and keeps
// taking writes (I2), the cut-off node refuses writes with UNAVAILABLE and
// fails linearizable reads instead of serving them stale, and once
// reconnected all three converge to the same state digest (I4).
func TestDockerPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("Docker test: builds an image and runs a compose cluster")
	}
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		t.Skipf("docker info failed, Docker partition test skipped: %v\n%.300s", err, out)
	}
	cmd := composeCmd()
	if cmd == nil {
		t.Skip("neither `docker compose` nor `docker-compose` works, Docker partition test skipped")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	unique := fmt.Sprintf("%d%d", os.Getpid(), time.Now().UnixNano()%1e9)
	tag := "stockd:test-" + unique
	buildImage(t, root, tag)

	cp := &composeProject{t: t, cmd: cmd, name: "stockdtest" + unique, file: filepath.Join(root, "deploy", "compose.yaml"),
		// Empty ports: Docker picks free ones on 127.0.0.1 (no fixed ports in tests).
		env: []string{"STOCKD_IMAGE=" + tag, "STOCKD_NODE1_PORT=", "STOCKD_NODE2_PORT=", "STOCKD_NODE3_PORT=",
			"STOCKD_NODE1_HTTP_PORT=", "STOCKD_NODE2_HTTP_PORT=", "STOCKD_NODE3_HTTP_PORT="}}
	cp.network = cp.name + "_cluster"
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := cp.run("logs", "--no-color", "--tail", "40")
			t.Logf("compose logs:\n%s", out)
		}
		if out, err := cp.run("down", "-v", "--remove-orphans", "-t", "5"); err != nil {
			t.Errorf("compose down: %v\n%s", err, out)
		}
	})
	cp.mustRun("up", "-d")

	tc := &testCluster{t: t}
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("node%d", i)
		addr := cp.mustRun("port", id, "7400")
		if !strings.HasPrefix(addr, "127.0.0.1:") {
			t.Fatalf("published gRPC port of %s: got %q, want 127.0.0.1:PORT", id, addr)
		}
		nd := &clusterNode{id: id, grpcAddr: addr, external: true}
		nd.c, nd.cl = dialNode(t, addr)
		tc.nodes = append(tc.nodes, nd)
	}
	tc.waitMembers(3, 60*time.Second)
	leader := tc.waitLeader(10*time.Second, nil)
	setupCatalog(t, leader.c)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := setStockUntilDefinite(ctx, func(int) *clients { return leader.c }, 1, 1000); err != nil {
		t.Fatal(err)
	}

	cid := cp.mustRun("ps", "-q", leader.id)
	ipFormat := fmt.Sprintf("{{(index .NetworkSettings.Networks %q).IPAddress}}", cp.network)
	ipBefore := docker(t, "inspect", "-f", ipFormat, cid)
	cutAt := time.Now()
	docker(t, "network", "disconnect", cp.network, cid)
	cut := leader
	t.Logf("disconnected %s (%s, %s on %s)", cut.id, cid[:12], ipBefore, cp.network)

	// The majority: a new leader, and writes through its follower.
	nl := tc.waitLeader(15*time.Second, cut)
	electedAfter := time.Since(cutAt)
	var follower *clusterNode
	for _, nd := range tc.nodes {
		if nd != cut && nd != nl {
			follower = nd
		}
	}
	o, _, err := reserveUntilDefinite(ctx, func(int) *clients { return follower.c }, "during-partition", hotSKU(0), 2)
	if err != nil || o.code != codes.OK {
		t.Fatalf("reserve through majority follower %s during the partition: got %v, %v, want OK", follower.id, o.code, err)
	}
	t.Logf("majority: %s leads %v after the cut; first write through follower %s done %v after the cut (%d tries)",
		nl.id, electedAfter.Round(time.Millisecond), follower.id, time.Since(cutAt).Round(time.Millisecond), o.tries)

	// The cut-off node: no write, no linearizable read.
	wctx, wcancel := context.WithTimeout(context.Background(), cutOffWriteDeadline)
	start := time.Now()
	_, err = cut.c.inv.Reserve(wctx, &stockdv1.ReserveRequest{Channel: "web", ReservationId: "on-cut-off-node",
		Lines: []*stockdv1.ReserveLine{{Sku: hotSKU(1), Quantity: 1}}})
	wcancel()
	took := time.Since(start)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("reserve on cut-off %s with a %v deadline: got %v after %v, want UNAVAILABLE", cut.id, cutOffWriteDeadline, err, took)
	}
	t.Logf("cut-off %s: write answered UNAVAILABLE after %v (%v)", cut.id, took.Round(time.Millisecond), err)

	rctx, rcancel := context.WithTimeout(context.Background(), cutOffReadDeadline)
	start = time.Now()
	_, err = cut.c.inv.GetAvailability(rctx, &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: []string{hotSKU(0)}, Linearizable: true})
	rcancel()
	took = time.Since(start)
	if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
		t.Fatalf("linearizable GetAvailability on cut-off %s: got %v after %v, want UNAVAILABLE or DEADLINE_EXCEEDED", cut.id, err, took)
	}
	t.Logf("cut-off %s: linearizable read failed with %v after %v", cut.id, status.Code(err), took.Round(time.Millisecond))
	if _, err := cut.c.inv.GetAvailability(ctxT(t), &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: []string{hotSKU(0)}}); err != nil {
		t.Errorf("plain (stale-allowed) GetAvailability on cut-off %s: got %v, want an answer from memory", cut.id, err)
	}

	// Heal. The alias is per network and must be given again.
	docker(t, "network", "connect", "--alias", cut.id+"-peer", cp.network, cid)
	if ipAfter := docker(t, "inspect", "-f", ipFormat, cid); ipAfter != ipBefore {
		// The raft configuration holds the IP --raft-advertise resolved to
		// at start, so a node that comes back on another IP is not reached.
		t.Logf("warning: %s reconnected on %s, was %s", cut.id, ipAfter, ipBefore)
	}
	healAt := time.Now()
	tc.waitMembers(3, 30*time.Second)
	cls := map[string]stockdv1.ClusterClient{}
	for _, nd := range tc.nodes {
		cls[nd.id] = nd.cl
	}
	waitConverged(t, 30*time.Second, cls)
	t.Logf("healed: 3 reachable voters and equal digests %v after reconnecting", time.Since(healAt).Round(time.Millisecond))

	got, err := cut.c.inv.GetReservation(ctxT(t), &stockdv1.GetReservationRequest{Channel: "web", ReservationId: "during-partition",
		MinRevision: o.resp.GetRevision()})
	if err != nil || !protoEqual(got.GetReservation(), o.resp.GetReservation()) {
		t.Fatalf("reservation made during the partition, read on healed %s: got %v, %v, want %v", cut.id, got.GetReservation(), err, o.resp.GetReservation())
	}
}
