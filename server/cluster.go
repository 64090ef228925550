package server

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"

	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

// snapshotChunkBytes is the most data one SnapshotChunk carries, well under
// gRPC's default 4 MiB message limit.
const snapshotChunkBytes = 256 << 10

// Cluster is the membership and replication side of the node, as the Cluster
// service and linearizable reads need it. cmd/stockd adapts the cluster
// package's Node to it; server never imports cluster. Every method is called
// from many goroutines at once, and its errors are mapped through the
// sentinels of Config (Unavailable, Exhausted, Precondition).
type Cluster interface {
	// ReadBarrier returns a revision that every write acknowledged before
	// the call is at or below (the leader's read index, confirmed with a
	// quorum). The caller then waits for the local machine to apply it.
	ReadBarrier(ctx context.Context) (store.Revision, error)
	// Join admits a node as a voter; joining again with the same id and
	// addresses is a no-op. The revision is that of the membership record.
	Join(ctx context.Context, nodeID, raftAddr, grpcAddr string, featureVersion uint32) (store.Revision, error)
	// Leave removes a node from the cluster.
	Leave(ctx context.Context, nodeID string) (store.Revision, error)
	// Status is this node's view of the cluster and every member.
	Status(ctx context.Context, digests bool) (ClusterStatus, error)
	// SaveSnapshot writes a consistent snapshot of the node's state to w and
	// returns the applied index it reflects.
	SaveSnapshot(ctx context.Context, w io.Writer) (store.Revision, error)
}

// ClusterStatus is one node's view of the cluster.
type ClusterStatus struct {
	// NodeID is the node that answered.
	NodeID string
	// LeaderID and LeaderRaftAddr name the leader; empty when none is known.
	LeaderID       string
	LeaderRaftAddr string
	// Term is the raft term; CommitIndex the leader's commit index as known here.
	Term        uint64
	CommitIndex uint64
	// ClusterFeatureVersion is the lowest log feature version among voters.
	ClusterFeatureVersion uint32
	// Members lists every member, in the order the cluster reports them.
	Members []ClusterMember
}

// ClusterMember is one member as the answering node sees it.
type ClusterMember struct {
	NodeID   string
	RaftAddr string
	GRPCAddr string
	// Role is leader, follower or candidate as the member reports itself, or
	// unreachable when it did not answer.
	Role  string
	Voter bool
	// AppliedIndex is the member's last applied log index; Lag is the
	// leader's commit index minus it.
	AppliedIndex uint64
	Lag          uint64
	Term         uint64
	// FeatureVersion is the highest log feature version the member applies.
	FeatureVersion uint32
	// StateDigest is the SHA-256 of the member's canonical state stream at
	// AppliedIndex; all zero when unknown (an unreachable member).
	StateDigest [32]byte
}

// errLinearizableUnsupported: a linearizable read on a server built without
// a Cluster.
var errLinearizableUnsupported = errors.New("linearizable: not supported")

// errReadIndexLag: the read index of a linearizable read was not confirmed
// within the read bound.
var errReadIndexLag = errors.New("read index not confirmed in time")

// clusterService serves stockdv1.Cluster: membership, status and snapshots.
type clusterService struct {
	stockdv1.UnimplementedClusterServer
	s *Server
}

// Join admits a node as a voter.
func (c *clusterService) Join(ctx context.Context, req *stockdv1.JoinRequest) (*stockdv1.JoinResponse, error) {
	s := c.s
	if err := checkJoinRequest(req); err != nil {
		return nil, s.status(ctx, err)
	}
	rev, err := s.cluster.Join(ctx, req.GetNodeId(), req.GetRaftAddr(), req.GetGrpcAddr(), req.GetFeatureVersion())
	if err != nil {
		return nil, s.status(ctx, fmt.Errorf("join %s: %w", req.GetNodeId(), err))
	}
	return &stockdv1.JoinResponse{Revision: uint64(rev)}, nil
}

// checkJoinRequest checks fields in proto order, so the first bad one is named.
func checkJoinRequest(req *stockdv1.JoinRequest) error {
	if err := checkID("node_id", req.GetNodeId()); err != nil {
		return err
	}
	if err := checkAddr("raft_addr", req.GetRaftAddr()); err != nil {
		return err
	}
	if err := checkAddr("grpc_addr", req.GetGrpcAddr()); err != nil {
		return err
	}
	if req.GetFeatureVersion() < 1 {
		return invalid("feature_version", "must be >= 1")
	}
	return nil
}

// checkAddr checks an address a peer will dial: an id's rules plus
// HOST:PORT with both parts present. A voter added with an address nobody
// can dial would count toward quorum without ever voting.
func checkAddr(field, addr string) error {
	if err := checkID(field, addr); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" {
		return invalid(field, "want HOST:PORT")
	}
	return nil
}

// Leave removes a node from the cluster.
func (c *clusterService) Leave(ctx context.Context, req *stockdv1.LeaveRequest) (*stockdv1.LeaveResponse, error) {
	s := c.s
	if err := checkID("node_id", req.GetNodeId()); err != nil {
		return nil, s.status(ctx, err)
	}
	rev, err := s.cluster.Leave(ctx, req.GetNodeId())
	if err != nil {
		return nil, s.status(ctx, fmt.Errorf("leave %s: %w", req.GetNodeId(), err))
	}
	return &stockdv1.LeaveResponse{Revision: uint64(rev)}, nil
}

// Status shows the leader, the term and every member.
func (c *clusterService) Status(ctx context.Context, req *stockdv1.StatusRequest) (*stockdv1.StatusResponse, error) {
	s := c.s
	st, err := s.cluster.Status(ctx, req.GetIncludeDigests())
	if err != nil {
		return nil, s.status(ctx, fmt.Errorf("cluster status: %w", err))
	}
	return clusterStatusToProto(st), nil
}

func clusterStatusToProto(st ClusterStatus) *stockdv1.StatusResponse {
	resp := &stockdv1.StatusResponse{
		NodeId:                st.NodeID,
		LeaderId:              st.LeaderID,
		LeaderRaftAddr:        st.LeaderRaftAddr,
		Term:                  st.Term,
		CommitIndex:           st.CommitIndex,
		ClusterFeatureVersion: st.ClusterFeatureVersion,
		Members:               make([]*stockdv1.Member, len(st.Members)),
	}
	for i, m := range st.Members {
		resp.Members[i] = &stockdv1.Member{
			NodeId:         m.NodeID,
			RaftAddr:       m.RaftAddr,
			GrpcAddr:       m.GRPCAddr,
			Role:           m.Role,
			Voter:          m.Voter,
			AppliedIndex:   m.AppliedIndex,
			Lag:            m.Lag,
			FeatureVersion: m.FeatureVersion,
			StateDigest:    digestHex(m.StateDigest),
			Term:           m.Term,
		}
	}
	return resp
}

// digestHex is the lowercase hex of d, or "" for the all-zero digest of a
// member whose state is unknown, so that no one compares it as a real one.
func digestHex(d [32]byte) string {
	if d == ([32]byte{}) {
		return ""
	}
	return hex.EncodeToString(d[:])
}

// SaveSnapshot streams a consistent snapshot. Every chunk carries the index
// the snapshot reflects, which is only known once the Cluster has written it
// all, so the snapshot is spooled to a temporary file first and streamed from
// there; the file is removed before returning.
func (c *clusterService) SaveSnapshot(_ *stockdv1.SaveSnapshotRequest, stream stockdv1.Cluster_SaveSnapshotServer) error {
	s := c.s
	ctx := stream.Context()
	f, err := os.CreateTemp(s.snapshotDir, "stockd-snapshot-*")
	if err != nil {
		return s.status(ctx, fmt.Errorf("save snapshot: spool file: %w", err))
	}
	defer s.removeSpool(ctx, f)
	rev, err := s.cluster.SaveSnapshot(ctx, f)
	if err != nil {
		return s.status(ctx, fmt.Errorf("save snapshot: %w", err))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return s.status(ctx, fmt.Errorf("save snapshot: rewind spool file: %w", err))
	}
	for {
		// A sent message must not be modified (stats handlers may read it
		// later), so every chunk gets its own buffer.
		buf := make([]byte, snapshotChunkBytes)
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			if err := stream.Send(&stockdv1.SnapshotChunk{Data: buf[:n], Index: uint64(rev)}); err != nil {
				if ctx.Err() != nil {
					return s.status(ctx, ctx.Err())
				}
				return s.status(ctx, fmt.Errorf("save snapshot: send: %w", err))
			}
		}
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return nil
		case err != nil:
			return s.status(ctx, fmt.Errorf("save snapshot: read spool file: %w", err))
		}
	}
}

// removeSpool closes and removes a snapshot spool file. The stream's answer
// is already decided, so failures are logged, not returned.
func (s *Server) removeSpool(ctx context.Context, f *os.File) {
	if err := f.Close(); err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "close snapshot spool file", slog.String("path", f.Name()), slog.Any("error", err))
	}
	if err := os.Remove(f.Name()); err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "remove snapshot spool file", slog.String("path", f.Name()), slog.Any("error", err))
	}
}
