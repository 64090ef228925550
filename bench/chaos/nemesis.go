package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// A nemesis injects one fault. Most return a heal: the schedule holds the
// fault for a while (a schedule, not synchronisation), heals it and waits
// (polling) for the cluster to recover before the next one. Some do their
// whole work in inject (a series of leadership transfers) and return no
// heal. A fault may carry a verify step, run once the cluster has recovered,
// that checks the fault did what it claims (a snapshot was installed) or
// that the cluster behaved while it lasted; what it finds are violations.
type nemesis struct {
	name string
	// inject starts the fault; an error means the schedule cannot go on.
	inject func(ctx context.Context, c *Cluster, r *rand.Rand) (*fault, error)
}

// fault is one injected fault.
type fault struct {
	desc string
	// heal undoes the fault; nil: inject did everything, nothing to hold.
	heal func() error
	// verify runs after the cluster recovered; it returns a line for the
	// log and its violations. nil: nothing to check.
	verify func(ctx context.Context) (note string, violations []string)
}

// leaderOr returns the current leader, or a random node if none answers.
func leaderOr(ctx context.Context, c *Cluster, r *rand.Rand) int {
	if l := c.Leader(ctx); l >= 0 {
		return l
	}
	return r.IntN(len(c.Nodes))
}

// followerOf returns a random node other than leader.
func followerOf(c *Cluster, r *rand.Rand, leader int) int {
	f := r.IntN(len(c.Nodes) - 1)
	if f >= leader {
		f++
	}
	return f
}

// cutMode picks how a partition cuts: connections reset, or bytes dropped.
func cutMode(r *rand.Rand) linkMode {
	if r.IntN(2) == 0 {
		return linkRefuse
	}
	return linkDrop
}

// others returns every node index but i.
func others(c *Cluster, i int) []int {
	var out []int
	for j := range c.Nodes {
		if j != i {
			out = append(out, j)
		}
	}
	return out
}

// simple wraps an inject that cannot fail and has nothing to verify.
func simple(f func(ctx context.Context, c *Cluster, r *rand.Rand) (string, func() error)) func(ctx context.Context, c *Cluster, r *rand.Rand) (*fault, error) {
	return func(ctx context.Context, c *Cluster, r *rand.Rand) (*fault, error) {
		desc, heal := f(ctx, c, r)
		return &fault{desc: desc, heal: heal}, nil
	}
}

// Nemeses returns every nemesis, by name.
func Nemeses() []nemesis {
	kill := func(pick func(ctx context.Context, c *Cluster, r *rand.Rand) int) func(ctx context.Context, c *Cluster, r *rand.Rand) (string, func() error) {
		return func(ctx context.Context, c *Cluster, r *rand.Rand) (string, func() error) {
			nd := c.Nodes[pick(ctx, c, r)]
			c.Kill(nd)
			return "SIGKILL " + nd.ID, func() error { return c.Start(nd) }
		}
	}
	pause := func(pick func(ctx context.Context, c *Cluster, r *rand.Rand) int) func(ctx context.Context, c *Cluster, r *rand.Rand) (string, func() error) {
		return func(ctx context.Context, c *Cluster, r *rand.Rand) (string, func() error) {
			nd := c.Nodes[pick(ctx, c, r)]
			c.Pause(nd)
			return "SIGSTOP " + nd.ID, func() error { c.Resume(nd); return nil }
		}
	}
	leader := func(ctx context.Context, c *Cluster, r *rand.Rand) int { return leaderOr(ctx, c, r) }
	follower := func(ctx context.Context, c *Cluster, r *rand.Rand) int {
		return followerOf(c, r, leaderOr(ctx, c, r))
	}
	heal := func(c *Cluster) func() error { return func() error { c.Heal(); return nil } }
	return []nemesis{
		{name: "kill-leader", inject: simple(kill(leader))},
		{name: "kill-follower", inject: simple(kill(follower))},
		{name: "kill-all", inject: simple(killAll)},
		{name: "pause-leader", inject: simple(pause(leader))},
		{name: "pause-follower", inject: simple(pause(follower))},
		{name: "isolate-leader", inject: simple(func(ctx context.Context, c *Cluster, r *rand.Rand) (string, func() error) {
			l, m := leaderOr(ctx, c, r), cutMode(r)
			c.Partition(m, []int{l}, others(c, l))
			return fmt.Sprintf("isolate leader %s (%s)", c.Nodes[l].ID, m), heal(c)
		})},
		{name: "partition-minority", inject: simple(func(ctx context.Context, c *Cluster, r *rand.Rand) (string, func() error) {
			// A minority of 1 to (n-1)/2 nodes: 1 of 3, 1 or 2 of 5.
			perm, m := r.Perm(len(c.Nodes)), cutMode(r)
			k := 1 + r.IntN((len(c.Nodes)-1)/2)
			c.Partition(m, perm[:k], perm[k:])
			return fmt.Sprintf("minority %s | majority (%s)", c.ids(perm[:k]), m), heal(c)
		})},
		{name: "bridge", inject: simple(func(ctx context.Context, c *Cluster, r *rand.Rand) (string, func() error) {
			// The bridge keeps both its links; the two others cannot talk.
			b, m := r.IntN(len(c.Nodes)), cutMode(r)
			rest := others(c, b)
			half := len(rest) / 2
			c.Partition(m, rest[:half], rest[half:])
			return fmt.Sprintf("bridge %s, %s cut from %s (%s)", c.Nodes[b].ID, c.ids(rest[:half]), c.ids(rest[half:]), m), heal(c)
		})},
		{name: "slow-links", inject: simple(func(ctx context.Context, c *Cluster, r *rand.Rand) (string, func() error) {
			d := time.Duration(20+r.IntN(180)) * time.Millisecond
			for i := range c.Nodes {
				for _, j := range others(c, i) {
					c.SetLink(i, j, linkUp, d)
				}
			}
			return fmt.Sprintf("every peer link delayed %v per chunk", d), heal(c)
		})},
		{name: "cut-clients", inject: simple(func(ctx context.Context, c *Cluster, r *rand.Rand) (string, func() error) {
			// The clients lose 1 to n-1 nodes (their writes there end
			// unknown and are retried elsewhere with the same ids); the
			// nodes still see each other.
			perm, m := r.Perm(len(c.Nodes)), cutMode(r)
			k := 1 + r.IntN(len(c.Nodes)-1)
			for _, i := range perm[:k] {
				c.SetClientLink(i, m, 0)
			}
			return fmt.Sprintf("clients cut from %s (%s)", c.ids(perm[:k]), m), heal(c)
		})},
		{name: "snapshot-catchup", inject: snapshotCatchUp(false)},
		{name: "snapshot-slow-link", inject: snapshotCatchUp(true)},
		{name: "membership", inject: membership},
		{name: "transfer-leader", inject: transferLeader},
	}
}

// killAll SIGKILLs every node at once; the heal restarts them all.
func killAll(ctx context.Context, c *Cluster, r *rand.Rand) (string, func() error) {
	order := r.Perm(len(c.Nodes))
	for _, i := range order {
		c.Kill(c.Nodes[i])
	}
	return "SIGKILL every node " + c.ids(order), func() error {
		var errs []string
		for _, i := range r.Perm(len(c.Nodes)) {
			if err := c.Start(c.Nodes[i]); err != nil {
				errs = append(errs, err.Error())
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("restart: %s", strings.Join(errs, "; "))
		}
		return nil
	}
}

// ids names the nodes at the given indices.
func (c *Cluster) ids(idx []int) string {
	var s []string
	for _, i := range idx {
		s = append(s, c.Nodes[i].ID)
	}
	return "{" + strings.Join(s, ",") + "}"
}
