package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"syscall"
	"time"

	"github.com/stockd/stockd/api/stockdv1"
)

// membership removes a follower through the Cluster service (Leave), either
// while it runs or after it was killed, restarts it with its old data for
// the hold, then wipes it and starts it empty, so it joins again (Join, by
// --join) and catches up from the leader: the cluster has its three members
// back for the next fault.
//
// What correct means while the removed node runs with its old data: it must
// not disrupt the cluster (the members keep their leader and term: pre-vote
// and the configuration keep a non-member from forcing an election), it must
// not be listed as a voter, must not claim to lead, and must not answer a
// linearizable read with state older than the cluster's commit index when
// the read began (it may refuse it: it is no member). Its local reads may be
// stale, as any node's local reads are.
func membership(ctx context.Context, c *Cluster, r *rand.Rand) (*fault, error) {
	l, err := waitLeader(ctx, c)
	if err != nil {
		return nil, err
	}
	x := followerOf(c, r, l)
	nd, ld := c.Nodes[x], c.Nodes[l]
	killFirst := r.IntN(2) == 0
	how := "removed while running, then killed"
	if killFirst {
		c.Kill(nd)
		how = "killed, then removed"
	}
	lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err = retry(lctx, "leave "+nd.ID, func(ctx context.Context) error {
		_, err := ld.Cl.Leave(ctx, &stockdv1.LeaveRequest{NodeId: nd.ID})
		return err
	})
	if err != nil {
		return nil, err
	}
	if !killFirst {
		c.Kill(nd)
	}
	var leader string
	var term uint64
	err = poll(lctx, nd.ID+" out of the configuration", func() (bool, string) {
		var voters map[string]bool
		var err error
		leader, term, _, voters, err = c.status(lctx, l)
		if err != nil {
			return false, err.Error()
		}
		return !voters[nd.ID] && leader == ld.ID, fmt.Sprintf("leader %q, voters %v", leader, voters)
	})
	if err != nil {
		return nil, err
	}
	if err := c.Start(nd); err != nil {
		return nil, err
	}
	var violations []string
	var note string
	return &fault{
		desc: fmt.Sprintf("remove %s (%s) through %s, restart it with its old data (leader %s, term %d)", nd.ID, how, ld.ID, leader, term),
		heal: func() error {
			violations, note = checkRemoved(ctx, c, x, l, leader, term)
			c.Kill(nd)
			if err := c.Wipe(nd); err != nil {
				return err
			}
			return c.Start(nd)
		},
		verify: func(ctx context.Context) (string, []string) {
			return note + "; " + nd.ID + " joined again empty and the cluster has its " + fmt.Sprint(len(c.Nodes)) + " voters", violations
		},
	}, nil
}

// checkRemoved checks the members kept leader and term while node x ran
// with its old data after its removal, and that x acted as no member.
func checkRemoved(ctx context.Context, c *Cluster, x, l int, leader string, term uint64) (violations []string, note string) {
	nd := c.Nodes[x]
	for _, j := range others(c, x) {
		gotLeader, gotTerm, _, voters, err := c.status(ctx, j)
		switch {
		case err != nil:
			violations = append(violations, fmt.Sprintf("membership: member %s did not answer Status while removed %s ran with its old data: %v", c.Nodes[j].ID, nd.ID, err))
		case gotLeader != leader || gotTerm != term:
			violations = append(violations, fmt.Sprintf("membership: removed %s restarted with its old data disrupted the cluster: %s sees leader %q term %d, want leader %q term %d", nd.ID, c.Nodes[j].ID, gotLeader, gotTerm, leader, term))
		case voters[nd.ID]:
			violations = append(violations, fmt.Sprintf("membership: %s lists removed %s as a voter after it restarted with its old data", c.Nodes[j].ID, nd.ID))
		}
	}
	if selfLeader, _, _, _, err := c.status(ctx, x); err == nil && selfLeader == nd.ID {
		violations = append(violations, fmt.Sprintf("membership: removed %s restarted with its old data claims to lead", nd.ID))
	}
	_, _, commit, _, err := c.status(ctx, l)
	if err != nil {
		return append(violations, fmt.Sprintf("membership: status of leader %s: %v", c.Nodes[l].ID, err)), ""
	}
	rctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	resp, err := nd.Inv.GetAvailability(rctx, &stockdv1.GetAvailabilityRequest{Channel: chaosChannel, Skus: []string{finalItem}, Linearizable: true})
	switch {
	case err != nil:
		note = fmt.Sprintf("removed %s refused a linearizable read (%v)", nd.ID, codeOf(err.Error()))
	case resp.GetRevision() < commit:
		violations = append(violations, fmt.Sprintf("membership: removed %s answered a linearizable read at revision %d, below the cluster's commit index %d when the read began", nd.ID, resp.GetRevision(), commit))
	default:
		note = fmt.Sprintf("removed %s answered a linearizable read at revision %d >= commit %d", nd.ID, resp.GetRevision(), commit)
	}
	if !nd.Running() || nd.exited() != nil {
		note += fmt.Sprintf("; it had exited (%v)", nd.exited())
	}
	return violations, note
}

// transferLeader SIGTERMs the leader (stockd hands leadership off before it
// closes) and restarts it, transferRounds times under the workload's load.
// A SIGTERM that does not end in a clean exit, or no other leader within
// 10 s, is a violation.
func transferLeader(ctx context.Context, c *Cluster, r *rand.Rand) (*fault, error) {
	const transferRounds = 3
	var violations []string
	desc := "SIGTERM the leader and restart it:"
	for range transferRounds {
		l, err := waitLeader(ctx, c)
		if err != nil {
			return nil, err
		}
		nd := c.Nodes[l]
		t0 := time.Now()
		next, moved := "", time.Duration(0)
		stopped := make(chan error, 1)
		go func() { stopped <- c.Stop(nd, syscall.SIGTERM, 20*time.Second) }()
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = poll(pctx, "a leader other than "+nd.ID, func() (bool, string) {
			for _, j := range others(c, l) {
				if lead, _, _, _, err := c.status(pctx, j); err == nil && lead != "" && lead != nd.ID {
					next, moved = lead, time.Since(t0)
					return true, ""
				}
			}
			return false, "no other leader"
		})
		cancel()
		if err != nil {
			violations = append(violations, fmt.Sprintf("transfer-leader: after SIGTERM of leader %s: %v", nd.ID, err))
		}
		if err := <-stopped; err != nil {
			violations = append(violations, fmt.Sprintf("transfer-leader: SIGTERM of leader %s: not a clean exit: %v", nd.ID, err))
		}
		desc += fmt.Sprintf(" %s->%s in %v (exited after %v);", nd.ID, next, moved.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
		if err := c.Start(nd); err != nil {
			return nil, err
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = c.WaitReady(rctx, len(c.Nodes))
		cancel()
		if err != nil {
			return nil, fmt.Errorf("after restarting %s: %w", nd.ID, err)
		}
	}
	return &fault{desc: desc, verify: func(context.Context) (string, []string) { return "", violations }}, nil
}
