package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

type joinCall struct {
	nodeID, raftAddr, grpcAddr string
	featureVersion             uint32
}

// fakeCluster records membership calls and answers with what the test set.
type fakeCluster struct {
	mu            sync.Mutex
	joins         []joinCall
	leaves        []string
	barrierCalls  int
	digestAsks    []bool // the digests argument of each Status call
	err           error  // returned by Join, Leave, Status and SaveSnapshot when set
	rev           store.Revision
	status        ClusterStatus
	snapshot      []byte
	snapshotIndex store.Revision
	// barrier answers ReadBarrier; nil answers 0.
	barrier func(ctx context.Context) (store.Revision, error)
}

func (c *fakeCluster) ReadBarrier(ctx context.Context) (store.Revision, error) {
	c.mu.Lock()
	c.barrierCalls++
	barrier := c.barrier
	c.mu.Unlock()
	if barrier == nil {
		return 0, nil
	}
	return barrier(ctx)
}

func (c *fakeCluster) Join(_ context.Context, nodeID, raftAddr, grpcAddr string, featureVersion uint32) (store.Revision, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.joins = append(c.joins, joinCall{nodeID, raftAddr, grpcAddr, featureVersion})
	return c.rev, c.err
}

func (c *fakeCluster) Leave(_ context.Context, nodeID string) (store.Revision, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.leaves = append(c.leaves, nodeID)
	return c.rev, c.err
}

func (c *fakeCluster) Status(_ context.Context, digests bool) (ClusterStatus, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.digestAsks = append(c.digestAsks, digests)
	return c.status, c.err
}

// SaveSnapshot writes the snapshot in odd-sized pieces, then fails with
// c.err if set, as a writer that broke halfway would.
func (c *fakeCluster) SaveSnapshot(_ context.Context, w io.Writer) (store.Revision, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for b := c.snapshot; len(b) > 0; {
		n := min(len(b), 9_999)
		if _, err := w.Write(b[:n]); err != nil {
			return 0, err
		}
		b = b[n:]
	}
	if c.err != nil {
		return 0, c.err
	}
	return c.snapshotIndex, nil
}

func (c *fakeCluster) setErr(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
}

func (c *fakeCluster) calls() (joins []joinCall, leaves []string, barriers int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]joinCall(nil), c.joins...), append([]string(nil), c.leaves...), c.barrierCalls
}

func TestJoinAndLeave(t *testing.T) {
	fc := &fakeCluster{rev: 42}
	h := newHarness(t, withCluster(fc))
	ctx := testContext(t)

	resp, err := h.clu.Join(ctx, &stockdv1.JoinRequest{NodeId: "n2", RaftAddr: "10.0.0.2:7300", GrpcAddr: "10.0.0.2:7400", FeatureVersion: 3})
	if err != nil || resp.GetRevision() != 42 {
		t.Fatalf("Join(n2): got revision %d, %v; want 42, nil", resp.GetRevision(), err)
	}
	lresp, err := h.clu.Leave(ctx, &stockdv1.LeaveRequest{NodeId: "n3"})
	if err != nil || lresp.GetRevision() != 42 {
		t.Fatalf("Leave(n3): got revision %d, %v; want 42, nil", lresp.GetRevision(), err)
	}
	joins, leaves, _ := fc.calls()
	if want := []joinCall{{"n2", "10.0.0.2:7300", "10.0.0.2:7400", 3}}; fmt.Sprint(joins) != fmt.Sprint(want) {
		t.Errorf("Join(n2): the cluster got %v, want %v", joins, want)
	}
	if fmt.Sprint(leaves) != "[n3]" {
		t.Errorf("Leave(n3): the cluster got %v, want [n3]", leaves)
	}

	t.Run("the cluster's errors map through the sentinels", func(t *testing.T) {
		for _, tc := range []struct {
			err  error
			want codes.Code
		}{
			{fmt.Errorf("forward join: %w", errFakeNotLeader), codes.Unavailable},
			{fmt.Errorf("propose put node: %w", errFakeNoFeature), codes.FailedPrecondition},
			{errors.New("raft: add voter 10.0.0.9 failed"), codes.Internal},
		} {
			fc.setErr(tc.err)
			_, err := h.clu.Join(ctx, &stockdv1.JoinRequest{NodeId: "n2", RaftAddr: "h:1", GrpcAddr: "h:2", FeatureVersion: 1})
			checkStatus(t, fmt.Sprintf("Join with cluster error %q", tc.err), err, tc.want, "")
			_, err = h.clu.Leave(ctx, &stockdv1.LeaveRequest{NodeId: "n2"})
			checkStatus(t, fmt.Sprintf("Leave with cluster error %q", tc.err), err, tc.want, "")
			if strings.Contains(err.Error(), "10.0.0.9") {
				t.Errorf("Leave with cluster error %q: got %q, which leaks the detail", tc.err, err)
			}
		}
	})
}

func TestJoinAndLeaveValidation(t *testing.T) {
	fc := &fakeCluster{rev: 1}
	h := newHarness(t, withCluster(fc))
	ctx := testContext(t)
	valid := func() *stockdv1.JoinRequest {
		return &stockdv1.JoinRequest{NodeId: "n2", RaftAddr: "10.0.0.2:7300", GrpcAddr: "node2.example:7400", FeatureVersion: 1}
	}
	long := strings.Repeat("x", store.MaxIDBytes+1)
	cases := []struct {
		name  string
		edit  func(r *stockdv1.JoinRequest)
		field string
	}{
		{"a missing node id is refused", func(r *stockdv1.JoinRequest) { r.NodeId = "" }, "node_id"},
		{"a node id over 256 bytes is refused", func(r *stockdv1.JoinRequest) { r.NodeId = long }, "node_id"},
		{"a node id with a control character is refused", func(r *stockdv1.JoinRequest) { r.NodeId = "n\n2" }, "node_id"},
		{"a missing raft address is refused", func(r *stockdv1.JoinRequest) { r.RaftAddr = "" }, "raft_addr"},
		{"a raft address without port is refused", func(r *stockdv1.JoinRequest) { r.RaftAddr = "10.0.0.2" }, "raft_addr"},
		{"a raft address over 256 bytes is refused", func(r *stockdv1.JoinRequest) { r.RaftAddr = long + ":1" }, "raft_addr"},
		{"a missing grpc address is refused", func(r *stockdv1.JoinRequest) { r.GrpcAddr = "" }, "grpc_addr"},
		{"a grpc address without host is refused", func(r *stockdv1.JoinRequest) { r.GrpcAddr = ":7400" }, "grpc_addr"},
		{"a zero feature version is refused", func(r *stockdv1.JoinRequest) { r.FeatureVersion = 0 }, "feature_version"},
		{"the first bad field is named", func(r *stockdv1.JoinRequest) { r.RaftAddr, r.FeatureVersion = "", 0 }, "raft_addr"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := valid()
			tc.edit(req)
			_, err := h.clu.Join(ctx, req)
			checkStatus(t, fmt.Sprintf("Join(%v)", req), err, codes.InvalidArgument, tc.field)
		})
	}
	t.Run("a leave without node id is refused", func(t *testing.T) {
		_, err := h.clu.Leave(ctx, &stockdv1.LeaveRequest{})
		checkStatus(t, "Leave(node_id \"\")", err, codes.InvalidArgument, "node_id")
	})
	if joins, leaves, _ := fc.calls(); len(joins) != 0 || len(leaves) != 0 {
		t.Errorf("invalid requests: the cluster got joins %v, leaves %v; want none", joins, leaves)
	}
	if _, err := h.clu.Join(ctx, valid()); err != nil {
		t.Errorf("Join(%v): got %v, want nil", valid(), err)
	}
}

func TestClusterStatus(t *testing.T) {
	var digest [32]byte
	for i := range digest {
		digest[i] = byte(i)
	}
	fc := &fakeCluster{status: ClusterStatus{
		NodeID: "n2", LeaderID: "n1", LeaderRaftAddr: "10.0.0.1:7300", Term: 7, CommitIndex: 900, ClusterFeatureVersion: 2,
		Members: []ClusterMember{
			{NodeID: "n1", RaftAddr: "10.0.0.1:7300", GRPCAddr: "10.0.0.1:7400", Role: "leader", Voter: true,
				AppliedIndex: 900, Lag: 0, Term: 7, FeatureVersion: 2, StateDigest: digest},
			{NodeID: "n3", RaftAddr: "10.0.0.3:7300", GRPCAddr: "10.0.0.3:7400", Role: "unreachable", Voter: false},
		},
	}}
	h := newHarness(t, withCluster(fc))
	got, err := h.clu.Status(testContext(t), &stockdv1.StatusRequest{})
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	want := &stockdv1.StatusResponse{
		NodeId: "n2", LeaderId: "n1", LeaderRaftAddr: "10.0.0.1:7300", Term: 7, CommitIndex: 900, ClusterFeatureVersion: 2,
		Members: []*stockdv1.Member{
			{NodeId: "n1", RaftAddr: "10.0.0.1:7300", GrpcAddr: "10.0.0.1:7400", Role: "leader", Voter: true,
				AppliedIndex: 900, Term: 7, FeatureVersion: 2,
				StateDigest: "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"},
			// An unknown digest is empty, never 64 zeros a reader could compare.
			{NodeId: "n3", RaftAddr: "10.0.0.3:7300", GrpcAddr: "10.0.0.3:7400", Role: "unreachable"},
		},
	}
	if !proto.Equal(got, want) {
		t.Errorf("Status of %+v: got %v, want %v", fc.status, got, want)
	}
	if _, err := h.clu.Status(testContext(t), &stockdv1.StatusRequest{IncludeDigests: true}); err != nil {
		t.Fatalf("Status with digests: %v", err)
	}
	fc.mu.Lock()
	asks := fc.digestAsks
	fc.mu.Unlock()
	if len(asks) != 2 || asks[0] || !asks[1] {
		t.Errorf("digests asked of the cluster by Status{} then Status{include_digests}: got %v, want [false true]", asks)
	}
	fc.setErr(fmt.Errorf("status: %w", errFakeNotLeader))
	_, err = h.clu.Status(testContext(t), &stockdv1.StatusRequest{})
	checkStatus(t, "Status with cluster error", err, codes.Unavailable, "")
}

// receiveSnapshot reads a SaveSnapshot stream to its end.
func receiveSnapshot(t *testing.T, h *harness) (data []byte, chunks []*stockdv1.SnapshotChunk, err error) {
	t.Helper()
	stream, err := h.clu.SaveSnapshot(testContext(t), &stockdv1.SaveSnapshotRequest{})
	if err != nil {
		return nil, nil, err
	}
	for {
		c, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return data, chunks, nil
		}
		if err != nil {
			return data, chunks, err
		}
		chunks = append(chunks, c)
		data = append(data, c.GetData()...)
	}
}

func TestSaveSnapshot(t *testing.T) {
	payload := make([]byte, 600<<10)
	rng := rand.NewChaCha8([32]byte{1})
	if _, err := rng.Read(payload); err != nil {
		t.Fatalf("random payload: %v", err)
	}
	dir := t.TempDir()
	fc := &fakeCluster{snapshot: payload, snapshotIndex: 1234}
	h := newHarness(t, withCluster(fc), withSnapshotDir(dir))

	t.Run("the stream carries exactly the bytes written, the index on every chunk", func(t *testing.T) {
		data, chunks, err := receiveSnapshot(t, h)
		if err != nil {
			t.Fatalf("SaveSnapshot of %d bytes: %v", len(payload), err)
		}
		if !bytes.Equal(data, payload) {
			t.Fatalf("SaveSnapshot of %d bytes: got %d bytes that differ, want the same bytes", len(payload), len(data))
		}
		if len(chunks) != 3 {
			t.Errorf("SaveSnapshot of %d bytes: got %d chunks, want 3 of at most 256 KiB", len(payload), len(chunks))
		}
		for i, c := range chunks {
			if len(c.GetData()) > snapshotChunkBytes || len(c.GetData()) == 0 {
				t.Errorf("chunk %d: got %d bytes, want 1 to %d", i, len(c.GetData()), snapshotChunkBytes)
			}
			if c.GetIndex() != 1234 {
				t.Errorf("chunk %d: got index %d, want 1234", i, c.GetIndex())
			}
		}
		checkNoSpool(t, dir)
	})
	t.Run("a failed snapshot sends no chunk and leaves no spool file", func(t *testing.T) {
		fc.setErr(errors.New("bbolt: disk full at /var/lib/stockd"))
		data, chunks, err := receiveSnapshot(t, h)
		checkStatus(t, "SaveSnapshot failing after writing", err, codes.Internal, "")
		if len(chunks) != 0 || len(data) != 0 {
			t.Errorf("SaveSnapshot failing after writing: got %d chunks, want none", len(chunks))
		}
		if strings.Contains(err.Error(), "/var/lib") {
			t.Errorf("SaveSnapshot failing after writing: got %q, which leaks the detail", err)
		}
		checkNoSpool(t, dir)
	})
	t.Run("an empty snapshot is an empty stream", func(t *testing.T) {
		fc.setErr(nil)
		fc.mu.Lock()
		fc.snapshot = nil
		fc.mu.Unlock()
		_, chunks, err := receiveSnapshot(t, h)
		if err != nil || len(chunks) != 0 {
			t.Errorf("SaveSnapshot of 0 bytes: got %d chunks, %v; want 0, nil", len(chunks), err)
		}
		checkNoSpool(t, dir)
	})
}

func checkNoSpool(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read spool dir: %v", err)
	}
	for _, e := range entries {
		t.Errorf("spool dir after SaveSnapshot: got %s, want it empty", e.Name())
	}
}

func TestLinearizableReads(t *testing.T) {
	linearAvail := &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: []string{"ROSE"}, Linearizable: true}

	t.Run("a read waits for a read index applied meanwhile", func(t *testing.T) {
		fc := &fakeCluster{}
		h := newHarness(t, withCluster(fc), withReadWait(time.Minute))
		h.seed(t)
		target := h.m.AppliedIndex() + 1
		called := make(chan struct{}, 2)
		fc.barrier = func(context.Context) (store.Revision, error) {
			called <- struct{}{}
			return target, nil
		}
		type answer struct {
			rev   uint64
			total int64
			err   error
		}
		done := make(chan answer, 1)
		go func() {
			resp, err := h.inv.GetAvailability(testContext(t), linearAvail)
			a := answer{rev: resp.GetRevision(), err: err}
			if err == nil {
				a.total = resp.GetSkus()[0].GetAvailableSkuUnits()
			}
			done <- a
		}()
		<-called
		// The write lands after the barrier answered; a read that did not
		// wait for the read index would show the old 15.
		h.setStock(t, "ROSE", "WH1", 100, 2)
		a := <-done
		if a.err != nil || a.rev < uint64(target) || a.total != 105 {
			t.Fatalf("GetAvailability(linearizable, read index %d): got revision %d total %d err %v, want >= %d, 105, nil",
				target, a.rev, a.total, a.err, target)
		}

		res, err := h.inv.Reserve(testContext(t), reserveReq("cart-1", 1))
		if err != nil {
			t.Fatalf("Reserve(cart-1): %v", err)
		}
		target = store.Revision(res.GetRevision()) + 1
		type resAnswer struct {
			resp *stockdv1.GetReservationResponse
			err  error
		}
		resDone := make(chan resAnswer, 1)
		go func() {
			resp, err := h.inv.GetReservation(testContext(t), &stockdv1.GetReservationRequest{Channel: "web", ReservationId: "cart-1", Linearizable: true})
			resDone <- resAnswer{resp, err}
		}()
		<-called
		if _, err := h.inv.Release(testContext(t), &stockdv1.ReleaseRequest{Channel: "web", ReservationId: "cart-1"}); err != nil {
			t.Fatalf("Release(cart-1): %v", err)
		}
		ra := <-resDone
		if ra.err != nil || ra.resp.GetRevision() < uint64(target) || ra.resp.GetReservation().GetState() != stockdv1.ReservationState_RESERVATION_STATE_RELEASED {
			t.Fatalf("GetReservation(cart-1, linearizable, read index %d): got revision %d state %s err %v, want >= %d RELEASED",
				target, ra.resp.GetRevision(), ra.resp.GetReservation().GetState(), ra.err, target)
		}
	})

	t.Run("a read index not applied in time is unavailable", func(t *testing.T) {
		fc := &fakeCluster{}
		h := newHarness(t, withCluster(fc), withReadWait(20*time.Millisecond))
		h.seed(t)
		ahead := h.m.AppliedIndex() + 100
		fc.barrier = func(context.Context) (store.Revision, error) { return ahead, nil }
		_, err := h.inv.GetAvailability(testContext(t), linearAvail)
		checkStatus(t, fmt.Sprintf("GetAvailability(linearizable, read index %d)", ahead), err, codes.Unavailable, "linearizable")
		_, err = h.inv.GetReservation(testContext(t), &stockdv1.GetReservationRequest{Channel: "web", ReservationId: "x", Linearizable: true})
		checkStatus(t, fmt.Sprintf("GetReservation(linearizable, read index %d)", ahead), err, codes.Unavailable, "linearizable")
	})

	t.Run("min_revision beyond the read index is still waited for", func(t *testing.T) {
		fc := &fakeCluster{}
		h := newHarness(t, withCluster(fc), withReadWait(20*time.Millisecond))
		h.seed(t)
		applied := h.m.AppliedIndex()
		fc.barrier = func(context.Context) (store.Revision, error) { return applied, nil }
		req := proto.CloneOf(linearAvail)
		req.MinRevision = uint64(applied) + 5
		_, err := h.inv.GetAvailability(testContext(t), req)
		checkStatus(t, fmt.Sprintf("GetAvailability(linearizable, read index %d, min_revision %d)", applied, req.MinRevision), err, codes.Unavailable, "min_revision")
	})

	t.Run("barrier errors map through the sentinels", func(t *testing.T) {
		for _, tc := range []struct {
			err  error
			want codes.Code
			msg  string
		}{
			{fmt.Errorf("read index: %w", errFakeNotLeader), codes.Unavailable, "not leader"},
			{errors.New("raft: verify leader 10.0.0.3 failed"), codes.Internal, internalMessage},
		} {
			fc := &fakeCluster{barrier: func(context.Context) (store.Revision, error) { return 0, tc.err }}
			h := newHarness(t, withCluster(fc))
			h.seed(t)
			_, err := h.inv.GetAvailability(testContext(t), linearAvail)
			checkStatus(t, fmt.Sprintf("GetAvailability(linearizable) with barrier error %q", tc.err), err, tc.want, "")
			if !strings.HasSuffix(err.Error(), "desc = "+tc.msg) {
				t.Errorf("GetAvailability(linearizable) with barrier error %q: got %q, want message %q", tc.err, err, tc.msg)
			}
			_, err = h.inv.GetReservation(testContext(t), &stockdv1.GetReservationRequest{Channel: "web", ReservationId: "x", Linearizable: true})
			checkStatus(t, fmt.Sprintf("GetReservation(linearizable) with barrier error %q", tc.err), err, tc.want, "")
		}
	})

	t.Run("a barrier that does not answer in time is unavailable", func(t *testing.T) {
		fc := &fakeCluster{barrier: func(ctx context.Context) (store.Revision, error) {
			<-ctx.Done()
			return 0, fmt.Errorf("read index: %w", ctx.Err())
		}}
		h := newHarness(t, withCluster(fc), withReadWait(20*time.Millisecond))
		h.seed(t)
		_, err := h.inv.GetAvailability(testContext(t), linearAvail)
		checkStatus(t, "GetAvailability(linearizable) with a stuck barrier", err, codes.Unavailable, "linearizable")
	})

	t.Run("a plain read does not ask for a read index", func(t *testing.T) {
		fc := &fakeCluster{}
		h := newHarness(t, withCluster(fc))
		h.seed(t)
		h.available(t, "web", "ROSE")
		if _, _, n := fc.calls(); n != 0 {
			t.Errorf("GetAvailability(not linearizable): got %d barrier calls, want 0", n)
		}
	})

	t.Run("without a Cluster, linearizable reads and the Cluster service are refused", func(t *testing.T) {
		h := newHarness(t)
		h.seed(t)
		_, err := h.inv.GetAvailability(testContext(t), linearAvail)
		checkStatus(t, "GetAvailability(linearizable) without a Cluster", err, codes.FailedPrecondition, "linearizable")
		_, err = h.inv.GetReservation(testContext(t), &stockdv1.GetReservationRequest{Channel: "web", ReservationId: "x", Linearizable: true})
		checkStatus(t, "GetReservation(linearizable) without a Cluster", err, codes.FailedPrecondition, "linearizable")
		_, err = h.clu.Status(testContext(t), &stockdv1.StatusRequest{})
		checkStatus(t, "Status without a Cluster", err, codes.Unimplemented, "")
		resp, err := h.health.Check(testContext(t), &healthpb.HealthCheckRequest{Service: stockdv1.Cluster_ServiceDesc.ServiceName})
		checkStatus(t, "health Check(Cluster) without a Cluster", err, codes.NotFound, "")
		if resp != nil {
			t.Errorf("health Check(Cluster) without a Cluster: got %v, want no answer", resp)
		}
	})
}

func TestPreconditionSentinel(t *testing.T) {
	h := newHarness(t)
	h.seed(t)
	h.p.setFail(fmt.Errorf("propose reserve: %w", errFakeNoFeature))
	_, err := h.inv.Reserve(testContext(t), reserveReq("cart-1", 1))
	checkStatus(t, "Reserve with a feature not enabled", err, codes.FailedPrecondition, "")
	if !strings.HasSuffix(err.Error(), "desc = "+errFakeNoFeature.Error()) {
		t.Errorf("Reserve with a feature not enabled: got %q, want message %q", err, errFakeNoFeature)
	}
}

func TestHealthListsClusterWhenPresent(t *testing.T) {
	h := newHarness(t, withCluster(&fakeCluster{}))
	resp, err := h.health.Check(testContext(t), &healthpb.HealthCheckRequest{Service: stockdv1.Cluster_ServiceDesc.ServiceName})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health Check(Cluster) with a Cluster: got %s %v, want SERVING", resp.GetStatus(), err)
	}
}
