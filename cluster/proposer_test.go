package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stockd/stockd/store"
)

// reserveConcurrently has callers goroutines each reserve perCaller holds of
// one unit and checks every caller got the answer to its own command.
func reserveConcurrently(t *testing.T, n *Node, callers, perCaller int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for c := range callers {
		wg.Go(func() {
			for i := range perCaller {
				id := fmt.Sprintf("c%d-%d", c, i)
				res, err := n.Propose(testCtx(t), reserve("web", id, "ROSE", 1, 0))
				switch {
				case err != nil:
					errs <- fmt.Errorf("reserve %s: %w", id, err)
					return
				case res.Err != nil:
					errs <- fmt.Errorf("reserve %s: refused: %w", id, res.Err)
					return
				case res.Reservation == nil || string(res.Reservation.ID) != id:
					errs <- fmt.Errorf("reserve %s: got reservation %+v, want id %s", id, res.Reservation, id)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestProposeBatches(t *testing.T) {
	const callers, perCaller = 64, 10

	t.Run("64 concurrent proposers share log entries", func(t *testing.T) {
		n := startNode(t, testConfig(t))
		seed(t, n, 1_000_000)
		before := n.Stats()
		reserveConcurrently(t, n, callers, perCaller)
		after := n.Stats()
		entries, commands := after.Entries-before.Entries, after.Commands-before.Commands
		if commands != callers*perCaller {
			t.Fatalf("%d callers x %d reserves: %d commands proposed, want %d", callers, perCaller, commands, callers*perCaller)
		}
		if entries == 0 || commands <= entries {
			t.Fatalf("%d callers x %d reserves: %d commands in %d entries, want more than one command per entry",
				callers, perCaller, commands, entries)
		}
		t.Logf("%d commands in %d entries (%.1f per entry)", commands, entries, float64(commands)/float64(entries))
	})

	t.Run("max batch 1 puts one command in each entry", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.MaxBatch = 1
		n := startNode(t, cfg)
		seed(t, n, 1_000_000)
		before := n.Stats()
		reserveConcurrently(t, n, callers, 3)
		after := n.Stats()
		entries, commands := after.Entries-before.Entries, after.Commands-before.Commands
		if commands != callers*3 || entries != commands {
			t.Fatalf("MaxBatch 1, %d reserves: %d commands in %d entries, want %d in %d",
				callers*3, commands, entries, callers*3, callers*3)
		}
	})
}

func TestProposeContext(t *testing.T) {
	n := startNode(t, testConfig(t))
	seed(t, n, 1_000_000)

	t.Run("an ended context is refused before proposing", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		before := n.Stats()
		if _, err := n.Propose(ctx, reserve("web", "dead", "ROSE", 1, 0)); !errors.Is(err, context.Canceled) {
			t.Fatalf("Propose with a cancelled ctx: %v, want %v", err, context.Canceled)
		}
		if after := n.Stats(); after != before {
			t.Fatalf("Stats after a cancelled Propose = %+v, want unchanged %+v", after, before)
		}
	})

	t.Run("callers that give up do not disturb the others", func(t *testing.T) {
		const callers = 64
		var wg sync.WaitGroup
		errs := make(chan error, callers)
		for c := range callers {
			wg.Go(func() {
				id := store.ReservationID(fmt.Sprintf("mixed-%d", c))
				ctx := testCtx(t)
				if c%2 == 1 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithCancel(ctx)
					go cancel()
				}
				res, err := n.Propose(ctx, reserve("web", string(id), "ROSE", 1, 0))
				switch {
				case c%2 == 1 && (err == nil || errors.Is(err, context.Canceled)):
				case err != nil:
					errs <- fmt.Errorf("caller %d: %w", c, err)
				case res.Reservation == nil || res.Reservation.ID != id:
					errs <- fmt.Errorf("caller %d: got reservation %+v, want id %s", c, res.Reservation, id)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}
