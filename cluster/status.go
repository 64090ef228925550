package cluster

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/stockd/stockd/api/peerv1"
)

// statusCallTimeout bounds each member's NodeStatus call in Status.
const statusCallTimeout = time.Second

// RoleUnreachable is Member.Role for a member whose NodeStatus failed.
const RoleUnreachable = "unreachable"

// Status is the cluster as one node sees it.
type Status struct {
	// NodeID is the answering node.
	NodeID string
	// LeaderID and LeaderRaftAddr name the leader raft knows; empty if none.
	LeaderID, LeaderRaftAddr string
	// Term and CommitIndex are the answering node's raft figures.
	Term, CommitIndex uint64
	// ClusterFeatureVersion is the lowest feature version over the voters.
	ClusterFeatureVersion uint32
	// Members are raft's configured servers, in configuration order.
	Members []Member
}

// Member is one configured server, with what it reported about itself.
type Member struct {
	NodeID, RaftAddr, GRPCAddr string
	// Role is leader, follower or candidate as the member reports it, or
	// unreachable when it did not answer.
	Role string
	// Voter is false for a non-voting server.
	Voter bool
	// AppliedIndex is the state machine's applied index, the one StateDigest
	// was taken at; Lag is the leader's commit index minus raft's applied
	// index, which also counts entries without commands (0 if ahead or unknown).
	AppliedIndex, Lag, Term uint64
	// FeatureVersion is the member's own (from its record if unreachable).
	FeatureVersion uint32
	// StateDigest is the digest of the member's canonical state at
	// AppliedIndex; zero if unreachable or not asked for.
	StateDigest [32]byte
}

// Status reports the leader, raft's figures, the cluster feature version,
// and each configured member's own status: this node's locally, the others'
// through Peer.NodeStatus, each bounded by about a second. With digests,
// every member also digests its state, which copies it under the apply lock
// (tens of milliseconds at a million counters): leave it off when polling.
// Safe for concurrent use.
func (n *Node) Status(ctx context.Context, digests bool) (Status, error) {
	rn := n.run.Load()
	if rn == nil {
		return Status{}, fmt.Errorf("status: %w", ErrStopped)
	}
	servers, err := n.configuration(rn)
	if err != nil {
		return Status{}, fmt.Errorf("status: %w", err)
	}
	leaderAddr, leaderID := rn.raft.LeaderWithID()
	if rn.raft.State() == raft.Leader {
		// Raft switches to the leader state a moment before it records
		// itself as leader: a leading node names itself at once (as Leader does).
		leaderAddr, leaderID = rn.trans.LocalAddr(), raft.ServerID(n.cfg.NodeID)
	}
	st := Status{
		NodeID:                n.cfg.NodeID,
		LeaderID:              string(leaderID),
		LeaderRaftAddr:        string(leaderAddr),
		Term:                  rn.raft.CurrentTerm(),
		CommitIndex:           rn.raft.CommitIndex(),
		ClusterFeatureVersion: n.ClusterFeatureVersion(),
		Members:               make([]Member, len(servers)),
	}
	reports := make([]*peerv1.NodeStatusResponse, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		m := &st.Members[i]
		m.NodeID, m.RaftAddr, m.Voter = string(s.ID), string(s.Address), s.Suffrage == raft.Voter
		if rec, ok := n.machine.Node(m.NodeID); ok {
			m.GRPCAddr, m.FeatureVersion = rec.GRPCAddr, rec.FeatureVersion
		}
		if m.NodeID == n.cfg.NodeID {
			m.GRPCAddr = n.cfg.GRPCAddr
			if r, err := n.nodeStatus(digests); err == nil {
				reports[i] = r
			}
			continue
		}
		if m.GRPCAddr == "" {
			continue
		}
		// Each call ends within statusCallTimeout; Status waits for all.
		wg.Go(func() { reports[i] = n.peerStatus(ctx, rn, m.GRPCAddr, digests) })
	}
	wg.Wait()

	leaderCommit := uint64(0)
	// raft's applied index also counts entries the machine never sees
	// (no-ops, barriers, configuration), so a settled node shows no lag.
	raftApplied := make([]uint64, len(reports))
	if rn.raft.State() == raft.Leader {
		leaderCommit = st.CommitIndex
	}
	for i, r := range reports {
		m := &st.Members[i]
		if r == nil {
			m.Role = RoleUnreachable
			continue
		}
		m.Role, m.AppliedIndex, m.Term, m.FeatureVersion = r.GetRole(), r.GetAppliedIndex(), r.GetTerm(), r.GetFeatureVersion()
		copy(m.StateDigest[:], r.GetStateDigest())
		raftApplied[i] = max(r.GetAppliedIndex(), r.GetRaftAppliedIndex())
		if leaderCommit == 0 && m.NodeID == st.LeaderID {
			leaderCommit = r.GetCommitIndex()
		}
	}
	for i := range st.Members {
		m := &st.Members[i]
		if m.Role != RoleUnreachable && leaderCommit > raftApplied[i] {
			m.Lag = leaderCommit - raftApplied[i]
		}
	}
	return st, nil
}

// peerStatus asks the node at addr for its NodeStatus; nil if it fails.
func (n *Node) peerStatus(ctx context.Context, rn *running, addr string, digest bool) *peerv1.NodeStatusResponse {
	c, err := rn.peers.client(addr)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, statusCallTimeout)
	defer cancel()
	r, err := c.NodeStatus(ctx, &peerv1.NodeStatusRequest{IncludeDigest: digest})
	if err != nil {
		n.logger.Debug("node status", "addr", addr, "error", err)
		return nil
	}
	return r
}
