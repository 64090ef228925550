package client

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff is the pause step after the attempt-th failed attempt (1-based):
// BackoffBase doubled attempt-1 times, at most BackoffMax.
func (c *Client) backoff(attempt int) time.Duration {
	d := c.backoffBase
	for i := 1; i < attempt && d < c.backoffMax; i++ {
		if d > c.backoffMax/2 {
			return c.backoffMax // doubling would pass it, or overflow
		}
		d *= 2
	}
	return min(d, c.backoffMax)
}

// equalJitter returns a pause drawn uniformly from [d/2, d], so clients that
// failed together do not come back together.
func equalJitter(d time.Duration) time.Duration {
	half := d / 2
	return half + rand.N(d-half+1)
}

// sleep pauses for d, or until ctx ends and then returns its error.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
