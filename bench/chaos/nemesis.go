package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// A nemesis injects one fault and returns what undoes it. The schedule holds
// each fault for a while (a schedule, not synchronisation), undoes it and
// waits (polling) for the cluster to recover before the next one.
type nemesis struct {
	name string
	// inject starts the fault and returns a description and the heal.
	inject func(ctx context.Context, c *Cluster, r *rand.Rand) (desc string, heal func() error)
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
		{name: "kill-leader", inject: kill(leader)},
		{name: "kill-follower", inject: kill(follower)},
		{name: "pause-leader", inject: pause(leader)},
		{name: "pause-follower", inject: pause(follower)},
		{name: "isolate-leader", inject: func(ctx context.Context, c *Cluster, r *rand.Rand) (string, func() error) {
			l, m := leaderOr(ctx, c, r), cutMode(r)
			c.Partition(m, []int{l}, others(c, l))
			return fmt.Sprintf("isolate leader %s (%s)", c.Nodes[l].ID, m), heal(c)
		}},
		{name: "partition-minority", inject: func(ctx context.Context, c *Cluster, r *rand.Rand) (string, func() error) {
			i, m := r.IntN(len(c.Nodes)), cutMode(r)
			c.Partition(m, []int{i}, others(c, i))
			return fmt.Sprintf("minority {%s} | majority (%s)", c.Nodes[i].ID, m), heal(c)
		}},
		{name: "bridge", inject: func(ctx context.Context, c *Cluster, r *rand.Rand) (string, func() error) {
			// The bridge keeps both its links; the two others cannot talk.
			b, m := r.IntN(len(c.Nodes)), cutMode(r)
			rest := others(c, b)
			half := len(rest) / 2
			c.Partition(m, rest[:half], rest[half:])
			return fmt.Sprintf("bridge %s, %s cut from %s (%s)", c.Nodes[b].ID, c.ids(rest[:half]), c.ids(rest[half:]), m), heal(c)
		}},
		{name: "slow-links", inject: func(ctx context.Context, c *Cluster, r *rand.Rand) (string, func() error) {
			d := time.Duration(20+r.IntN(180)) * time.Millisecond
			for i := range c.Nodes {
				for _, j := range others(c, i) {
					c.SetLink(i, j, linkUp, d)
				}
			}
			return fmt.Sprintf("every peer link delayed %v per chunk", d), heal(c)
		}},
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
