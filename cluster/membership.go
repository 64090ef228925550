package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/api/peerv1"
	"github.com/stockd/stockd/store"
)

// Membership timing.
const (
	// membershipTimeout bounds raft accepting a configuration change.
	membershipTimeout = 5 * time.Second
	// joinBackoffMin and joinBackoffMax bound the wait between rounds of join
	// attempts; it doubles after every failed round.
	joinBackoffMin = 200 * time.Millisecond
	joinBackoffMax = 2 * time.Second
	// joinAttemptTimeout bounds one Peer.Join call.
	joinAttemptTimeout = 5 * time.Second
	// registerRecheck is how often the registrar looks at this node's record
	// while leading, in case an observation was dropped or a write failed.
	registerRecheck = time.Second
	// transferWait bounds the leadership hand-off in Close.
	transferWait = 2 * time.Second
)

// Join admits node nodeID as a voter at raftAddr and records its gRPC
// address and feature version (a PutNode command); it returns the revision
// of that record. On a follower it forwards once to the leader's Peer.Join.
// It is idempotent: a voter already at raftAddr only gets its record
// ensured. Errors unwrap to ErrNotLeader, ErrNoLeader, ErrStopped or a
// context error. Safe for concurrent use.
func (n *Node) Join(ctx context.Context, nodeID, raftAddr, grpcAddr string, featureVersion uint32) (store.Revision, error) {
	rn := n.run.Load()
	if rn == nil {
		return 0, fmt.Errorf("join: %w", ErrStopped)
	}
	li, err := n.awaitLeader(ctx, rn, "join")
	if err != nil {
		return 0, err
	}
	if li.self {
		return n.joinLocal(ctx, rn, nodeID, raftAddr, grpcAddr, featureVersion)
	}
	c, err := rn.peers.client(li.grpcAddr)
	if err != nil {
		return 0, fmt.Errorf("forward join: %w", err)
	}
	// Marked forwarded: the leader answers, it never forwards again.
	resp, err := c.Join(withForwarded(ctx), &peerv1.JoinRequest{NodeId: nodeID, RaftAddr: raftAddr, GrpcAddr: grpcAddr, FeatureVersion: featureVersion})
	if err != nil {
		return 0, n.fromStatus(ctx, "forward join to "+li.id, err)
	}
	return store.Revision(resp.GetRevision()), nil
}

// joinLocal is Join on the leader.
func (n *Node) joinLocal(ctx context.Context, rn *running, nodeID, raftAddr, grpcAddr string, featureVersion uint32) (store.Revision, error) {
	if featureVersion == 0 {
		featureVersion = 1
	}
	cmd := &logv1.Command{Kind: &logv1.Command_PutNode{PutNode: &logv1.PutNode{
		Id: nodeID, RaftAddr: raftAddr, GrpcAddr: grpcAddr, FeatureVersion: featureVersion,
	}}}
	if err := store.Validate(cmd); err != nil {
		return 0, fmt.Errorf("join %s: %w", nodeID, err)
	}
	servers, err := n.configuration(rn)
	if err != nil {
		return 0, fmt.Errorf("join %s: %w", nodeID, err)
	}
	member := false
	for _, s := range servers {
		if string(s.ID) == nodeID && string(s.Address) == raftAddr && s.Suffrage == raft.Voter {
			member = true
		}
	}
	// The record goes in before the node votes: a voter without one counts
	// as feature version 1 (clusterFeatureVersion), so every newer command
	// (an Extend, say) was refused FAILED_PRECONDITION between the two
	// (found by the chaos test, re-adding a removed node under load).
	rev := n.machine.AppliedIndex()
	want := store.Node{ID: nodeID, RaftAddr: raftAddr, GRPCAddr: grpcAddr, FeatureVersion: featureVersion}
	if rec, ok := n.machine.Node(nodeID); !ok || rec != want {
		if rev, err = n.proposeMembership(ctx, rn, "join "+nodeID, cmd); err != nil {
			return 0, err
		}
	}
	if !member {
		if err := rn.raft.AddVoter(raft.ServerID(nodeID), raft.ServerAddress(raftAddr), 0, membershipTimeout).Error(); err != nil {
			return 0, translate("join "+nodeID+": add voter", err)
		}
		n.logger.Info("added voter", "node", nodeID, "raft_addr", raftAddr, "grpc_addr", grpcAddr)
	}
	return rev, nil
}

// Leave removes node nodeID from the voters and forgets its record (a
// RemoveNode command); it returns the revision of that command. On a
// follower it forwards once to the leader's Peer.Leave. Removing a node that
// is not a member only forgets its record. Safe for concurrent use.
func (n *Node) Leave(ctx context.Context, nodeID string) (store.Revision, error) {
	rn := n.run.Load()
	if rn == nil {
		return 0, fmt.Errorf("leave: %w", ErrStopped)
	}
	li, err := n.awaitLeader(ctx, rn, "leave")
	if err != nil {
		return 0, err
	}
	if li.self {
		return n.leaveLocal(ctx, rn, nodeID)
	}
	c, err := rn.peers.client(li.grpcAddr)
	if err != nil {
		return 0, fmt.Errorf("forward leave: %w", err)
	}
	resp, err := c.Leave(withForwarded(ctx), &peerv1.LeaveRequest{NodeId: nodeID})
	if err != nil {
		return 0, n.fromStatus(ctx, "forward leave to "+li.id, err)
	}
	return store.Revision(resp.GetRevision()), nil
}

// leaveLocal is Leave on the leader. The leader removing itself forgets its
// record first: once it is out of the configuration it can no longer commit.
func (n *Node) leaveLocal(ctx context.Context, rn *running, nodeID string) (store.Revision, error) {
	cmd := &logv1.Command{Kind: &logv1.Command_RemoveNode{RemoveNode: &logv1.RemoveNode{Id: nodeID}}}
	if err := store.Validate(cmd); err != nil {
		return 0, fmt.Errorf("leave %s: %w", nodeID, err)
	}
	remove := func() error {
		if err := rn.raft.RemoveServer(raft.ServerID(nodeID), 0, membershipTimeout).Error(); err != nil {
			return translate("leave "+nodeID+": remove server", err)
		}
		n.logger.Info("removed server", "node", nodeID)
		return nil
	}
	if nodeID == n.cfg.NodeID {
		rev, err := n.proposeMembership(ctx, rn, "leave "+nodeID, cmd)
		if err != nil {
			return 0, err
		}
		return rev, remove()
	}
	if err := remove(); err != nil {
		return 0, err
	}
	return n.proposeMembership(ctx, rn, "leave "+nodeID, cmd)
}

// proposeMembership proposes a PutNode or RemoveNode on the leader and turns
// a refusal into an error.
func (n *Node) proposeMembership(ctx context.Context, rn *running, op string, cmd *logv1.Command) (store.Revision, error) {
	res, err := rn.prop.propose(ctx, n.stopped, cmd)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	if res.Err != nil {
		return 0, fmt.Errorf("%s: refused: %w", op, res.Err)
	}
	return res.Revision, nil
}

// configuration returns raft's latest configuration.
func (n *Node) configuration(rn *running) ([]raft.Server, error) {
	f := rn.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, translate("read configuration", err)
	}
	return f.Configuration().Servers, nil
}

// ClusterFeatureVersion returns the lowest FeatureVersion over the voters of
// raft's latest configuration, read from their node records; a voter with no
// record counts as 1. It is 1 when the node is not running. Safe for
// concurrent use.
func (n *Node) ClusterFeatureVersion() uint32 {
	rn := n.run.Load()
	if rn == nil {
		return 1
	}
	v, err := n.clusterFeatureVersion(rn)
	if err != nil {
		return 1
	}
	return v
}

func (n *Node) clusterFeatureVersion(rn *running) (uint32, error) {
	servers, err := n.configuration(rn)
	if err != nil {
		return 0, err
	}
	recs := make(map[string]uint32)
	for _, nd := range n.machine.Nodes() {
		recs[nd.ID] = nd.FeatureVersion
	}
	lowest := uint32(0)
	for _, s := range servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		v := max(recs[string(s.ID)], 1)
		if lowest == 0 || v < lowest {
			lowest = v
		}
	}
	return max(lowest, 1), nil
}

// checkFeature refuses a command whose feature version exceeds the
// cluster's. Membership commands are version 1 and always pass, so a lagging
// voter can always be removed. The check and the proposal are not atomic: a
// voter joining in between with an older build is the operator's to avoid.
func (n *Node) checkFeature(rn *running, cmd *logv1.Command) error {
	switch cmd.GetKind().(type) {
	case *logv1.Command_PutNode, *logv1.Command_RemoveNode:
		return nil
	}
	need := n.cfg.CommandFeature(cmd)
	if need <= 1 {
		return nil
	}
	have, err := n.clusterFeatureVersion(rn)
	if err != nil {
		return fmt.Errorf("propose: %w", err)
	}
	if need > have && rn.readyTerm.Load() != rn.raft.CurrentTerm() {
		// A leader fresh from an election or a restart may not have applied
		// the node records its log already holds (a restarted node replays
		// its log after it leads): apply everything before refusing, once a
		// term, as the first linearizable read of a term does.
		if _, err := n.readIndexLocal(rn); err == nil {
			if have, err = n.clusterFeatureVersion(rn); err != nil {
				return fmt.Errorf("propose: %w", err)
			}
		}
	}
	if need > have {
		return fmt.Errorf("propose: %w: command needs version %d, cluster runs %d", ErrFeatureNotEnabled, need, have)
	}
	return nil
}

// ReadBarrier returns the revision a linearizable read must wait for: on
// the leader, its machine's applied index once a quorum confirms it still
// leads (see readIndexLocal); on a follower, the leader's answer to
// Peer.ReadIndex. The index is always one the machine reaches (raft's no-op
// and configuration entries never reach it). The caller then waits with
// WaitApplied. Errors unwrap to ErrNotLeader, ErrNoLeader, ErrStopped or a
// context error. Safe for concurrent use.
func (n *Node) ReadBarrier(ctx context.Context) (store.Revision, error) {
	rn := n.run.Load()
	if rn == nil {
		return 0, fmt.Errorf("read barrier: %w", ErrStopped)
	}
	li, err := n.awaitLeader(ctx, rn, "read barrier")
	if err != nil {
		return 0, err
	}
	if li.self {
		return n.readIndexLocal(rn)
	}
	c, err := rn.peers.client(li.grpcAddr)
	if err != nil {
		return 0, fmt.Errorf("read barrier: %w", err)
	}
	resp, err := c.ReadIndex(ctx, &peerv1.ReadIndexRequest{})
	if err != nil {
		return 0, n.fromStatus(ctx, "read barrier at "+li.id, err)
	}
	return store.Revision(resp.GetCommitIndex()), nil
}

// readIndexLocal is ReadBarrier on the leader. Every write acknowledged
// before the read began was applied to this machine before it was
// acknowledged (Propose answers after the leader applies), so once a quorum
// confirms this node still leads, its applied index covers them. Writes that
// earlier leaders acknowledged are covered once an entry of this term has
// been applied here: the first read of a term runs a raft barrier for that
// (a new leader's no-op is never handed to the machine), later reads only
// VerifyLeader and write nothing to the log.
func (n *Node) readIndexLocal(rn *running) (store.Revision, error) {
	term := rn.raft.CurrentTerm()
	if rn.readyTerm.Load() != term {
		if err := rn.raft.Barrier(n.cfg.ApplyTimeout).Error(); err != nil {
			return 0, translate("read barrier", err)
		}
		rn.readyTerm.Store(term)
		return n.machine.AppliedIndex(), nil
	}
	if err := rn.raft.VerifyLeader().Error(); err != nil {
		return 0, translate("read barrier", err)
	}
	return n.machine.AppliedIndex(), nil
}

// runJoin asks each join address in turn to admit this node, with a backoff
// between rounds, until one does. It exits then, or when ctx ends (Close).
func (n *Node) runJoin(ctx context.Context, rn *running) {
	req := &peerv1.JoinRequest{
		NodeId: n.cfg.NodeID, RaftAddr: string(rn.trans.LocalAddr()),
		GrpcAddr: n.cfg.GRPCAddr, FeatureVersion: n.cfg.FeatureVersion,
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	backoff := joinBackoffMin
	for attempt := 1; ; attempt++ {
		select {
		case <-timer.C:
		case <-ctx.Done():
			return
		}
		// Admitted some other way (an operator's Join elsewhere): stop asking.
		if n.inConfiguration(rn) {
			n.logger.Info("joined cluster", "attempt", attempt)
			return
		}
		for _, addr := range n.cfg.Join {
			err := n.joinVia(ctx, rn, addr, req)
			if err == nil {
				n.logger.Info("joined cluster", "via", addr, "attempt", attempt)
				return
			}
			if ctx.Err() != nil {
				return
			}
			n.logger.Info("join attempt failed", "via", addr, "attempt", attempt, "error", err)
		}
		timer.Reset(backoff)
		backoff = min(2*backoff, joinBackoffMax)
	}
}

// inConfiguration reports whether raft's configuration names this node.
func (n *Node) inConfiguration(rn *running) bool {
	servers, err := n.configuration(rn)
	if err != nil {
		return false
	}
	for _, s := range servers {
		if string(s.ID) == n.cfg.NodeID {
			return true
		}
	}
	return false
}

func (n *Node) joinVia(ctx context.Context, rn *running, addr string, req *peerv1.JoinRequest) error {
	c, err := rn.peers.client(addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, joinAttemptTimeout)
	defer cancel()
	if _, err := c.Join(ctx, req); err != nil {
		return n.fromStatus(ctx, "join via "+addr, err)
	}
	return nil
}

// runRegistrar proposes this node's own record (PutNode) whenever it leads
// and the record is missing or stale, so followers can find its gRPC address.
// It wakes on raft's state and leader observations and every
// registerRecheck, and exits when ctx ends (Close).
func (n *Node) runRegistrar(ctx context.Context, rn *running, observations <-chan raft.Observation) {
	tick := time.NewTicker(registerRecheck)
	defer tick.Stop()
	for {
		if rn.raft.State() == raft.Leader {
			n.registerSelf(ctx, rn)
		}
		select {
		case <-observations:
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// registerSelf proposes this node's record if it is missing or differs.
func (n *Node) registerSelf(ctx context.Context, rn *running) {
	want := store.Node{ID: n.cfg.NodeID, RaftAddr: string(rn.trans.LocalAddr()), GRPCAddr: n.cfg.GRPCAddr,
		FeatureVersion: n.cfg.FeatureVersion}
	if rec, ok := n.machine.Node(want.ID); ok && rec == want {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
	defer cancel()
	cmd := &logv1.Command{Kind: &logv1.Command_PutNode{PutNode: &logv1.PutNode{
		Id: want.ID, RaftAddr: want.RaftAddr, GrpcAddr: want.GRPCAddr, FeatureVersion: want.FeatureVersion,
	}}}
	if _, err := n.proposeMembership(ctx, rn, "register "+want.ID, cmd); err != nil {
		if ctx.Err() == nil {
			n.logger.Info("register self", "error", err)
		}
		return
	}
	n.logger.Info("registered self", "node", want.ID, "raft_addr", want.RaftAddr, "grpc_addr", want.GRPCAddr)
}

// TransferLeadership hands leadership to another voter if this node leads,
// and waits until another node leads or ctx ends, transferring again
// whenever it leads again. It is a no-op on a follower or when no other
// voter exists. Errors unwrap to ErrStopped, ErrNotLeader or a context
// error.
func (n *Node) TransferLeadership(ctx context.Context) error {
	rn := n.run.Load()
	if rn == nil {
		return fmt.Errorf("transfer leadership: %w", ErrStopped)
	}
	return n.transfer(ctx, rn)
}

func (n *Node) transfer(ctx context.Context, rn *running) error {
	if rn.raft.State() != raft.Leader {
		return nil
	}
	servers, err := n.configuration(rn)
	if err != nil {
		return fmt.Errorf("transfer leadership: %w", err)
	}
	others := 0
	for _, s := range servers {
		if s.Suffrage == raft.Voter && string(s.ID) != n.cfg.NodeID {
			others++
		}
	}
	if others == 0 {
		return nil // nobody to hand over to
	}
	// The transfer tells the most caught-up follower to start an election
	// at once, and answers once this node has stepped down. That election
	// can fail (in a chaos run its vote requests went out on pooled
	// connections a restarted peer had closed, which the patched transport
	// now redials; a vote lost to a cut link does the same), and then this
	// node, the most caught-up of the rest, may win the next one: whenever
	// it leads again, it transfers again. A transfer that fails while this node
	// still leads (no follower fit to take over) is reported at once.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := rn.raft.LeadershipTransfer().Error(); err != nil {
			return translate("transfer leadership", err)
		}
		for rn.raft.State() != raft.Leader {
			if _, id := rn.raft.LeaderWithID(); id != "" && string(id) != n.cfg.NodeID {
				return nil
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
				return fmt.Errorf("transfer leadership: %w", ctx.Err())
			}
		}
	}
}

// handOff transfers leadership before Close if another voter could take it.
// Failures are logged: Close goes on, and the others elect a leader anyway.
func (n *Node) handOff(rn *running) {
	if rn.raft.State() != raft.Leader {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), transferWait)
	defer cancel()
	if err := n.transfer(ctx, rn); err != nil && !errors.Is(err, ErrStopped) {
		n.logger.Warn("leadership hand-off failed; closing anyway", "error", err)
		return
	}
	n.logger.Debug("leadership hand-off before close done")
}
