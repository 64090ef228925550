package cluster

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// TestLeaderCrashDuringWritesLosesNoAck (I2, I3): sixteen writers reserve
// distinct ids through every node while the leader crashes; a write whose
// outcome is unknown is retried with the same id until answered. Every answer
// given stands on both survivors, nothing is held twice or oversold.
func TestLeaderCrashDuringWritesLosesNoAck(t *testing.T) {
	const (
		onHand    = 300
		writers   = 16
		perWriter = 25
	)
	c := newMNCluster(t, 3, nil)
	old := c.leader()
	seed(t, old.node, onHand)

	type ack struct {
		cmd *logv1.Command
		res store.Result
		via string
	}
	acks := make([][]ack, writers)
	var (
		acked, retried atomic.Int64
		wg             sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			at := w % len(c.nodes)
			for i := range perWriter {
				id := fmt.Sprintf("w%02d-%02d", w, i)
				cmd := reserve("web", id, "ROSE", 1, time.Hour)
				for {
					mn := c.nodes[at%len(c.nodes)]
					if mn.down.Load() {
						at++
						continue
					}
					pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
					res, err := mn.node.Propose(pctx, cmd)
					pcancel()
					if err == nil {
						acks[w] = append(acks[w], ack{cmd: cmd, res: res, via: mn.id})
						acked.Add(1)
						break
					}
					if ctx.Err() != nil {
						errs <- fmt.Errorf("reserve %s: never answered within 30s: last error via %s: %w", id, mn.id, err)
						return
					}
					// Unknown outcome (I3): same id, next node.
					retried.Add(1)
					at++
					select {
					case <-time.After(retryBackoff):
					case <-ctx.Done():
					}
				}
			}
		})
	}
	waitFor(t, "a third of the writes acknowledged", func() bool { return acked.Load() >= writers*perWriter/3 })
	crashedAt := acked.Load()
	c.crash(old)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	if acked.Load() == crashedAt {
		t.Fatalf("%d acknowledgements before the crash of %s and none after: the test did not write through the failover", crashedAt, old.id)
	}
	newLeader := c.leader()
	t.Logf("crashed leader %s after %d of %d acks; new leader %s; %d retries", old.id, crashedAt, writers*perWriter, newLeader.id, retried.Load())

	// Every id was answered once; a unit goes to each until on_hand runs out.
	var held, refused int64
	for _, as := range acks {
		for _, a := range as {
			switch {
			case a.res.Err == nil:
				held++
			case errors.Is(a.res.Err, store.ErrInsufficientStock):
				refused++
			default:
				t.Errorf("reserve %s via %s: refused with %v, want a hold or %v", a.cmd.GetReserve().GetReservationId(), a.via, a.res.Err, store.ErrInsufficientStock)
			}
		}
	}
	if held != onHand || held+refused != writers*perWriter {
		t.Errorf("%d reserves of 1 against on_hand %d: %d held, %d refused; want %d held, %d refused",
			writers*perWriter, onHand, held, refused, onHand, writers*perWriter-onHand)
	}

	c.waitConverged()
	c.checkNoOversell(held)
	survivors := c.live()
	for _, as := range acks {
		for _, a := range as {
			id := a.cmd.GetReserve().GetReservationId()
			for _, mn := range survivors {
				r, err := mn.machine().Reservation("web", store.ReservationID(id))
				switch {
				case a.res.Err == nil && err != nil:
					t.Errorf("acknowledged hold %s (via %s): Reservation on %s: %v, want it held (I2)", id, a.via, mn.id, err)
				case a.res.Err == nil && !reflect.DeepEqual(&r, a.res.Reservation):
					t.Errorf("acknowledged hold %s (via %s): on %s %+v, want the acknowledged %+v (I2)", id, a.via, mn.id, r, *a.res.Reservation)
				case a.res.Err != nil && err == nil:
					t.Errorf("refused reserve %s (via %s): on %s a reservation %+v exists, want none (I3)", id, a.via, mn.id, r)
				}
			}
		}
	}

	// A retry of any of them now gets the first answer (I3), through either survivor.
	var rwg sync.WaitGroup
	for w, as := range acks {
		rwg.Go(func() {
			for i, a := range as {
				mn := survivors[(w+i)%len(survivors)]
				res, err := mn.node.Propose(testCtx(t), a.cmd)
				if err != nil {
					t.Errorf("retry %s via %s after the failover: %v", a.cmd.GetReserve().GetReservationId(), mn.id, err)
					continue
				}
				if d := sameAnswer(a.res, res); d != "" {
					t.Errorf("retry %s via %s: first answer vs retry: %s (I3)", a.cmd.GetReserve().GetReservationId(), mn.id, d)
				}
			}
		})
	}
	rwg.Wait()
	c.waitConverged()

	// The crashed leader comes back on its folder and agrees with the others.
	c.start(old)
	c.waitVoters(3)
	c.waitConverged()
	c.checkNoOversell(held)
}

// TestFollowerCatchesUpBySnapshot: a follower that was down while the leader
// compacted its log past the follower's last entry comes back and catches up
// from a snapshot; so does a node joining with an empty folder.
func TestFollowerCatchesUpBySnapshot(t *testing.T) {
	c := newMNCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotThreshold = 64
		cfg.TrailingLogs = 16
		cfg.SnapshotInterval = 50 * time.Millisecond
		cfg.MaxBatch = 1 // one command per entry, so the log grows fast
	})
	l := c.leader()
	seed(t, l.node, 10_000)
	f := c.followers(l)[0]
	c.waitConverged()
	fLast := raftOf(f.node).LastIndex()
	c.stop(f)

	const writers, perWriter = 4, 75
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				id := fmt.Sprintf("s%d-%02d", w, i)
				res, err := l.node.Propose(testCtx(t), reserve("web", id, "ROSE", 1, time.Hour))
				if err != nil || res.Err != nil {
					t.Errorf("reserve %s with %s down: %v, refused %v; want a hold", id, f.id, err, res.Err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	waitUntil(t, "the leader's log compacted past the stopped follower", func() string {
		if first := firstLogIndex(t, l.node); first <= fLast+1 {
			return fmt.Sprintf("leader %s first log index %d, follower %s last %d", l.id, first, f.id, fLast)
		}
		return ""
	})

	c.start(f)
	rev := c.waitConverged()
	if rev < store.Revision(fLast)+writers*perWriter {
		t.Fatalf("converged at %d after %d writes past %d, want >= %d", rev, writers*perWriter, fLast, store.Revision(fLast)+writers*perWriter)
	}
	c.checkNoOversell(writers * perWriter)

	n4 := c.add([]string{l.cfg.GRPCAddr})
	c.waitVoters(4)
	c.waitConverged()
	if _, err := n4.machine().Reservation("web", "s0-00"); err != nil {
		t.Fatalf("Reservation(web, s0-00) on %s, joined after compaction: %v, want the hold", n4.id, err)
	}
}

// TestMembershipAddAndRemove: nodes join one at a time, Join is idempotent,
// and Leave (sent through a follower) removes the voter and its record.
func TestMembershipAddAndRemove(t *testing.T) {
	c := newMNCluster(t, 1, nil)
	n1 := c.nodes[0]
	st, err := mnStatus(n1.node)
	if err != nil {
		t.Fatalf("Status on a fresh one-node cluster: %v", err)
	}
	if got := voters(st); !reflect.DeepEqual(got, []string{"n1"}) || st.LeaderID != "n1" {
		t.Fatalf("Status on a fresh one-node cluster: leader %q voters %v, want n1 and [n1]", st.LeaderID, got)
	}

	n2 := c.add([]string{n1.cfg.GRPCAddr})
	c.waitVoters(2)
	n3 := c.add([]string{n1.cfg.GRPCAddr})
	c.waitVoters(3)
	l := c.leader()

	waitUntil(t, "three node records on every node", func() string {
		for _, mn := range c.live() {
			ns := mn.machine().Nodes()
			if got := nodeIDs(ns); !reflect.DeepEqual(got, []string{"n1", "n2", "n3"}) {
				return fmt.Sprintf("Nodes() on %s = %v", mn.id, got)
			}
			for i, rec := range ns {
				want := c.nodes[i]
				if rec.GRPCAddr != want.cfg.GRPCAddr || rec.RaftAddr != want.cfg.RaftAddr || rec.FeatureVersion != store.FeatureVersion {
					return fmt.Sprintf("Nodes() on %s: %+v, want grpc %s raft %s feature %d", mn.id, rec, want.cfg.GRPCAddr, want.cfg.RaftAddr, store.FeatureVersion)
				}
			}
		}
		return ""
	})
	st, err = mnStatus(n3.node)
	if err != nil {
		t.Fatalf("Status on %s: %v", n3.id, err)
	}
	if st.LeaderID != l.id || len(voters(st)) != 3 {
		t.Fatalf("Status on follower %s: leader %q members %+v, want leader %s and 3 voters", n3.id, st.LeaderID, st.Members, l.id)
	}

	t.Run("joining again as the same member changes nothing", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), testDeadline)
		defer cancel()
		before := l.machine().Nodes()
		// Once on the leader, once through a follower (forwarded).
		for _, via := range []*mnNode{l, c.followers(l)[0]} {
			if _, err := via.node.Join(ctx, n2.id, n2.cfg.RaftAddr, n2.cfg.GRPCAddr, store.FeatureVersion); err != nil {
				t.Fatalf("Join(%s, %s, %s) again via %s: %v, want nil (idempotent)", n2.id, n2.cfg.RaftAddr, n2.cfg.GRPCAddr, via.id, err)
			}
		}
		c.waitVoters(3)
		if got := l.machine().Nodes(); !reflect.DeepEqual(got, before) {
			t.Fatalf("Nodes() after a repeated Join of %s = %+v, want %+v", n2.id, got, before)
		}
	})

	// Remove a follower, asking another follower (forwarded to the leader).
	var gone, asker *mnNode
	for _, mn := range c.followers(l) {
		if gone == nil {
			gone = mn
		} else {
			asker = mn
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), testDeadline)
	defer cancel()
	rev, err := asker.node.Leave(ctx, gone.id)
	if err != nil {
		t.Fatalf("Leave(%s) through follower %s: %v", gone.id, asker.id, err)
	}
	c.stop(gone)
	c.waitVoters(2)
	for _, mn := range c.live() {
		if err := mn.node.WaitApplied(ctx, rev); err != nil {
			t.Fatalf("WaitApplied(%d) on %s after Leave: %v", rev, mn.id, err)
		}
		if got := nodeIDs(mn.machine().Nodes()); slicesContains(got, gone.id) || len(got) != 2 {
			t.Fatalf("Nodes() on %s after Leave(%s) applied at %d = %v, want the two others", mn.id, gone.id, rev, got)
		}
	}
	// Two voters remain: a write still commits.
	proposeOK(t, asker.node, putLocation("L9"))
	c.waitConverged()
}

// TestJoinThroughFollower: a new node whose only join address is a follower
// is admitted all the same (Config.Join lists "existing members", not the
// leader).
func TestJoinThroughFollower(t *testing.T) {
	c := newMNCluster(t, 2, nil)
	l := c.leader()
	f := c.followers(l)[0]
	n3 := c.add([]string{f.cfg.GRPCAddr})
	c.waitVoters(3)
	waitUntil(t, "n3's record on every node", func() string {
		for _, mn := range c.live() {
			if got := nodeIDs(mn.machine().Nodes()); !slicesContains(got, n3.id) {
				return fmt.Sprintf("Nodes() on %s = %v", mn.id, got)
			}
		}
		return ""
	})
	c.waitConverged()
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestForwardedWritesFromEveryNode (I3): the same Reserve sent through each
// node gets the one answer the leader's log decided, a refusal included.
func TestForwardedWritesFromEveryNode(t *testing.T) {
	c := newMNCluster(t, 3, nil)
	l := c.leader()
	fs := c.followers(l)
	order := []*mnNode{fs[0], fs[1], l}
	seed(t, fs[0].node, 10) // the seed itself is forwarded

	t.Run("a hold forwarded by a follower answers the same from every node", func(t *testing.T) {
		cmd := reserve("web", "r1", "ROSE", 6, time.Hour)
		first := proposeOK(t, order[0].node, cmd)
		if first.Reservation == nil || first.Reservation.ID != "r1" || first.Reservation.State != store.StateHeld {
			t.Fatalf("reserve r1 of 6 (of 10) via %s: %+v, want a held reservation r1", order[0].id, first)
		}
		if first.Revision == 0 {
			t.Fatalf("reserve r1 via %s: revision 0, want the entry's index", order[0].id)
		}
		for _, mn := range order[1:] {
			res := propose(t, mn.node, cmd)
			if d := sameAnswer(first, res); d != "" {
				t.Fatalf("retry r1 via %s: first answer (via %s) vs retry: %s", mn.id, order[0].id, d)
			}
		}
		// Read your own write on the node that forwarded it.
		ctx, cancel := context.WithTimeout(t.Context(), testDeadline)
		defer cancel()
		if err := order[0].node.WaitApplied(ctx, first.Revision); err != nil {
			t.Fatalf("WaitApplied(%d) on %s: %v", first.Revision, order[0].id, err)
		}
		if r, err := order[0].machine().Reservation("web", "r1"); err != nil || !reflect.DeepEqual(&r, first.Reservation) {
			t.Fatalf("Reservation(web, r1) on %s at %d: %+v, %v; want %+v", order[0].id, first.Revision, r, err, first.Reservation)
		}
	})

	t.Run("a refusal forwarded by a follower answers the same from every node", func(t *testing.T) {
		cmd := reserve("web", "r2", "ROSE", 6, time.Hour)
		first := propose(t, order[1].node, cmd)
		var rej *store.Rejection
		if !errors.As(first.Err, &rej) || !errors.Is(first.Err, store.ErrInsufficientStock) || rej.Requested != 6 || rej.Available != 4 {
			t.Fatalf("reserve r2 of 6 with 4 left via %s: Result.Err = %#v, want %v with requested 6 available 4", order[1].id, first.Err, store.ErrInsufficientStock)
		}
		for _, mn := range []*mnNode{order[0], order[2], order[1]} {
			res := propose(t, mn.node, cmd)
			if d := sameAnswer(first, res); d != "" {
				t.Fatalf("retry r2 via %s: first answer (via %s) vs retry: %s", mn.id, order[1].id, d)
			}
		}
		// More stock arrives; a retry is still the first answer, never a late success.
		proposeOK(t, l.node, setStock("ROSE", "L1", 100, 2))
		for _, mn := range order {
			res := propose(t, mn.node, cmd)
			if d := sameAnswer(first, res); d != "" {
				t.Fatalf("retry r2 via %s after on_hand rose to 100: first answer vs retry: %s (I3)", mn.id, d)
			}
		}
	})

	t.Run("confirm and release forwarded by followers", func(t *testing.T) {
		res := proposeOK(t, fs[1].node, confirmCmd("web", "r1", "order-1"))
		if res.Reservation == nil || res.Reservation.State != store.StateConfirmed || res.Reservation.OrderRef != "order-1" {
			t.Fatalf("confirm r1 via %s: %+v, want it confirmed as order-1", fs[1].id, res.Reservation)
		}
		again := proposeOK(t, fs[0].node, confirmCmd("web", "r1", "order-1"))
		if d := sameAnswer(res, again); d != "" {
			t.Fatalf("confirm r1 again via %s: %s", fs[0].id, d)
		}
		proposeOK(t, fs[0].node, reserve("web", "r3", "ROSE", 2, time.Hour))
		rel := proposeOK(t, fs[1].node, releaseCmd("web", "r3"))
		if rel.Reservation == nil || rel.Reservation.State != store.StateReleased {
			t.Fatalf("release r3 via %s: %+v, want it released", fs[1].id, rel.Reservation)
		}
		if res := propose(t, fs[0].node, releaseCmd("web", "r1")); !errors.Is(res.Err, store.ErrNotHeld) {
			t.Fatalf("release confirmed r1 via %s: Result.Err = %v, want %v", fs[0].id, res.Err, store.ErrNotHeld)
		}
	})
	c.waitConverged()
	c.checkNoOversell(0)
}

// TestIdempotentRetryAcrossFailover (I3): an answer decided under one leader
// is the answer a retry gets from the next one.
func TestIdempotentRetryAcrossFailover(t *testing.T) {
	c := newMNCluster(t, 3, nil)
	old := c.leader()
	seed(t, old.node, 10)
	cmd := reserve("web", "r1", "ROSE", 3, time.Hour)
	first := proposeOK(t, old.node, cmd)
	refusedCmd := reserve("web", "r-big", "ROSE", 50, time.Hour)
	refused := propose(t, old.node, refusedCmd)
	if !errors.Is(refused.Err, store.ErrInsufficientStock) {
		t.Fatalf("reserve 50 of 10: Result.Err = %v, want %v", refused.Err, store.ErrInsufficientStock)
	}

	c.stop(old)
	l := c.leader()
	if l == old {
		t.Fatalf("leader after closing %s is still %s", old.id, old.id)
	}
	for _, mn := range c.live() {
		res := propose(t, mn.node, cmd)
		if d := sameAnswer(first, res); d != "" {
			t.Fatalf("retry r1 via %s after the failover from %s to %s: first vs retry: %s", mn.id, old.id, l.id, d)
		}
		if res.Reservation.CreatedAt != first.Reservation.CreatedAt {
			t.Fatalf("retry r1 via %s: created at %d, want the first %d", mn.id, res.Reservation.CreatedAt, first.Reservation.CreatedAt)
		}
		res = propose(t, mn.node, refusedCmd)
		if d := sameAnswer(refused, res); d != "" {
			t.Fatalf("retry refused r-big via %s after the failover: first vs retry: %s", mn.id, d)
		}
	}
	other := reserve("web", "r1", "ROSE", 4, time.Hour)
	res := propose(t, l.node, other)
	var rej *store.Rejection
	if !errors.Is(res.Err, store.ErrIdempotencyConflict) || !errors.As(res.Err, &rej) || rej.Field != "lines[0].quantity" {
		t.Fatalf("reserve r1 with quantity 4 (first had 3) on %s: Result.Err = %v, want %v naming lines[0].quantity", l.id, res.Err, store.ErrIdempotencyConflict)
	}
	c.waitConverged()
	c.checkNoOversell(3)
}

// TestExpiryIdenticalOnAllNodes (I4): holds expire through the leader's Tick
// entries, so every replica expires the same holds at the same log time.
func TestExpiryIdenticalOnAllNodes(t *testing.T) {
	clk := newFakeClock()
	c := newMNCluster(t, 3, func(cfg *Config) { cfg.Clock = clk.Now })
	l := c.leader()
	fs := c.followers(l)
	seed(t, l.node, 100)
	short := []string{"h1", "h2", "h3", "h4", "h5"}
	for i, id := range short {
		proposeOK(t, c.live()[i%3].node, reserve("web", id, "ROSE", 2, time.Second))
	}
	keep := proposeOK(t, fs[0].node, reserve("web", "keep", "ROSE", 7, time.Hour))
	c.waitConverged()
	c.checkNoOversell(2*int64(len(short)) + 7)

	clk.Advance(2 * time.Second)
	waitUntil(t, "the 1s holds expired on every node", func() string {
		for _, mn := range c.live() {
			for _, id := range short {
				r, err := mn.machine().Reservation("web", store.ReservationID(id))
				if err != nil || r.State != store.StateExpired {
					return fmt.Sprintf("%s on %s: %v, %v", id, mn.id, r.State, err)
				}
			}
		}
		return ""
	})
	c.waitConverged()
	for _, mn := range c.live() {
		r, err := mn.machine().Reservation("web", "keep")
		if err != nil || r.State != store.StateHeld || r.ExpiresAt != keep.Reservation.ExpiresAt {
			t.Fatalf("1h hold on %s after 2s: %+v, %v; want it held until %d", mn.id, r, err, keep.Reservation.ExpiresAt)
		}
	}
	// The expired units are free again on every node, by the same figures.
	c.checkNoOversell(7)
	var want store.SKUAvailability
	if err := l.machine().Availability("web", "ROSE", &want); err != nil {
		t.Fatal(err)
	}
	for _, mn := range fs {
		var got store.SKUAvailability
		if err := mn.machine().Availability("web", "ROSE", &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Availability(web, ROSE) on %s = %+v, want the leader's %+v (I4)", mn.id, got, want)
		}
	}
	if want.Available != 93 {
		t.Fatalf("available ROSE after the 1s holds expired = %d, want 93 (100 - 7 held)", want.Available)
	}
}

// TestLinearizableReadBarrier (I5): after a write is acknowledged, a read
// barrier on any node returns a revision at least the write's, and once that
// revision is applied there the write shows.
func TestLinearizableReadBarrier(t *testing.T) {
	c := newMNCluster(t, 3, nil)
	l := c.leader()
	seed(t, l.node, 1000)
	ctx, cancel := context.WithTimeout(t.Context(), testDeadline)
	defer cancel()
	last := map[string]store.Revision{}
	for i := range 20 {
		id := fmt.Sprintf("rb%02d", i)
		res := proposeOK(t, l.node, reserve("web", id, "ROSE", 1, time.Hour))
		for _, mn := range c.live() {
			rev, err := mn.node.ReadBarrier(ctx)
			if err != nil {
				t.Fatalf("ReadBarrier on %s after %s was acknowledged at %d: %v", mn.id, id, res.Revision, err)
			}
			if rev < res.Revision {
				t.Fatalf("ReadBarrier on %s after %s was acknowledged at %d = %d, want >= %d (I5)", mn.id, id, res.Revision, rev, res.Revision)
			}
			if rev < last[mn.id] {
				t.Fatalf("ReadBarrier on %s = %d, want >= %d it returned before (I5)", mn.id, rev, last[mn.id])
			}
			last[mn.id] = rev
			if err := mn.node.WaitApplied(ctx, rev); err != nil {
				t.Fatalf("WaitApplied(%d) on %s: %v", rev, mn.id, err)
			}
			if r, err := mn.machine().Reservation("web", store.ReservationID(id)); err != nil || r.State != store.StateHeld {
				t.Fatalf("Reservation(web, %s) on %s after ReadBarrier %d and WaitApplied: %+v, %v; want it held (I5)", id, mn.id, rev, r, err)
			}
		}
	}
	c.waitConverged()

	t.Run("reads after the first of a term write nothing to the log", func(t *testing.T) {
		before := raftOf(l.node).LastIndex()
		for range 5 {
			if _, err := l.node.ReadBarrier(ctx); err != nil {
				t.Fatalf("ReadBarrier on leader %s: %v", l.id, err)
			}
		}
		if after := raftOf(l.node).LastIndex(); after != before {
			t.Fatalf("raft last index after 5 linearizable reads on leader %s: got %d, want %d (no log entry per read)", l.id, after, before)
		}
	})

	t.Run("a barrier right after a failover with no write since is reached", func(t *testing.T) {
		// A new leader's first entry is raft's no-op, which the machine never
		// applies: the barrier must still be an index WaitApplied reaches.
		c.stop(l)
		nl := c.leader()
		for _, mn := range c.live() {
			rev, err := mn.node.ReadBarrier(ctx)
			if err != nil {
				t.Fatalf("ReadBarrier on %s after the failover to %s: %v", mn.id, nl.id, err)
			}
			wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
			err = mn.node.WaitApplied(wctx, rev)
			wcancel()
			if err != nil {
				t.Fatalf("ReadBarrier on %s after the failover to %s, no write since = %d; WaitApplied(%d) with applied %d: %v, want nil (raft last index %d)",
					mn.id, nl.id, rev, rev, mn.machine().AppliedIndex(), err, raftOf(nl.node).LastIndex())
			}
		}
	})
}

// TestFiveNodeClusterLosesQuorum: five voters survive two failures; with a
// third the cluster refuses writes promptly with ErrNoLeader or ErrNotLeader
// instead of hanging.
func TestFiveNodeClusterLosesQuorum(t *testing.T) {
	c := newMNCluster(t, 5, nil)
	l := c.leader()
	seed(t, l.node, 1000)
	fs := c.followers(l)
	c.stop(fs[0])
	c.stop(fs[1])
	if c.leader() != l {
		t.Fatalf("leader changed from %s after two followers closed", l.id)
	}
	waitUntil(t, "Status to show the two closed followers unreachable", func() string {
		st, err := mnStatus(l.node)
		if err != nil {
			return fmt.Sprintf("Status on %s: %v", l.id, err)
		}
		var roles []string
		unreachable := 0
		for _, m := range st.Members {
			roles = append(roles, m.NodeID+"="+m.Role)
			if m.Role == "unreachable" {
				unreachable++
				if m.NodeID != fs[0].id && m.NodeID != fs[1].id {
					return fmt.Sprintf("%s unreachable, want only %s and %s: %v", m.NodeID, fs[0].id, fs[1].id, roles)
				}
			}
		}
		if len(st.Members) != 5 || unreachable != 2 {
			return fmt.Sprintf("Status members %v, want 5 with %s and %s unreachable", roles, fs[0].id, fs[1].id)
		}
		return ""
	})
	for i, mn := range []*mnNode{l, fs[2], fs[3]} {
		proposeOK(t, mn.node, reserve("web", fmt.Sprintf("ok%d", i), "ROSE", 1, time.Hour))
	}
	c.waitConverged()
	c.checkNoOversell(3)

	c.stop(fs[2])
	const bound = 8 * time.Second
	var wg sync.WaitGroup
	for i, mn := range []*mnNode{l, fs[3]} {
		wg.Go(func() {
			// Generous context: the node, not the context, must end the wait.
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			for j := range 2 {
				start := time.Now()
				res, err := mn.node.Propose(ctx, reserve("web", fmt.Sprintf("lost%d-%d", i, j), "ROSE", 1, time.Hour))
				took := time.Since(start)
				switch {
				case err == nil:
					t.Errorf("reserve via %s with 2 of 5 voters up (attempt %d): %+v, want %v or %v", mn.id, j, res, ErrNoLeader, ErrNotLeader)
				case !errors.Is(err, ErrNoLeader) && !errors.Is(err, ErrNotLeader):
					t.Errorf("reserve via %s with 2 of 5 voters up (attempt %d): error %v after %v, want %v or %v", mn.id, j, err, took, ErrNoLeader, ErrNotLeader)
				case took > bound:
					t.Errorf("reserve via %s with 2 of 5 voters up (attempt %d): %v after %v, want within %v", mn.id, j, err, took, bound)
				}
			}
		})
	}
	wg.Wait()
}

// TestPartitionedLeaderLosesNoAck (I2, I3): a leader cut off from the others
// acknowledges nothing; the majority elects a leader and goes on; when the
// partition heals the old leader drops what it could not commit, and a
// retry of its unacknowledged write is decided once, in the majority's log.
func TestPartitionedLeaderLosesNoAck(t *testing.T) {
	c := newMNClusterOn(t, 3, true, nil)
	old := c.leader()
	seed(t, old.node, 10)
	before := proposeOK(t, old.node, reserve("web", "before", "ROSE", 2, time.Hour))

	c.partition(old)
	lost := reserve("web", "lost", "ROSE", 5, time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	start := time.Now()
	res, err := old.node.Propose(ctx, lost)
	if took := time.Since(start); err == nil || (!errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrNoLeader)) || took > 8*time.Second {
		t.Fatalf("reserve on partitioned leader %s: %+v, %v after %v; want %v or %v within 8s", old.id, res, err, took, ErrNotLeader, ErrNoLeader)
	}

	// The majority elects a leader among itself and keeps writing.
	var nl *mnNode
	waitUntil(t, "a leader in the majority", func() string {
		for _, mn := range c.followers(old) {
			if mn.node.IsLeader() {
				nl = mn
				return ""
			}
		}
		return "none yet"
	})
	after := proposeOK(t, nl.node, reserve("web", "after", "ROSE", 3, time.Hour))
	if _, err := old.machine().Reservation("web", "after"); err == nil {
		t.Fatalf("partitioned %s applied a write of the majority's log", old.id)
	}

	c.heal(old)
	l := c.leader()
	c.waitConverged()
	for _, mn := range c.live() {
		if _, err := mn.machine().Reservation("web", "lost"); err == nil {
			t.Fatalf("reserve lost, refused on the partitioned leader: held on %s after the heal (leader %s), want it never applied", mn.id, l.id)
		}
		for _, want := range []store.Result{before, after} {
			r, err := mn.machine().Reservation("web", want.Reservation.ID)
			if err != nil || !reflect.DeepEqual(&r, want.Reservation) {
				t.Fatalf("acknowledged %s on %s after the heal: %+v, %v; want %+v (I2)", want.Reservation.ID, mn.id, r, err, want.Reservation)
			}
		}
	}
	// The unacknowledged write, retried, is decided once (I3).
	first := proposeOK(t, old.node, lost)
	again := proposeOK(t, l.node, lost)
	if d := sameAnswer(first, again); d != "" {
		t.Fatalf("retry lost via %s then %s: %s", old.id, l.id, d)
	}
	c.waitConverged()
	c.checkNoOversell(2 + 3 + 5)
}

// TestAJoiningNodeIsRecordedBeforeItVotes: Join proposes the node's record
// (with its feature version) before raft makes it a voter. The other order
// left a window where the cluster counted a voter without a record as
// version 1 and refused every newer command (FAILED_PRECONDITION).
func TestAJoiningNodeIsRecordedBeforeItVotes(t *testing.T) {
	c := newMNCluster(t, 1, nil)
	n1 := c.nodes[0]
	c.add([]string{n1.cfg.GRPCAddr})
	c.waitVoters(2)
	l := c.leader()
	ctx, cancel := context.WithTimeout(t.Context(), testDeadline)
	defer cancel()
	// A third voter that never starts: two of three still commit.
	rev, err := l.node.Join(ctx, "n9", "127.0.0.1:9", "127.0.0.1:10", store.FeatureVersion)
	if err != nil {
		t.Fatalf("Join(n9): %v", err)
	}
	// The newest configuration entry in the leader's log is the one adding n9.
	logs := l.node.run.Load().bolt
	last, err := logs.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	var cfgIndex uint64
	for i := last; i > 0 && cfgIndex == 0; i-- {
		var e raft.Log
		if err := logs.GetLog(i, &e); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if e.Type == raft.LogConfiguration {
			cfgIndex = i
		}
	}
	if got := uint64(rev); got >= cfgIndex {
		t.Errorf("n9's record at index %d, the configuration that made it a voter at %d: want the record first", got, cfgIndex)
	}
	if got := l.node.ClusterFeatureVersion(); got != store.FeatureVersion {
		t.Errorf("ClusterFeatureVersion after the join: got %d, want %d", got, store.FeatureVersion)
	}
}
