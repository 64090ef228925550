package main

import (
	"context"

	"github.com/stockd/stockd/cluster"
	"github.com/stockd/stockd/server"
)

// clusterAdapter presents a cluster.Node as the server's Cluster; server
// never imports cluster, so the types meet here.
type clusterAdapter struct {
	*cluster.Node
}

// Status converts the node's view of the cluster into the server's type.
func (a clusterAdapter) Status(ctx context.Context, digests bool) (server.ClusterStatus, error) {
	st, err := a.Node.Status(ctx, digests)
	if err != nil {
		return server.ClusterStatus{}, err
	}
	out := server.ClusterStatus{
		NodeID: st.NodeID, LeaderID: st.LeaderID, LeaderRaftAddr: st.LeaderRaftAddr,
		Term: st.Term, CommitIndex: st.CommitIndex, ClusterFeatureVersion: st.ClusterFeatureVersion,
	}
	for _, m := range st.Members {
		out.Members = append(out.Members, server.ClusterMember{
			NodeID: m.NodeID, RaftAddr: m.RaftAddr, GRPCAddr: m.GRPCAddr, Role: m.Role, Voter: m.Voter,
			AppliedIndex: m.AppliedIndex, Lag: m.Lag, Term: m.Term, FeatureVersion: m.FeatureVersion,
			StateDigest: m.StateDigest,
		})
	}
	return out, nil
}
