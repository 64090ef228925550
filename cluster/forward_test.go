package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/api/peerv1"
	"github.com/stockd/stockd/store"
)

// peerNode is a Node on raft TCP with its own in-process gRPC server serving
// the Peer service, both on 127.0.0.1 with OS-picked ports.
type peerNode struct {
	id  string
	cfg Config
	n   *Node
}

// startPeerNode starts a gRPC server and a node on dir. Cleanup closes the
// node, then stops the server and waits for its Serve goroutine.
func startPeerNode(t *testing.T, id, dir string, join []string, tweak func(*Config)) *peerNode {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen 127.0.0.1:0: %v", err)
	}
	cfg := Config{
		NodeID:   id,
		DataDir:  dir,
		RaftAddr: "127.0.0.1:0",
		GRPCAddr: lis.Addr().String(),
		Join:     join,
		Machine:  store.New(store.DefaultConfig()),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		lis.Close()
		t.Fatalf("New(%s): %v", id, err)
	}
	gs := grpc.NewServer()
	peerv1.RegisterPeerServer(gs, NewPeerServer(n))
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	t.Cleanup(func() {
		gs.Stop()
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("serve %s: %v", id, err)
		}
	})
	if err := n.Start(); err != nil {
		t.Fatalf("Start(%s): %v", id, err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("Close(%s): %v", id, err)
		}
	})
	return &peerNode{id: id, cfg: cfg, n: n}
}

// startPeerCluster starts size nodes: n1 bootstraps and leads, the others
// join through n1's gRPC address. It returns once every node is a voter and
// every node holds every record.
func startPeerCluster(t *testing.T, size int, tweak func(id string, c *Config)) []*peerNode {
	t.Helper()
	root := t.TempDir()
	var nodes []*peerNode
	for i := range size {
		id := fmt.Sprintf("n%d", i+1)
		var join []string
		if i > 0 {
			join = []string{nodes[0].cfg.GRPCAddr}
		}
		var tw func(*Config)
		if tweak != nil {
			tw = func(c *Config) { tweak(id, c) }
		}
		nodes = append(nodes, startPeerNode(t, id, filepath.Join(root, id), join, tw))
		if i == 0 {
			waitFor(t, "n1 leads", nodes[0].n.IsLeader)
		}
	}
	waitFor(t, fmt.Sprintf("%d voters and %d records on every node", size, size), func() bool {
		for _, pn := range nodes {
			if len(pn.n.machine.Nodes()) != size {
				return false
			}
		}
		servers, err := nodes[0].n.configuration(nodes[0].n.run.Load())
		return err == nil && len(servers) == size
	})
	return nodes
}

// leaderAmong waits until exactly one of nodes leads and returns it and the others.
func leaderAmong(t *testing.T, nodes ...*peerNode) (*peerNode, []*peerNode) {
	t.Helper()
	var l *peerNode
	waitFor(t, "one leader", func() bool {
		l = nil
		for _, pn := range nodes {
			if pn.n.IsLeader() {
				if l != nil {
					return false
				}
				l = pn
			}
		}
		return l != nil
	})
	var rest []*peerNode
	for _, pn := range nodes {
		if pn != l {
			rest = append(rest, pn)
		}
	}
	return l, rest
}

func TestForwarding(t *testing.T) {
	nodes := startPeerCluster(t, 3, nil)
	l, fs := leaderAmong(t, nodes...)
	f := fs[0]
	seed(t, f.n, 10) // through a follower: forwarded

	t.Run("a follower's write returns the leader's answer", func(t *testing.T) {
		before := l.n.Stats().Commands
		res := propose(t, f.n, reserve("web", "fw-1", "ROSE", 4, time.Minute))
		if res.Err != nil || res.Reservation == nil || res.Reservation.ID != "fw-1" || res.Revision == 0 {
			t.Fatalf("Propose(reserve fw-1 x4) via follower %s: %+v, want reservation fw-1 at a revision", f.id, res)
		}
		if got := l.n.Stats().Commands - before; got != 1 {
			t.Fatalf("Propose via follower %s: leader %s proposed %d commands, want 1 (forwarded once)", f.id, l.id, got)
		}
		if _, err := l.n.machine.Reservation("web", "fw-1"); err != nil {
			t.Fatalf("leader %s Reservation(web, fw-1) after a forwarded reserve: %v, want it held", l.id, err)
		}
	})

	t.Run("a refusal comes back as the leader decided it", func(t *testing.T) {
		res := propose(t, f.n, reserve("web", "fw-2", "ROSE", 100, time.Minute))
		if !errors.Is(res.Err, store.ErrInsufficientStock) {
			t.Fatalf("Propose(reserve fw-2 x100 of 10) via follower: Err %v, want %v", res.Err, store.ErrInsufficientStock)
		}
	})

	t.Run("a read barrier on a follower covers a write just acknowledged", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), testDeadline)
		defer cancel()
		res := propose(t, l.n, putLocation("L9"))
		for _, pn := range fs {
			rev, err := pn.n.ReadBarrier(ctx)
			if err != nil || rev < res.Revision {
				t.Fatalf("ReadBarrier on %s after a write at %d: %d, %v; want >= %d", pn.id, res.Revision, rev, err, res.Revision)
			}
			if err := pn.n.WaitApplied(ctx, rev); err != nil {
				t.Fatalf("WaitApplied(%d) on %s: %v", rev, pn.id, err)
			}
			if len(pn.n.machine.Locations()) != 2 {
				t.Fatalf("Locations on %s after the barrier: %v, want L1 and L9", pn.id, pn.n.machine.Locations())
			}
		}
	})

	t.Run("status lists every member with equal digests once writes settle", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), testDeadline)
		defer cancel()
		var st Status
		waitFor(t, "equal digests and no lag", func() bool {
			var err error
			st, err = f.n.Status(ctx, true)
			if err != nil || len(st.Members) != 3 || st.LeaderID != l.id {
				return false
			}
			for _, m := range st.Members {
				if m.Role == RoleUnreachable || m.Lag != 0 || m.StateDigest != st.Members[0].StateDigest ||
					m.GRPCAddr == "" || !m.Voter {
					return false
				}
			}
			return true
		})
		roles := map[string]int{}
		for _, m := range st.Members {
			roles[m.Role]++
		}
		if roles["leader"] != 1 || roles["follower"] != 2 || st.ClusterFeatureVersion != store.FeatureVersion {
			t.Fatalf("Status via %s: roles %v, feature %d; want 1 leader, 2 followers, feature %d", f.id, roles, st.ClusterFeatureVersion, store.FeatureVersion)
		}
		if st.Members[0].StateDigest == ([32]byte{}) {
			t.Fatalf("Status via %s with digests: member %s has no digest", f.id, st.Members[0].NodeID)
		}
		plain, err := f.n.Status(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range plain.Members {
			if m.StateDigest != ([32]byte{}) || m.AppliedIndex != st.Members[i].AppliedIndex {
				t.Fatalf("Status via %s without digests, member %s: digest %x applied %d; want no digest, applied %d",
					f.id, m.NodeID, m.StateDigest[:4], m.AppliedIndex, st.Members[i].AppliedIndex)
			}
		}
	})

	t.Run("a peer that is not the leader never forwards a proposal", func(t *testing.T) {
		_, err := NewPeerServer(f.n).Propose(t.Context(), &peerv1.ProposeRequest{Command: putLocation("L7")})
		if err == nil {
			t.Fatalf("Peer.Propose on follower %s: nil error, want Unavailable", f.id)
		}
		if got := f.n.fromStatus(t.Context(), "test", err); !errors.Is(got, ErrNotLeader) {
			t.Fatalf("Peer.Propose on follower %s: %v, want it to map to %v", f.id, got, ErrNotLeader)
		}
	})
}

func TestJoinAndLeaveThroughFollower(t *testing.T) {
	nodes := startPeerCluster(t, 3, nil)
	root := t.TempDir()
	_, fs := leaderAmong(t, nodes...)
	// Nothing listens on this join address, so n4 only gets in by the Join below.
	n4 := startPeerNode(t, "n4", filepath.Join(root, "n4"), []string{"127.0.0.1:1"}, nil)
	ctx, cancel := context.WithTimeout(t.Context(), testDeadline)
	defer cancel()
	if _, err := fs[0].n.Join(ctx, "n4", n4.n.RaftAddr(), n4.cfg.GRPCAddr, store.FeatureVersion); err != nil {
		t.Fatalf("Join(n4) via follower %s: %v", fs[0].id, err)
	}
	// Idempotent.
	if _, err := fs[1].n.Join(ctx, "n4", n4.n.RaftAddr(), n4.cfg.GRPCAddr, store.FeatureVersion); err != nil {
		t.Fatalf("Join(n4) again via follower %s: %v, want nil", fs[1].id, err)
	}
	waitFor(t, "n4 applies the cluster's state and holds 4 records", func() bool {
		return len(n4.n.machine.Nodes()) == 4
	})
	st, err := n4.n.Status(ctx, true)
	if err != nil || len(st.Members) != 4 {
		t.Fatalf("Status on n4: %+v, %v; want 4 members", st, err)
	}

	if _, err := fs[1].n.Leave(ctx, "n4"); err != nil {
		t.Fatalf("Leave(n4) via follower %s: %v", fs[1].id, err)
	}
	closeNode(t, n4.n)
	waitFor(t, "n4 gone from every record and configuration", func() bool {
		for _, pn := range nodes {
			if _, ok := pn.n.machine.Node("n4"); ok || pn.n.inConfiguration(pn.n.run.Load()) == false {
				return false
			}
			servers, err := pn.n.configuration(pn.n.run.Load())
			if err != nil || len(servers) != 3 {
				return false
			}
		}
		return true
	})
}

func TestCloseHandsLeadershipOff(t *testing.T) {
	nodes := startPeerCluster(t, 3, nil)
	l, fs := leaderAmong(t, nodes...)
	seed(t, l.n, 10)
	start := time.Now()
	closeNode(t, l.n)
	nl, _ := leaderAmong(t, fs...)
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("closing leader %s: %s led after %v, want a hand-off within 3s", l.id, nl.id, took)
	}
	// The other survivor forwards to the leader it last heard from, which
	// may still be the closed one until the new leader's first append.
	waitFor(t, "both survivors following "+nl.id, func() bool {
		for _, pn := range fs {
			li, ok := pn.n.currentLeader(pn.n.run.Load())
			if !ok || li.id != nl.id {
				return false
			}
		}
		return true
	})
	for _, pn := range fs {
		res := propose(t, pn.n, setStock("ROSE", "L1", 20, 2))
		if res.Err != nil {
			t.Fatalf("Propose(set stock) via %s after %s closed: %v", pn.id, l.id, res.Err)
		}
	}
}

// tickIs2 is store.CommandFeature but for Tick, which it says needs version
// 2: a stand-in for a command newer than some build.
func tickIs2(cmd *logv1.Command) uint32 {
	if cmd.GetTick() != nil {
		return 2
	}
	return store.CommandFeature(cmd)
}

func TestFeatureGate(t *testing.T) {
	nodes := startPeerCluster(t, 3, func(id string, c *Config) {
		c.CommandFeature = tickIs2
		c.FeatureVersion = 2
		if id == "n3" {
			c.FeatureVersion = 1
		}
	})
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	if !n1.n.IsLeader() {
		t.Fatalf("n1 bootstrapped the cluster but does not lead")
	}
	if got := n1.n.ClusterFeatureVersion(); got != 1 {
		t.Fatalf("ClusterFeatureVersion with n3 at 1: %d, want 1", got)
	}
	tick := &logv1.Command{Kind: &logv1.Command_Tick{Tick: &logv1.Tick{}}}
	before, applied3 := n1.n.Stats().Commands, n3.n.machine.AppliedIndex()
	ctx, cancel := context.WithTimeout(t.Context(), testDeadline)
	defer cancel()
	for _, via := range []*peerNode{n1, n2} {
		if _, err := via.n.Propose(ctx, tick); !errors.Is(err, ErrFeatureNotEnabled) {
			t.Fatalf("Propose(tick needing 2) via %s with n3 at 1: %v, want %v", via.id, err, ErrFeatureNotEnabled)
		}
	}
	res := propose(t, n1.n, putLocation("L1"))
	if err := n3.n.WaitApplied(ctx, res.Revision); err != nil {
		t.Fatalf("WaitApplied(%d) on n3: %v", res.Revision, err)
	}
	if got := n1.n.Stats().Commands - before; got != 1 {
		t.Fatalf("refused ticks, then one write: leader proposed %d commands, want 1", got)
	}
	if got := n3.n.machine.AppliedIndex(); got != res.Revision || applied3 >= got {
		t.Fatalf("n3 applied index %d after the write at %d (was %d), want exactly the write", got, res.Revision, applied3)
	}

	if _, err := n1.n.Leave(ctx, "n3"); err != nil {
		t.Fatalf("Leave(n3): %v", err)
	}
	closeNode(t, n3.n)
	if got := n1.n.ClusterFeatureVersion(); got != 2 {
		t.Fatalf("ClusterFeatureVersion after n3 left: %d, want 2", got)
	}
	res, err := n2.n.Propose(ctx, tick)
	if err != nil || res.Err != nil {
		t.Fatalf("Propose(tick) via n2 after n3 left: %+v, %v; want accepted", res, err)
	}
	if err := n2.n.WaitApplied(ctx, res.Revision); err != nil {
		t.Fatalf("WaitApplied(%d) on n2: %v", res.Revision, err)
	}
}
