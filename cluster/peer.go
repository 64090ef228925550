package cluster

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/metadata"

	"github.com/stockd/stockd/api/peerv1"
	"github.com/stockd/stockd/store"
)

// peerServer serves the Peer service of one Node. Propose and ReadIndex act
// only on the leader and never forward: a node that does not lead answers
// Unavailable. Join and Leave are forwarded by a follower at most once.
type peerServer struct {
	peerv1.UnimplementedPeerServer
	n *Node
}

// NewPeerServer returns the Peer service of n, for cmd/stockd to register on
// its gRPC server. Safe for concurrent use; it answers Unavailable while n is
// not running.
func NewPeerServer(n *Node) peerv1.PeerServer { return &peerServer{n: n} }

// leading returns the running node if it leads, else an Unavailable status.
func (s *peerServer) leading(op string) (*running, error) {
	rn := s.n.run.Load()
	if rn == nil {
		return nil, toStatus(fmt.Errorf("%s: %w", op, ErrStopped))
	}
	if rn.raft.State() != raft.Leader {
		return nil, toStatus(s.n.notLeader(op, rn))
	}
	return rn, nil
}

// Propose applies a forwarded command on the leader.
func (s *peerServer) Propose(ctx context.Context, req *peerv1.ProposeRequest) (*peerv1.ProposeResponse, error) {
	rn, err := s.leading("propose")
	if err != nil {
		return nil, err
	}
	if req.GetCommand() == nil {
		return nil, toStatus(fmt.Errorf("propose: %w", store.Validate(req.GetCommand())))
	}
	res, err := s.n.proposeLocal(ctx, rn, req.GetCommand())
	if err != nil {
		return nil, toStatus(err)
	}
	return &peerv1.ProposeResponse{Result: store.EncodeResult(res)}, nil
}

// ReadIndex confirms leadership with a quorum and returns the index a
// linearizable read must wait for.
func (s *peerServer) ReadIndex(ctx context.Context, _ *peerv1.ReadIndexRequest) (*peerv1.ReadIndexResponse, error) {
	rn, err := s.leading("read index")
	if err != nil {
		return nil, err
	}
	idx, err := s.n.readIndexLocal(rn)
	if err != nil {
		return nil, toStatus(err)
	}
	return &peerv1.ReadIndexResponse{CommitIndex: uint64(idx)}, nil
}

// Join admits a node. A follower forwards the request once to the leader
// (a new node may only know a follower's address); a request that was
// already forwarded is answered Unavailable rather than forwarded again.
func (s *peerServer) Join(ctx context.Context, req *peerv1.JoinRequest) (*peerv1.JoinResponse, error) {
	rn, err := s.leadingOrForward(ctx, "join")
	if err != nil {
		return nil, err
	}
	var rev store.Revision
	if rn != nil {
		rev, err = s.n.joinLocal(ctx, rn, req.GetNodeId(), req.GetRaftAddr(), req.GetGrpcAddr(), req.GetFeatureVersion())
	} else {
		rev, err = s.n.Join(ctx, req.GetNodeId(), req.GetRaftAddr(), req.GetGrpcAddr(), req.GetFeatureVersion())
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &peerv1.JoinResponse{Revision: uint64(rev)}, nil
}

// Leave removes a node; a follower forwards once, as for Join.
func (s *peerServer) Leave(ctx context.Context, req *peerv1.LeaveRequest) (*peerv1.LeaveResponse, error) {
	rn, err := s.leadingOrForward(ctx, "leave")
	if err != nil {
		return nil, err
	}
	var rev store.Revision
	if rn != nil {
		rev, err = s.n.leaveLocal(ctx, rn, req.GetNodeId())
	} else {
		rev, err = s.n.Leave(ctx, req.GetNodeId())
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &peerv1.LeaveResponse{Revision: uint64(rev)}, nil
}

// leadingOrForward returns the running node if it leads; nil and no error
// if the request may be forwarded once; else an Unavailable status.
func (s *peerServer) leadingOrForward(ctx context.Context, op string) (*running, error) {
	rn, err := s.leading(op)
	if err == nil {
		return rn, nil
	}
	if s.n.run.Load() == nil || forwarded(ctx) {
		return nil, err
	}
	return nil, nil
}

// forwardedKey marks, in gRPC metadata, a membership request a follower
// already forwarded, so it takes at most one hop.
const forwardedKey = "stockd-forwarded"

func withForwarded(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, forwardedKey, "1")
}

func forwarded(ctx context.Context) bool {
	return len(metadata.ValueFromIncomingContext(ctx, forwardedKey)) > 0
}

// NodeStatus reports this node's own raft and apply state.
func (s *peerServer) NodeStatus(ctx context.Context, req *peerv1.NodeStatusRequest) (*peerv1.NodeStatusResponse, error) {
	st, err := s.n.nodeStatus(req.GetIncludeDigest())
	if err != nil {
		return nil, toStatus(err)
	}
	return st, nil
}

// nodeStatus is this node's own view, as NodeStatus reports it; the state
// digest only when asked, as it copies the state under the apply lock.
func (n *Node) nodeStatus(withDigest bool) (*peerv1.NodeStatusResponse, error) {
	rn := n.run.Load()
	if rn == nil {
		return nil, fmt.Errorf("node status: %w", ErrStopped)
	}
	st := &peerv1.NodeStatusResponse{
		NodeId:           n.cfg.NodeID,
		Role:             roleOf(rn.raft.State()),
		Term:             rn.raft.CurrentTerm(),
		AppliedIndex:     uint64(n.machine.AppliedIndex()),
		RaftAppliedIndex: rn.raft.AppliedIndex(),
		CommitIndex:      rn.raft.CommitIndex(),
		LastLogIndex:     rn.raft.LastIndex(),
		FeatureVersion:   n.cfg.FeatureVersion,
	}
	if withDigest {
		// The digest and its index come from one snapshot, so they agree.
		snap := n.machine.Snapshot()
		digest, err := snap.Digest()
		if err != nil {
			return nil, fmt.Errorf("node status: digest: %w", err)
		}
		st.AppliedIndex, st.StateDigest = uint64(snap.Index()), digest[:]
	}
	return st, nil
}

// roleOf names a raft state as Member.Role does.
func roleOf(s raft.RaftState) string { return strings.ToLower(s.String()) }
