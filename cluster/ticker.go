package cluster

import (
	"context"
	"time"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// maxTickWait caps how long the ticker sleeps between looks at the earliest
// hold deadline, so holds made meanwhile, a gained leadership or a clock that
// jumped are noticed within it.
const maxTickWait = 250 * time.Millisecond

// runTicker proposes a Tick whenever this node leads and the clock has
// passed the earliest live hold deadline, so holds expire without traffic
// (DESIGN.md: a hold expires when an entry's time passes its deadline). It
// sleeps on a timer between looks, never spins, and exits when ctx ends.
func (n *Node) runTicker(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	// tried is the deadline a Tick was last proposed for, at triedAt (real
	// time); the same deadline gets another Tick only after maxTickWait, so a
	// Tick that fails or does not clear it cannot spin.
	var (
		tried   store.Timestamp
		triedAt time.Time
	)
	for {
		select {
		case <-timer.C:
		case <-ctx.Done():
			return
		}
		wait := maxTickWait
		if deadline, ok := n.machine.NextDeadline(); ok && n.IsLeader() {
			now := store.Timestamp(n.clock().UnixNano())
			switch {
			case deadline > now:
				wait = min(wait, time.Duration(deadline-now))
			case deadline != tried || time.Since(triedAt) >= maxTickWait:
				tried, triedAt = deadline, time.Now()
				wait = n.proposeTick(ctx)
			}
		}
		timer.Reset(wait)
	}
}

// proposeTick proposes one Tick and returns how long to wait before the next
// look: at once after a Tick that applied (more holds may be due), the full
// cap after a failure.
func (n *Node) proposeTick(ctx context.Context) time.Duration {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
	defer cancel()
	rn := n.run.Load()
	if rn == nil {
		return maxTickWait
	}
	// Only the leader ticks; a Tick is never forwarded.
	_, err := n.proposeLocal(ctx, rn, &logv1.Command{Kind: &logv1.Command_Tick{Tick: &logv1.Tick{}}})
	if err != nil {
		if ctx.Err() == nil {
			n.logger.Warn("propose tick", "error", err)
		}
		return maxTickWait
	}
	return 0
}
