package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/bench/chaos"
)

// A cluster of stockd processes on 127.0.0.1. Every node's ports are picked
// before its first start and kept, so a node restarted from its folder comes
// back on the addresses the others have in their raft configuration.

// clusterNode is one stockd process of a testCluster, with the client
// connection the test keeps across its restarts.
type clusterNode struct {
	id       string
	dir      string
	grpcAddr string
	raftAddr string
	join     []string
	args     []string
	// external marks a node this test does not run as a process (a container).
	external bool

	mu sync.Mutex
	p  *proc // the current process; nil while stopped

	c  *clients
	cl stockdv1.ClusterClient
}

type testCluster struct {
	t     testing.TB
	nodes []*clusterNode
}

// freePorts returns n distinct free TCP ports on 127.0.0.1, all held open
// together so none is handed out twice, then released for stockd to bind.
func freePorts(t testing.TB, n int) []string {
	t.Helper()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var addrs []string
	for range n {
		l, err := chaos.ListenLoopback() // below the ephemeral range: no outgoing connection takes it before stockd binds it
		if err != nil {
			t.Fatalf("pick a free port: %v", err)
		}
		ls = append(ls, l)
		addrs = append(addrs, l.Addr().String())
	}
	return addrs
}

// dialNode dials addr with a short reconnect backoff: the default grows to
// 2 minutes, longer than a killed node takes to come back on the same port.
func dialNode(t testing.TB, addr string) (*clients, stockdv1.ClusterClient) {
	t.Helper()
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 200 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := &clients{conn: conn, inv: stockdv1.NewInventoryClient(conn), erp: stockdv1.NewErpClient(conn), admin: stockdv1.NewAdminClient(conn)}
	return c, stockdv1.NewClusterClient(conn)
}

// startCluster starts n nodes: node1 bootstraps, the others join through it.
// It returns once every node reports the same leader and n voters.
func startCluster(t testing.TB, n int, args ...string) *testCluster {
	t.Helper()
	tc := &testCluster{t: t}
	ports := freePorts(t, 2*n)
	for i := range n {
		nd := &clusterNode{
			id:       fmt.Sprintf("node%d", i+1),
			dir:      filepath.Join(t.TempDir(), fmt.Sprintf("node%d", i+1)),
			grpcAddr: ports[2*i],
			raftAddr: ports[2*i+1],
			args:     args,
		}
		if i > 0 {
			nd.join = []string{tc.nodes[0].grpcAddr}
		}
		nd.c, nd.cl = dialNode(t, nd.grpcAddr)
		tc.nodes = append(tc.nodes, nd)
	}
	// The nodes start one after another without waiting for node1 to lead:
	// the ports were free a moment ago, and every second a node waits to
	// bind is one in which another process may take its port. The joiners
	// retry until node1 has bootstrapped and admits them.
	for _, nd := range tc.nodes {
		tc.start(nd)
	}
	tc.waitMembers(n, 20*time.Second)
	return tc
}

// start starts nd's process (again) with its folder and addresses.
func (tc *testCluster) start(nd *clusterNode) {
	tc.t.Helper()
	args := []string{"--node-id", nd.id, "--grpc-addr", nd.grpcAddr, "--raft-addr", nd.raftAddr}
	if len(nd.join) > 0 {
		args = append(args, "--join", strings.Join(nd.join, ","))
	}
	p := startStockd(tc.t, nd.dir, append(args, nd.args...)...)
	nd.mu.Lock()
	nd.p = p
	nd.mu.Unlock()
}

// kill SIGKILLs nd's process.
func (tc *testCluster) kill(nd *clusterNode) {
	nd.mu.Lock()
	p := nd.p
	nd.p = nil
	nd.mu.Unlock()
	p.kill()
}

func (tc *testCluster) running(nd *clusterNode) bool {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.external || nd.p != nil
}

// status asks nd for the cluster status with a short deadline.
func statusOf(cl stockdv1.ClusterClient) (*stockdv1.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return cl.Status(ctx, &stockdv1.StatusRequest{IncludeDigests: true})
}

// waitLeader waits until a running node other than those in not reports
// itself leader, and returns it.
func (tc *testCluster) waitLeader(timeout time.Duration, not *clusterNode) *clusterNode {
	tc.t.Helper()
	var leader *clusterNode
	waitFor(tc.t, timeout, "a leader", func() bool {
		leader = tc.leaderNow(not)
		return leader != nil
	})
	return leader
}

// leaderNow returns a running node other than not that reports itself
// leader, or nil.
func (tc *testCluster) leaderNow(not *clusterNode) *clusterNode {
	for _, nd := range tc.nodes {
		if nd == not || !tc.running(nd) {
			continue
		}
		st, err := statusOf(nd.cl)
		if err == nil && st.GetLeaderId() == nd.id && st.GetNodeId() == nd.id {
			return nd
		}
	}
	return nil
}

// waitMembers waits until the leader lists n voters, every one of them
// reachable and agreeing on the leader.
func (tc *testCluster) waitMembers(n int, timeout time.Duration) {
	tc.t.Helper()
	var last *stockdv1.StatusResponse
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if l := tc.leaderNow(nil); l != nil {
			if st, err := statusOf(l.cl); err == nil {
				last = st
				if reachableVoters(st) == n {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			tc.t.Fatalf("reachable voters within %v: got status %v, want %d", timeout, last, n)
		}
		<-tick.C
	}
}

// reachableVoters counts the voters a status shows answering.
func reachableVoters(st *stockdv1.StatusResponse) int {
	n := 0
	for _, m := range st.GetMembers() {
		if m.GetVoter() && m.GetRole() != "unreachable" {
			n++
		}
	}
	return n
}

// selfMember returns the member entry a node reports for itself.
func selfMember(st *stockdv1.StatusResponse) *stockdv1.Member {
	for _, m := range st.GetMembers() {
		if m.GetNodeId() == st.GetNodeId() {
			return m
		}
	}
	return nil
}

// waitConverged waits until every given node, asked itself, reports the
// same applied index and the same state digest (I4). A digest that differs
// at an equal index is only failed at the deadline: Status pairs the digest
// of the state machine with max(machine index, raft's applied index), and
// raft counts an entry applied when it hands it to the FSM, before the FSM
// has applied it, so for a moment after a write a node can show the new
// index with the old state. A real divergence never heals and still fails.
func waitConverged(t testing.TB, timeout time.Duration, cls map[string]stockdv1.ClusterClient) {
	t.Helper()
	var last string
	mismatches := 0 // polls with equal indexes but different digests
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		applied := map[uint64]bool{}
		digests := map[string]bool{}
		var b strings.Builder
		ok := true
		for _, id := range sortedKeys(cls) {
			st, err := statusOf(cls[id])
			if err != nil {
				fmt.Fprintf(&b, "%s: %v; ", id, err)
				ok = false
				continue
			}
			m := selfMember(st)
			if m == nil {
				// A node joining empty knows no members until the leader's
				// configuration reaches it (with a snapshot install): not
				// converged yet.
				fmt.Fprintf(&b, "%s: no member for itself yet (members %v); ", id, st.GetMembers())
				ok = false
				continue
			}
			applied[m.GetAppliedIndex()] = true
			digests[m.GetStateDigest()] = true
			fmt.Fprintf(&b, "%s applied %d digest %.12s; ", id, m.GetAppliedIndex(), m.GetStateDigest())
		}
		last = b.String()
		if ok && len(applied) == 1 {
			if len(digests) == 1 {
				break
			}
			mismatches++
		}
		if time.Now().After(deadline) {
			if ok && len(applied) == 1 {
				dumpSnapshots(t, cls)
				t.Fatalf("state digests at one applied index for %v: got %s, want all equal (I4)", timeout, last)
			}
			t.Fatalf("applied indexes within %v: got %s, want all equal", timeout, last)
		}
		<-tick.C
	}
	t.Logf("converged: %s (%d polls saw equal indexes with different digests first)", last, mismatches)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// dumpSnapshots saves every node's snapshot (Cluster.SaveSnapshot) into
// $STOCKD_DUMP_DIR, when set, so diverged states can be compared record by
// record.
func dumpSnapshots(t testing.TB, cls map[string]stockdv1.ClusterClient) {
	dir := os.Getenv("STOCKD_DUMP_DIR")
	if dir == "" {
		t.Log("set STOCKD_DUMP_DIR to keep the nodes' snapshots of a digest mismatch")
		return
	}
	for id, cl := range cls {
		var buf bytes.Buffer
		index, err := fetchSnapshot(ctxT(t), cl, &buf)
		if err != nil {
			t.Logf("SaveSnapshot %s: %v", id, err)
			continue
		}
		path := filepath.Join(dir, fmt.Sprintf("%s-%d.bbolt", id, index))
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Logf("save snapshot of %s: %v", id, err)
			continue
		}
		t.Logf("snapshot of %s at index %d: %s", id, index, path)
	}
}

// indeterminate reports whether err leaves a write's outcome unknown, so the
// same request id must be retried until a definite answer comes back.
func indeterminate(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Canceled, codes.Aborted:
		// Aborted never comes from a plain Reserve without mod_revision; kept
		// indeterminate only so a stray one cannot be mistaken for a refusal.
		return true
	}
	return false
}

// reserveOutcome is the definite answer one reservation id got.
type reserveOutcome struct {
	id   string
	sku  string
	qty  int64
	resp *stockdv1.ReserveResponse // nil when refused
	code codes.Code                // codes.OK when held
	// tries counts the attempts; attempts after the first reused the id.
	tries int
}

// reserveUntilDefinite reserves qty of sku under id, retrying indeterminate
// errors with the same id on the next node, until a definite answer or the
// deadline. nodes picks the node of attempt i. onOK runs with the start time
// of the attempt that got the answer.
func reserveUntilDefinite(ctx context.Context, pick func(attempt int) *clients, id, sku string, qty int64) (reserveOutcome, time.Time, error) {
	out := reserveOutcome{id: id, sku: sku, qty: qty}
	req := &stockdv1.ReserveRequest{Channel: "web", ReservationId: id,
		Lines: []*stockdv1.ReserveLine{{Sku: sku, Quantity: qty}}}
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			return out, time.Time{}, fmt.Errorf("reserve %s: no definite answer after %d tries: %w", id, attempt, ctx.Err())
		}
		started := time.Now()
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		resp, err := pick(attempt).inv.Reserve(actx, req)
		cancel()
		out.tries = attempt + 1
		if err == nil {
			out.resp = resp
			return out, started, nil
		}
		if indeterminate(err) {
			continue
		}
		out.code = status.Code(err)
		if out.code != codes.FailedPrecondition {
			return out, started, fmt.Errorf("reserve %s (%d of %s), try %d: got %v, want OK, FAILED_PRECONDITION or a retryable code", id, qty, sku, attempt+1, err)
		}
		return out, started, nil
	}
}

const hotSKUs = 5

func hotSKU(i int) string { return fmt.Sprintf("HOT-%d", i%hotSKUs) }

// setStockUntilDefinite sets every hot SKU's on_hand at ams and fra to
// onHand under ERP version v, retrying indeterminate errors (a replayed
// version is ignored as stale, so a retry is safe).
func setStockUntilDefinite(ctx context.Context, pick func(attempt int) *clients, v uint64, onHand int64) (uint64, error) {
	var rows []*stockdv1.StockCount
	for i := range hotSKUs {
		for _, l := range []string{"ams", "fra"} {
			rows = append(rows, &stockdv1.StockCount{Item: hotSKU(i), Location: l, OnHandBaseUnits: onHand, Version: v})
		}
	}
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("set stock v%d: %w", v, ctx.Err())
		}
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		resp, err := pick(attempt).erp.SetStock(actx, &stockdv1.SetStockRequest{Rows: rows})
		cancel()
		if err == nil {
			for i, r := range resp.GetRows() {
				if r.GetStatus() == stockdv1.RowStatus_ROW_STATUS_REJECTED {
					return 0, fmt.Errorf("set stock v%d row %d: rejected: %s", v, i, r.GetReason())
				}
			}
			return resp.GetRevision(), nil
		}
		if !indeterminate(err) {
			return 0, fmt.Errorf("set stock v%d: %w", v, err)
		}
	}
}

// ackLog collects the definite answers of a workload and the times of its
// successful writes.
type ackLog struct {
	mu       sync.Mutex
	cond     *sync.Cond
	outcomes []reserveOutcome
	oks      int
	maxRev   uint64
	retried  int // ids that needed more than one try

	// Gap measurement between consecutive successful writes, all clients.
	lastOK time.Time
	maxGap time.Duration
	gapAt  time.Time

	// firstOKAfter is the first success of an attempt started after mark.
	mark         time.Time
	firstOKAfter time.Time
}

func newAckLog() *ackLog {
	a := &ackLog{}
	a.cond = sync.NewCond(&a.mu)
	return a
}

func (a *ackLog) add(o reserveOutcome, started time.Time) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.outcomes = append(a.outcomes, o)
	if o.tries > 1 {
		a.retried++
	}
	if o.code == codes.OK {
		a.oks++
		a.maxRev = max(a.maxRev, o.resp.GetRevision())
		if !a.lastOK.IsZero() && now.Sub(a.lastOK) > a.maxGap {
			a.maxGap, a.gapAt = now.Sub(a.lastOK), a.lastOK
		}
		a.lastOK = now
	}
	if o.code == codes.OK && !a.mark.IsZero() && a.firstOKAfter.IsZero() && started.After(a.mark) {
		a.firstOKAfter = now
	}
	a.cond.Broadcast()
}

// answers returns how many definite answers arrived so far.
func (a *ackLog) answers() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.outcomes)
}

// setMark starts the wait for the first write attempted after now.
func (a *ackLog) setMark() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.mark, a.firstOKAfter = time.Now(), time.Time{}
	return a.mark
}

// waitFirstOKAfterMark returns the time of the first success of an attempt
// started after the mark.
func (a *ackLog) waitFirstOKAfterMark(t *testing.T, timeout time.Duration) time.Time {
	t.Helper()
	var got time.Time
	waitFor(t, timeout, "a successful write attempted after the mark", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		got = a.firstOKAfter
		return !got.IsZero()
	})
	return got
}

// runClients starts n goroutines that reserve 1-2 units of the hot SKUs under
// unique ids, spread over the nodes, until stop closes. Each finishes the id
// it is working on before it returns, so every id ends with a definite answer.
func runClients(t *testing.T, n int, nodes []*clients, log *ackLog, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	for g := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("c%02d-%05d", g, i)
				sku := hotSKU(g*7 + i)
				qty := int64(1 + (g+i)%2)
				pick := func(attempt int) *clients { return nodes[(g+i+attempt)%len(nodes)] }
				o, started, err := reserveUntilDefinite(ctx, pick, id, sku, qty)
				if err != nil {
					t.Error(err)
					return
				}
				log.add(o, started)
			}
		}()
	}
	return &wg
}
