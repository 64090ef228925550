package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/stockd/stockd/api/stockdv1"
)

// findLeader points WriteConn at the leader when Options.WritesToLeader asks
// for it and there is more than one node: it asks the nodes in turn who leads
// (Cluster.Status) and looks the leader's gRPC address up in Addrs. It returns
// where writes go, for the report: "" on one node, "leader ADDR", or "any
// node" (--writes any, or with the reason it could not route them: the nodes
// do not say, or the leader was dialled under another name); the run goes on
// either way, since every node forwards writes. The leader found at the
// start stays the target: if leadership moves, the old leader forwards.
func findLeader(ctx context.Context, env *Env) string {
	env.leader.Store(0)
	switch {
	case len(env.Conns) < 2:
		return ""
	case !env.Opts.WritesToLeader:
		return "any node"
	}
	var last error
	for i, conn := range env.Conns {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := stockdv1.NewClusterClient(conn).Status(cctx, &stockdv1.StatusRequest{})
		cancel()
		if err != nil {
			last = fmt.Errorf("ask %s: %w", addrAt(env, i), err)
			continue
		}
		addr := leaderGRPCAddr(st)
		if addr == "" {
			last = fmt.Errorf("%s knows no leader", addrAt(env, i))
			continue
		}
		j := slices.Index(env.Addrs, addr)
		if j < 0 {
			return fmt.Sprintf("any node (leader %s is not one of the addresses dialled)", addr)
		}
		env.leader.Store(int32(j + 1))
		return "leader " + addr
	}
	return fmt.Sprintf("any node (no leader found: %v)", last)
}

// leaderHeader is the response header in which a follower that forwarded a
// write names the leader's gRPC address (server.LeaderHeader; bench imports
// no server package).
const leaderHeader = "stockd-leader"

// learningLeader reports whether writes should go to the leader but
// findLeader did not find it: reserve then reads the leader from the
// answers' leaderHeader (a token that may not call Cluster.Status still
// gets it).
func (e *Env) learningLeader() bool {
	return e.Opts.WritesToLeader && len(e.Conns) > 1 && e.leader.Load() == 0
}

// noteLeader points WriteConn at the node md's leaderHeader names, when it
// is one of Addrs.
func (e *Env) noteLeader(md metadata.MD) {
	if v := md.Get(leaderHeader); len(v) > 0 {
		if j := slices.Index(e.Addrs, v[0]); j >= 0 {
			e.leader.CompareAndSwap(0, int32(j+1))
		}
	}
}

// leaderLearnt is what RunScenario adds to the result's Writes when reserve
// learnt the leader from a follower's answer during the run.
func (e *Env) leaderLearnt(before string) string {
	if i := e.leader.Load(); i > 0 && strings.HasPrefix(before, "any node") {
		return fmt.Sprintf("%s until a follower named the leader, then leader %s", before, addrAt(e, int(i-1)))
	}
	return before
}

// leaderGRPCAddr is the gRPC address of the member st names as leader, or "".
func leaderGRPCAddr(st *stockdv1.StatusResponse) string {
	for _, m := range st.GetMembers() {
		if m.GetNodeId() == st.GetLeaderId() && st.GetLeaderId() != "" {
			return m.GetGrpcAddr()
		}
	}
	return ""
}

func addrAt(env *Env, i int) string {
	if i < len(env.Addrs) {
		return env.Addrs[i]
	}
	return fmt.Sprintf("node %d", i+1)
}
