package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stockd/stockd/api/stockdv1"
)

// Setup helpers shared by the scenarios: locations, a channel, a catalog of
// items stocked at every location, Zipf popularity.

// maxStockRows is the most rows stockd takes in one SetStock call.
const maxStockRows = 10_000

// setupTimeout bounds one setup RPC.
const setupTimeout = 30 * time.Second

// runNonce returns a prefix unique to this run, so scenarios repeated against
// the same cluster (--addr) never collide with earlier runs' items and
// reservation ids.
func runNonce() string {
	return strconv.FormatInt(time.Now().UnixNano()%(1<<40), 36)
}

// unavailableIf turns codes.Unimplemented into Unavailable naming rpc.
func unavailableIf(err error, rpc string) error {
	if status.Code(err) == codes.Unimplemented {
		return Unavailable{Reason: rpc + " is not implemented by the target"}
	}
	return err
}

// benchLocations returns the location ids the scenarios stock: bench-l1…
func benchLocations(n int) []string {
	n = max(n, 1)
	locs := make([]string, n)
	for i := range locs {
		locs[i] = fmt.Sprintf("bench-l%d", i+1)
	}
	return locs
}

// putLocationsAndChannel declares locs (idempotent) and channel over them in
// that priority order with no buffer.
func putLocationsAndChannel(ctx context.Context, env *Env, channel string, locs []string) error {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	admin := stockdv1.NewAdminClient(env.Conn(0))
	for _, l := range locs {
		if err := untilAvailable(ctx, func() error {
			_, err := admin.PutLocation(ctx, &stockdv1.PutLocationRequest{Location: &stockdv1.Location{Id: l, Name: l}})
			return err
		}); err != nil {
			return unavailableIf(fmt.Errorf("put location %s: %w", l, err), "Admin/PutLocation")
		}
	}
	if err := untilAvailable(ctx, func() error {
		_, err := admin.PutChannel(ctx, &stockdv1.PutChannelRequest{Channel: &stockdv1.Channel{Id: channel, Locations: locs}})
		return err
	}); err != nil {
		return unavailableIf(fmt.Errorf("put channel %s: %w", channel, err), "Admin/PutChannel")
	}
	return nil
}

// setStock sends rows through Erp.SetStock in chunks of maxStockRows, a few
// chunks at a time, and fails unless every row is applied.
func setStock(ctx context.Context, env *Env, rows []*stockdv1.StockCount) error {
	_, err := setStockRev(ctx, env, rows)
	return err
}

// setStockRev is setStock, also returning the highest revision that
// acknowledged a chunk: a read with that min_revision sees every row on any
// node.
func setStockRev(ctx context.Context, env *Env, rows []*stockdv1.StockCount) (uint64, error) {
	const parallel = 4
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		rev   uint64
	)
	sem := make(chan struct{}, parallel)
	for i := 0; i < len(rows); i += maxStockRows {
		chunk := rows[i:min(i+maxStockRows, len(rows))]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(ctx, setupTimeout)
			defer cancel()
			r, err := setStockChunk(cctx, stockdv1.NewErpClient(env.Conn(i/maxStockRows)), chunk)
			mu.Lock()
			rev = max(rev, r)
			mu.Unlock()
			if err != nil {
				mu.Lock()
				if first == nil {
					first = unavailableIf(fmt.Errorf("set stock: %w", err), "Erp/SetStock")
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return rev, first
}

// setStockChunk sends one chunk of setup rows, retrying while the cluster
// answers UNAVAILABLE (an election: a 3-node cluster sharing 2 cores with
// the load may change leader between runs) until ctx ends. A retry of a
// chunk that was applied before its answer was lost finds its rows stale
// (same versions): rows applied or stale on a retry all hold the counts
// sent, so together they must cover the chunk.
func setStockChunk(ctx context.Context, erp stockdv1.ErpClient, chunk []*stockdv1.StockCount) (uint64, error) {
	tries := 0
	var resp *stockdv1.SetStockResponse
	err := untilAvailable(ctx, func() (err error) {
		tries++
		resp, err = erp.SetStock(ctx, &stockdv1.SetStockRequest{Rows: chunk})
		return err
	})
	if err != nil {
		return 0, err
	}
	done := resp.GetApplied()
	if tries > 1 {
		done += resp.GetIgnoredStale()
	}
	if int(done) != len(chunk) {
		return 0, fmt.Errorf("applied %d of %d rows (stale %d, rejected %d)", resp.GetApplied(), len(chunk), resp.GetIgnoredStale(), resp.GetRejected())
	}
	return resp.GetRevision(), nil
}

// untilAvailable runs a setup call (one that is safe to repeat) until it
// answers anything but UNAVAILABLE or ctx ends, 100 ms apart.
func untilAvailable(ctx context.Context, call func() error) error {
	for {
		err := call()
		if status.Code(err) != codes.Unavailable || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// catalogRows returns one row per item and location, every counter at
// onHand, versioned with version.
func catalogRows(items, locs []string, onHand int64, version uint64) []*stockdv1.StockCount {
	rows := make([]*stockdv1.StockCount, 0, len(items)*len(locs))
	for _, it := range items {
		for _, l := range locs {
			rows = append(rows, &stockdv1.StockCount{Item: it, Location: l, OnHandBaseUnits: onHand, Version: version})
		}
	}
	return rows
}

// itemNames returns n item ids prefix-000000…; a SKU without a mapping is its
// own item with factor 1, so these are the SKUs too.
func itemNames(prefix string, n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%06d", prefix, i)
	}
	return names
}

// popularity draws catalog indexes with Zipf-distributed popularity
// (exponent zipfS): rank 0 is the most popular, rank k drawn with
// probability proportional to (1+k)^-zipfS, as rand.Zipf(s, 1, n-1) draws.
// Ranks are spread over the catalog by a fixed permutation so popular items
// are not neighbours. A draw is a binary search of one uniform number in the
// precomputed cumulative distribution (rand.Zipf's rejection sampling cost
// the load client two exp/log pairs a draw, a fifth of its storefront
// work). It is read-only after newPopularity: safe for concurrent use.
type popularity struct {
	n    int
	mult uint64
	cdf  []float64 // cdf[k]: probability of a rank <= k; the last is 1
}

const zipfS = 1.1

func newPopularity(n int) *popularity {
	n = max(n, 1)
	// A multiplier coprime with n makes rank -> rank*mult mod n a permutation.
	mult := uint64(2654435761) % uint64(n)
	for mult == 0 || gcd(mult, uint64(n)) != 1 {
		mult++
	}
	cdf := make([]float64, n)
	var sum float64
	for k := range cdf {
		sum += math.Pow(float64(k+1), -zipfS)
		cdf[k] = sum
	}
	for k := range cdf {
		cdf[k] /= sum
	}
	cdf[n-1] = 1
	return &popularity{n: n, mult: mult, cdf: cdf}
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// rank draws a popularity rank from rnd.
func (p *popularity) rank(rnd *rand.Rand) uint64 {
	u := rnd.Float64()
	k, _ := slices.BinarySearch(p.cdf, u) // the first rank whose cdf >= u
	return uint64(min(k, p.n-1))
}

// index maps a popularity rank to its catalog index.
func (p *popularity) index(rank uint64) int { return int(rank * p.mult % uint64(p.n)) }

// draw returns one catalog index drawn from rnd.
func (p *popularity) draw(rnd *rand.Rand) int {
	return p.index(p.rank(rnd))
}

// drawDistinct returns k distinct catalog indexes (k at most n).
func (p *popularity) drawDistinct(rnd *rand.Rand, k int) []int {
	return p.appendDistinct(make([]int, 0, min(k, p.n)), rnd, k)
}

// appendDistinct appends k distinct catalog indexes to out, which must be
// empty (a buffer the caller reuses), and returns it.
func (p *popularity) appendDistinct(out []int, rnd *rand.Rand, k int) []int {
	k = min(k, p.n)
	for len(out) < k {
		i := p.draw(rnd)
		dup := false
		for _, j := range out {
			if j == i {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, i)
		}
		if len(out) < k && len(out) > k/2 && rnd.IntN(8) == 0 {
			// The Zipf head is small: fill the rest uniformly rather than
			// redraw it many times.
			out = appendUniformDistinct(out, rnd, p.n, k)
		}
	}
	return out
}

func appendUniformDistinct(out []int, rnd *rand.Rand, n, k int) []int {
	for len(out) < k {
		i := rnd.IntN(n)
		dup := false
		for _, j := range out {
			if j == i {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, i)
		}
	}
	return out
}

// isRefusal reports whether err is a business refusal of a write (not
// enough stock): the call was decided and changed nothing.
func isRefusal(err error) bool {
	return status.Code(err) == codes.FailedPrecondition
}

// joinLimited joins errs, or is nil when there are none; at most limit are
// kept so a broken run does not print a million lines.
func joinLimited(errs []error, limit int) error {
	if len(errs) == 0 {
		return nil
	}
	if len(errs) > limit {
		more := len(errs) - limit
		errs = append(errs[:limit:limit], fmt.Errorf("… and %d more", more))
	}
	return errors.Join(errs...)
}

// awaitApplied returns once every node in env has applied rev: a read of
// sku on channel with that min_revision answers on each. A node that is
// behind answers UNAVAILABLE after its own bound; it is asked again until
// setupTimeout.
func awaitApplied(ctx context.Context, env *Env, channel, sku string, rev uint64) error {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	for i, conn := range env.Conns {
		inv := stockdv1.NewInventoryClient(conn)
		for {
			_, err := inv.GetAvailability(ctx, &stockdv1.GetAvailabilityRequest{Channel: channel, Skus: []string{sku}, MinRevision: rev})
			if err == nil {
				break
			}
			if status.Code(err) != codes.Unavailable || ctx.Err() != nil {
				return fmt.Errorf("node %d applying the setup (revision %d): %w", i+1, rev, err)
			}
		}
	}
	return nil
}
