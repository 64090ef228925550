package bench

import (
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/stockd/stockd/api/client"
	"github.com/stockd/stockd/api/stockdv1"
)

// findLeader points WriteConn at the leader when Options.WritesToLeader asks
// for it and there is more than one node: it asks the nodes in turn who leads
// (Cluster.Status) and looks the leader's gRPC address up among the
// addresses Conns were dialled. It returns where writes go, for the report:
// "" on one node, "leader ADDR", or "any node" (--writes any, or with the
// reason it could not route them: the nodes do not say, or the leader was
// dialled under another name); the run goes on either way, since every node
// forwards writes. The leader found at the start stays the target: if
// leadership moves, the old leader forwards.
func findLeader(ctx context.Context, env *Env) string {
	env.leader.Store(0)
	switch {
	case len(env.Conns) < 2:
		return ""
	case !env.Opts.WritesToLeader:
		return "any node"
	}
	var last error
	for _, conn := range env.Conns {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := stockdv1.NewClusterClient(conn).Status(cctx, &stockdv1.StatusRequest{})
		cancel()
		if err != nil {
			last = fmt.Errorf("ask %s: %w", conn.Target(), err)
			continue
		}
		addr := leaderGRPCAddr(st)
		if addr == "" {
			last = fmt.Errorf("%s knows no leader", conn.Target())
			continue
		}
		j := env.connIndex(addr)
		if j < 0 {
			return fmt.Sprintf("any node (leader %s is not one of the addresses dialled)", addr)
		}
		env.leader.Store(int32(j + 1))
		return "leader " + addr
	}
	return fmt.Sprintf("any node (no leader found: %v)", last)
}

// learningLeader reports whether writes should go to the leader but
// findLeader did not find it: reserve then reads the leader from the
// answers' client.LeaderHeader (a token that may not call Cluster.Status still
// gets it).
func (e *Env) learningLeader() bool {
	return e.Opts.WritesToLeader && len(e.Conns) > 1 && e.leader.Load() == 0
}

// noteLeader points WriteConn at the node that md's client.LeaderHeader
// names, when it is one of Conns.
func (e *Env) noteLeader(md metadata.MD) {
	if v := md.Get(client.LeaderHeader); len(v) > 0 {
		if j := e.connIndex(v[0]); j >= 0 {
			e.leader.CompareAndSwap(0, int32(j+1))
		}
	}
}

// learntNote is what RunScenario appends to a result's Writes when reserve
// learnt the leader during the run; "" when it did not.
func (e *Env) learntNote() string {
	if i := e.leader.Load(); i > 0 {
		return " until a follower named the leader, then leader " + e.Conns[i-1].Target()
	}
	return ""
}

// connIndex is the index in Conns of the connection dialled to addr, or -1.
func (e *Env) connIndex(addr string) int {
	return slices.IndexFunc(e.Conns, func(c *grpc.ClientConn) bool { return c.Target() == addr })
}

// leaderGRPCAddr is the gRPC address of the member st names as leader, or "".
func leaderGRPCAddr(st *stockdv1.StatusResponse) string {
	if st.GetLeaderId() == "" {
		return ""
	}
	for _, m := range st.GetMembers() {
		if m.GetNodeId() == st.GetLeaderId() {
			return m.GetGrpcAddr()
		}
	}
	return ""
}
