package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stockd/stockd/api/stockdv1"
)

// floodItem takes the writes that push a cut-off follower behind the
// leader's log; the workload never touches it.
const floodItem = "flood"

// Snapshot catch-up tuning.
const (
	// minFloodWrites is how many writes land at least while the follower is
	// cut off ("thousands of writes").
	minFloodWrites = 2000
	floodWriters   = 8
	// The links to and from the follower while it installs the snapshot
	// (snapshot-slow-link) are delayed slowLinkDelay per 4 KiB and limited
	// to the rate that sends the leader's snapshot in slowInstall (at least
	// minSlowLinkRate).
	slowLinkDelay   = 2 * time.Millisecond
	slowInstall     = 4 * time.Second
	minSlowLinkRate = 32 << 10
	// defaultTrailingLogs is stockd's --trailing-logs default.
	defaultTrailingLogs = 10240
)

// argUint returns the value of flag name in args, or def.
func argUint(args []string, name string, def uint64) uint64 {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			if v, err := strconv.ParseUint(args[i+1], 10, 64); err == nil {
				return v
			}
		}
	}
	return def
}

// waitLeader polls until a node says it leads (15 s at most).
func waitLeader(ctx context.Context, c *Cluster) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	l := -1
	err := poll(ctx, "a leader", func() (bool, string) {
		l = c.Leader(ctx)
		return l >= 0, "no node leads"
	})
	return l, err
}

// snapshotCatchUp cuts a follower off while thousands of writes land, until
// every other node has taken a snapshot so far past what the follower has
// that their logs no longer hold the entries it lacks (the snapshot index
// minus --trailing-logs is beyond the commit index at the cut). Healed, the
// follower can only catch up by installing a snapshot; verify checks that it
// did: its snapshot folder gains a snapshot past the cut, which it cannot
// have taken itself without the entries it lacked. With slow, the follower's
// links are limited in bandwidth and delayed while it installs.
func snapshotCatchUp(slow bool) func(ctx context.Context, c *Cluster, r *rand.Rand) (*fault, error) {
	return func(ctx context.Context, c *Cluster, r *rand.Rand) (*fault, error) {
		l, err := waitLeader(ctx, c)
		if err != nil {
			return nil, err
		}
		f := followerOf(c, r, l)
		fn := c.Nodes[f]
		rest := others(c, f)
		c.Partition(linkRefuse, []int{f}, rest)
		_, _, commit, _, err := c.status(ctx, l)
		if err != nil {
			c.Heal()
			return nil, fmt.Errorf("status of leader %s: %w", c.Nodes[l].ID, err)
		}
		trailing := argUint(c.Nodes[l].args, "--trailing-logs", defaultTrailingLogs)
		need := commit + trailing + 2
		compacted := func() bool {
			for _, j := range rest {
				snaps := c.Nodes[j].snapshotIndexes()
				if len(snaps) == 0 || snaps[len(snaps)-1] < need {
					return false
				}
			}
			return true
		}
		fctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		t0 := time.Now()
		n, err := flood(fctx, c, rest, compacted)
		cancel()
		if err != nil {
			c.Heal()
			return nil, fmt.Errorf("cut %s off at commit %d: %w", fn.ID, commit, err)
		}
		before := fn.snapshotIndexes()
		rate := int64(minSlowLinkRate)
		for _, j := range rest {
			rate = max(rate, c.Nodes[j].latestSnapshotBytes()*int64(time.Second)/int64(slowInstall))
		}
		desc := fmt.Sprintf("cut %s off at commit %d; %d writes landed in %v until %s snapshotted past %d (trailing logs %d)",
			fn.ID, commit, n, time.Since(t0).Round(time.Millisecond), c.ids(rest), need, trailing)
		if slow {
			desc += fmt.Sprintf("; healed into links of %d KiB/s, +%v per 4 KiB", rate>>10, slowLinkDelay)
		}
		var healed time.Time
		return &fault{
			desc: desc,
			heal: func() error {
				c.Heal()
				if slow {
					for _, j := range rest {
						c.SetLinkRate(j, f, slowLinkDelay, rate)
						c.SetLinkRate(f, j, slowLinkDelay, rate)
					}
				}
				healed = time.Now()
				return nil
			},
			verify: func(ctx context.Context) (string, []string) {
				defer c.Heal() // lifts the slow links
				var got []uint64
				err := poll(ctx, "snapshot install on "+fn.ID, func() (bool, string) {
					got = fn.snapshotIndexes()
					return len(got) > 0 && got[len(got)-1] >= need, fmt.Sprintf("snapshots of %s at %v", fn.ID, got)
				})
				if err != nil {
					return "", []string{fmt.Sprintf("snapshot-catchup: %s was cut off at commit %d and the others compacted past %d, yet it shows no installed snapshot (before the heal %v): %v", fn.ID, commit, need, before, err)}
				}
				// It must also have caught up: its applied index reaches
				// the leader's commit index as read now.
				_, _, target, _, err := c.status(ctx, l)
				if err != nil {
					return "", []string{fmt.Sprintf("snapshot-catchup: status of %s: %v", c.Nodes[l].ID, err)}
				}
				err = poll(ctx, fn.ID+" catching up", func() (bool, string) {
					cctx, cancel := context.WithTimeout(ctx, time.Second)
					defer cancel()
					st, err := fn.Cl.Status(cctx, &stockdv1.StatusRequest{})
					if err != nil {
						return false, err.Error()
					}
					for _, m := range st.GetMembers() {
						if m.GetNodeId() == fn.ID {
							return m.GetAppliedIndex() >= target, fmt.Sprintf("applied %d of %d", m.GetAppliedIndex(), target)
						}
					}
					return false, "not in its own member list"
				})
				if err != nil {
					return "", []string{fmt.Sprintf("snapshot-catchup: %s installed a snapshot but did not catch up: %v", fn.ID, err)}
				}
				return fmt.Sprintf("%s installed a snapshot (its snapshots %v, before %v) and caught up to %d, %v after the heal",
					fn.ID, got, before, target, time.Since(healed).Round(time.Millisecond)), nil
			},
		}, nil
	}
}

// flood writes adjustments of floodItem (each with its own delta id) through
// the given nodes until done reports true with at least minFloodWrites
// acknowledged, or ctx ends. It returns how many were acknowledged.
func flood(ctx context.Context, c *Cluster, via []int, done func() bool) (int64, error) {
	var acked, seq atomic.Int64
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	for w := range floodWriters {
		nd := c.Nodes[via[w%len(via)]]
		wg.Go(func() {
			for fctx.Err() == nil {
				id := fmt.Sprintf("flood-%d", seq.Add(1))
				cctx, cancel := context.WithTimeout(fctx, 2*time.Second)
				resp, err := nd.Erp.AdjustStock(cctx, &stockdv1.AdjustStockRequest{Rows: []*stockdv1.StockAdjustment{
					{DeltaId: id, Item: floodItem, Location: chaosLocation, DeltaBaseUnits: 1}}})
				cancel()
				if err == nil && rowErr(resp.GetRows()) == nil {
					acked.Add(1)
				}
			}
		})
	}
	err := poll(ctx, "flood", func() (bool, string) {
		n := acked.Load()
		return n >= minFloodWrites && done(), fmt.Sprintf("%d writes acknowledged", n)
	})
	stop()
	wg.Wait()
	return acked.Load(), err
}
