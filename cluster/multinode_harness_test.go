package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/api/peerv1"
	"github.com/stockd/stockd/store"
)

// In-process multi-node clusters: every node is a real Node on raft's TCP
// transport and bbolt stores in its own folder, with an in-process gRPC
// server on 127.0.0.1 serving its Peer service, so follower forwarding, Join
// and Leave take the same path as in production.

// mnNode is one member of an mnCluster. cfg keeps the addresses a restart
// reuses (the raft address is in the cluster configuration, the gRPC address
// in the node records).
type mnNode struct {
	id   string
	cfg  Config
	node *Node
	gs   *grpc.Server
	// tr is the node's raft transport in an in-memory cluster, else nil.
	tr *raft.InmemTransport
	// down is set before the node stops, so writers skip it.
	down atomic.Bool
}

func (mn *mnNode) machine() *store.Machine { return mn.node.machine }

// mnCluster is a cluster of mnNodes built by one test.
type mnCluster struct {
	t     *testing.T
	root  string
	tweak func(*Config)
	// inmem puts raft on raft.InmemTransport (partitions; no restarts).
	inmem bool
	nodes []*mnNode
	// serving counts the gRPC Serve goroutines.
	serving sync.WaitGroup
}

// newMNCluster starts size nodes: n1 bootstraps, the others join through
// n1's gRPC address. It returns once every node is a voter and knows the
// leader. tweak, if not nil, adjusts every node's Config.
func newMNCluster(t *testing.T, size int, tweak func(*Config)) *mnCluster {
	t.Helper()
	return newMNClusterOn(t, size, false, tweak)
}

// newMNClusterOn is newMNCluster with raft on in-memory transports when
// inmem is true, so tests can partition nodes (partition, heal).
func newMNClusterOn(t *testing.T, size int, inmem bool, tweak func(*Config)) *mnCluster {
	t.Helper()
	// The root folder is created before the shutdown cleanup is registered,
	// so it is removed after every node closed.
	c := &mnCluster{t: t, root: t.TempDir(), tweak: tweak, inmem: inmem}
	t.Cleanup(c.shutdown)
	first := c.add(nil)
	waitFor(t, "n1 leads the cluster it bootstrapped", first.node.IsLeader)
	for range size - 1 {
		c.add([]string{first.cfg.GRPCAddr})
	}
	c.waitVoters(size)
	return c
}

// add creates and starts the next node; join nil bootstraps.
func (c *mnCluster) add(join []string) *mnNode {
	c.t.Helper()
	id := "n" + strconv.Itoa(len(c.nodes)+1)
	cfg := Config{
		NodeID:   id,
		DataDir:  filepath.Join(c.root, id),
		RaftAddr: "127.0.0.1:0",
		GRPCAddr: "127.0.0.1:0",
		Join:     join,
	}
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	mn := &mnNode{id: id, cfg: cfg}
	if c.inmem {
		_, mn.tr = raft.NewInmemTransport(raft.ServerAddress(id))
		mn.cfg.Transport, mn.cfg.RaftAddr = mn.tr, ""
		for _, o := range c.nodes {
			if o.tr != nil && !o.down.Load() {
				mn.tr.Connect(o.tr.LocalAddr(), o.tr)
				o.tr.Connect(mn.tr.LocalAddr(), mn.tr)
			}
		}
	}
	c.nodes = append(c.nodes, mn)
	c.start(mn)
	return mn
}

// start starts mn on a fresh machine, its gRPC server first so that peers
// can reach it as soon as raft does. A restart reuses both addresses.
func (c *mnCluster) start(mn *mnNode) {
	c.t.Helper()
	if mn.node != nil && mn.tr != nil {
		c.t.Fatalf("restart %s: an in-memory transport does not survive Close", mn.id)
	}
	lis := c.listen(mn.cfg.GRPCAddr)
	mn.cfg.GRPCAddr = lis.Addr().String()
	cfg := mn.cfg
	cfg.Machine = store.New(store.DefaultConfig())
	n, err := New(cfg)
	if err != nil {
		lis.Close()
		c.t.Fatalf("New(%s): %v", mn.id, err)
	}
	gs := grpc.NewServer()
	peerv1.RegisterPeerServer(gs, NewPeerServer(n))
	c.serving.Add(1)
	go func() {
		defer c.serving.Done()
		// Serve returns nil after Stop; any other error shows in the node's
		// failing calls.
		if err := gs.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			c.t.Errorf("serve %s gRPC on %s: %v", mn.id, lis.Addr(), err)
		}
	}()
	if err := n.Start(); err != nil {
		gs.Stop()
		c.t.Fatalf("Start(%s, join %v): %v", mn.id, cfg.Join, err)
	}
	mn.node, mn.gs = n, gs
	mn.cfg.RaftAddr = n.RaftAddr()
	mn.down.Store(false)
}

// listen binds addr; a restart rebinds the port the node had, which the
// kernel may hold for a moment after the old listener closed.
func (c *mnCluster) listen(addr string) net.Listener {
	c.t.Helper()
	var (
		lis net.Listener
		err error
	)
	waitFor(c.t, "gRPC listener on "+addr, func() bool {
		lis, err = net.Listen("tcp", addr)
		return err == nil
	})
	return lis
}

// stop closes mn the orderly way (a leader hands leadership over first).
func (c *mnCluster) stop(mn *mnNode) {
	c.t.Helper()
	if mn.down.Swap(true) {
		return
	}
	c.unlink(mn)
	if err := mn.node.Close(); err != nil {
		c.t.Errorf("Close(%s): %v", mn.id, err)
	}
	mn.gs.Stop()
}

// crash stops mn as a killed process would: its gRPC server goes first, then
// raft shuts down at once, with no leadership transfer, and only then does
// Close release what is left. The folder keeps what was durable.
func (c *mnCluster) crash(mn *mnNode) {
	c.t.Helper()
	if mn.down.Swap(true) {
		return
	}
	mn.gs.Stop()
	c.unlink(mn)
	if r := raftOf(mn.node); r != nil {
		if err := r.Shutdown().Error(); err != nil {
			c.t.Errorf("raft shutdown of %s: %v", mn.id, err)
		}
	}
	if err := mn.node.Close(); err != nil {
		c.t.Errorf("Close(%s) after raft shutdown: %v", mn.id, err)
	}
}

// partition cuts mn's raft links to every other node, both ways (in-memory
// clusters only). Its gRPC server stays reachable.
func (c *mnCluster) partition(mn *mnNode) {
	c.t.Helper()
	if mn.tr == nil {
		c.t.Fatalf("partition %s: not an in-memory cluster", mn.id)
	}
	mn.tr.DisconnectAll()
	for _, o := range c.nodes {
		if o != mn {
			o.tr.Disconnect(mn.tr.LocalAddr())
		}
	}
}

// unlink makes a stopping node unreachable over an in-memory transport, as
// a closed TCP port is: otherwise an RPC to it (a closing leader's TimeoutNow)
// waits out raft's timeout in a goroutine raft's Shutdown does not wait for.
func (c *mnCluster) unlink(mn *mnNode) {
	if mn.tr != nil {
		c.partition(mn)
	}
}

// heal reconnects mn's raft links to every live node.
func (c *mnCluster) heal(mn *mnNode) {
	c.t.Helper()
	for _, o := range c.live() {
		if o != mn {
			mn.tr.Connect(o.tr.LocalAddr(), o.tr)
			o.tr.Connect(mn.tr.LocalAddr(), mn.tr)
		}
	}
}

// shutdown closes every live node, followers before leaders, so a closing
// leader's transfer has someone to go to or nobody left to try.
func (c *mnCluster) shutdown() {
	var leaders []*mnNode
	var wg sync.WaitGroup
	for _, mn := range c.live() {
		if mn.node.IsLeader() {
			leaders = append(leaders, mn)
			continue
		}
		wg.Go(func() { c.stop(mn) })
	}
	wg.Wait()
	for _, mn := range leaders {
		c.stop(mn)
	}
	c.serving.Wait()
}

func (c *mnCluster) live() []*mnNode {
	var out []*mnNode
	for _, mn := range c.nodes {
		if !mn.down.Load() {
			out = append(out, mn)
		}
	}
	return out
}

// leader waits until exactly one live node leads and every live node names it.
func (c *mnCluster) leader() *mnNode {
	c.t.Helper()
	var l *mnNode
	waitUntil(c.t, "one leader every live node names", func() string {
		l = nil
		var views []string
		for _, mn := range c.live() {
			if mn.node.IsLeader() {
				if l != nil {
					return fmt.Sprintf("%s and %s both lead", l.id, mn.id)
				}
				l = mn
			}
			views = append(views, mn.id+" sees "+strconv.Quote(mn.node.Leader()))
		}
		if l == nil {
			return "no live node leads: " + strings.Join(views, ", ")
		}
		for _, mn := range c.live() {
			if mn.node.Leader() != l.node.RaftAddr() {
				return fmt.Sprintf("%s leads at %s; %s", l.id, l.node.RaftAddr(), strings.Join(views, ", "))
			}
		}
		return ""
	})
	return l
}

// followers returns the live nodes other than l.
func (c *mnCluster) followers(l *mnNode) []*mnNode {
	var out []*mnNode
	for _, mn := range c.live() {
		if mn != l {
			out = append(out, mn)
		}
	}
	return out
}

// waitVoters waits until the leader's Status lists exactly want members, all
// voters, and every live node knows that leader.
func (c *mnCluster) waitVoters(want int) {
	c.t.Helper()
	waitUntil(c.t, fmt.Sprintf("%d voters", want), func() string {
		var l *mnNode
		for _, mn := range c.live() {
			if mn.node.IsLeader() {
				l = mn
			}
		}
		if l == nil {
			return "no leader"
		}
		st, err := mnStatus(l.node)
		if err != nil {
			return fmt.Sprintf("Status on %s: %v", l.id, err)
		}
		if got := voters(st); len(got) != want || len(st.Members) != want {
			return fmt.Sprintf("Status on leader %s: members %+v, want %d voters", l.id, st.Members, want)
		}
		for _, mn := range c.live() {
			if mn.node.Leader() != l.node.RaftAddr() {
				return fmt.Sprintf("%s names leader %q, want %s", mn.id, mn.node.Leader(), l.node.RaftAddr())
			}
		}
		return ""
	})
}

// waitConverged waits until every live node has applied the same index and
// holds a state with the same digest (STYLE.md: at the end all snapshot
// hashes match), and returns that index.
func (c *mnCluster) waitConverged() store.Revision {
	c.t.Helper()
	var at store.Revision
	waitUntil(c.t, "live nodes converged", func() string {
		var (
			parts []string
			first [32]byte
			same  = true
		)
		for i, mn := range c.live() {
			s := mn.machine().Snapshot()
			d, err := s.Digest()
			if err != nil {
				return fmt.Sprintf("Digest on %s: %v", mn.id, err)
			}
			parts = append(parts, fmt.Sprintf("%s applied %d digest %x", mn.id, s.Index(), d[:6]))
			if i == 0 {
				first, at = d, s.Index()
			} else if d != first || s.Index() != at {
				same = false
			}
		}
		if !same {
			return strings.Join(parts, "; ")
		}
		return ""
	})
	return at
}

// waitUntil checks cond every few milliseconds until it returns "" or
// testDeadline passes; cond describes what it saw when not yet true, and the
// last description goes in the failure.
func waitUntil(t *testing.T, what string, cond func() string) {
	t.Helper()
	deadline := time.NewTimer(testDeadline)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		why := cond()
		if why == "" {
			return
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("waiting for %s: not yet after %v: %s", what, testDeadline, why)
		}
	}
}

// raftOf returns n's raft, or nil when n is not running.
func raftOf(n *Node) *raft.Raft {
	rn := n.run.Load()
	if rn == nil {
		return nil
	}
	return rn.raft
}

// firstLogIndex returns the first index left in n's log store after compaction.
func firstLogIndex(t *testing.T, n *Node) uint64 {
	t.Helper()
	rn := n.run.Load()
	if rn == nil {
		t.Fatalf("firstLogIndex: node not running")
	}
	i, err := rn.bolt.FirstIndex()
	if err != nil {
		t.Fatalf("FirstIndex of the raft log: %v", err)
	}
	return i
}

func mnStatus(n *Node) (Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	return n.Status(ctx, true)
}

func voters(st Status) []string {
	var out []string
	for _, m := range st.Members {
		if m.Voter {
			out = append(out, m.NodeID)
		}
	}
	return out
}

func nodeIDs(ns []store.Node) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.ID
	}
	return out
}

func confirmCmd(ch, id, orderRef string) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_Confirm{Confirm: &logv1.Confirm{Channel: ch, ReservationId: id, OrderRef: orderRef}}}
}

func releaseCmd(ch, id string) *logv1.Command {
	return &logv1.Command{Kind: &logv1.Command_Release{Release: &logv1.Release{Channel: ch, ReservationId: id}}}
}

// proposeOK proposes cmd through n and fails the test on an error or a refusal.
func proposeOK(t *testing.T, n *Node, cmd *logv1.Command) store.Result {
	t.Helper()
	res := propose(t, n, cmd)
	if res.Err != nil {
		t.Fatalf("Propose(%v): refused: %v", cmd, res.Err)
	}
	return res
}

// sameAnswer reports how two answers to one request differ, or "" when they
// do not: the same reservation (allocations, times, state) or the same
// refusal (sentinel, field, reason, figures). Revisions may differ: a retry
// is applied in a later entry.
func sameAnswer(a, b store.Result) string {
	if (a.Err == nil) != (b.Err == nil) {
		return fmt.Sprintf("refusal %v vs %v", a.Err, b.Err)
	}
	if a.Err != nil {
		var ra, rb *store.Rejection
		if !errors.As(a.Err, &ra) || !errors.As(b.Err, &rb) {
			return fmt.Sprintf("refusal %#v vs %#v, want both *store.Rejection", a.Err, b.Err)
		}
		if !errors.Is(rb, ra.Kind) || ra.Field != rb.Field || ra.Reason != rb.Reason ||
			ra.Requested != rb.Requested || ra.Available != rb.Available {
			return fmt.Sprintf("refusal %+v vs %+v", *ra, *rb)
		}
		return ""
	}
	if !reflect.DeepEqual(a.Reservation, b.Reservation) {
		return fmt.Sprintf("reservation %+v vs %+v", a.Reservation, b.Reservation)
	}
	return ""
}

// checkNoOversell checks every live node's ROSE counters for channel web:
// reserved + committed never above on_hand, and nothing exposed as oversold (I1).
func (c *mnCluster) checkNoOversell(wantReserved int64) {
	c.t.Helper()
	for _, mn := range c.live() {
		var av store.SKUAvailability
		if err := mn.machine().Availability("web", "ROSE", &av); err != nil {
			c.t.Fatalf("Availability(web, ROSE) on %s: %v", mn.id, err)
		}
		var reserved store.Units
		for _, la := range av.Locations {
			if la.Reserved+la.Committed > la.OnHand || la.Oversold != 0 {
				c.t.Errorf("%s at %s on %s: on_hand %d reserved %d committed %d oversold %d, want promised <= on_hand (I1)",
					av.SKU, la.Location, mn.id, la.OnHand, la.Reserved, la.Committed, la.Oversold)
			}
			reserved += la.Reserved
		}
		if int64(reserved) != wantReserved {
			c.t.Errorf("ROSE reserved on %s = %d, want %d (the acknowledged holds)", mn.id, reserved, wantReserved)
		}
	}
}

// retryBackoff is a writer's pause between attempts, as a real client's
// backoff; nothing waits on it for correctness.
const retryBackoff = 10 * time.Millisecond
