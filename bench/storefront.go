package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/stockd/stockd/api/stockdv1"
)

// storefrontChannel is the channel storefront reads through.
const storefrontChannel = "bench-storefront"

// storefrontOnHand is every storefront counter's stock.
const storefrontOnHand = 1_000

// Storefront is the `storefront` scenario: GetAvailability of batches of
// Options.Batches SKUs (ops get-1, get-20, get-100), SKU popularity Zipf
// distributed over a catalog of Options.SKUs items stocked at
// Options.Locations locations, in the BASIC view a storefront shows (FULL
// with Options.FullView). It only reads, so Verify has nothing to check.
type Storefront struct {
	skus    []string
	pop     *popularity
	batches []int
	ops     []string
	view    stockdv1.AvailabilityView
	// workers holds each worker's request and answer, reused call after
	// call so the load client allocates almost nothing per call.
	workers  []storefrontWorker
	callOpts []grpc.CallOption
}

// storefrontWorker is one worker's reusable call state; only that worker
// touches it.
type storefrontWorker struct {
	idx   []int
	req   stockdv1.GetAvailabilityRequest
	reply availabilityReply
}

// NewStorefront returns the storefront scenario.
func NewStorefront() *Storefront { return &Storefront{} }

// Name implements Scenario.
func (*Storefront) Name() string { return "storefront" }

// Setup implements Scenario: it declares the locations and the channel and
// loads the catalog through Erp.SetStock. The catalog's names do not depend
// on the run, so a second run against the same cluster overwrites it.
func (s *Storefront) Setup(ctx context.Context, env *Env) error {
	s.batches = env.Opts.Batches
	if len(s.batches) == 0 {
		s.batches = []int{1}
	}
	s.ops = make([]string, len(s.batches))
	for i, b := range s.batches {
		if b < 1 || b > 1000 {
			return fmt.Errorf("batch %d: want 1 to 1000 SKUs", b)
		}
		s.ops[i] = "get-" + strconv.Itoa(b)
	}
	s.view = stockdv1.AvailabilityView_AVAILABILITY_VIEW_BASIC
	if env.Opts.FullView {
		s.view = stockdv1.AvailabilityView_AVAILABILITY_VIEW_FULL
	}
	n := max(env.Opts.SKUs, 1)
	s.workers = make([]storefrontWorker, max(env.Opts.Concurrency, 1))
	s.callOpts = []grpc.CallOption{grpc.StaticMethod(), grpc.ForceCodecV2(availabilityCodec{})}
	s.skus = itemNames("SF", n)
	s.pop = newPopularity(n)
	locs := benchLocations(env.Opts.Locations)
	if err := putLocationsAndChannel(ctx, env, storefrontChannel, locs); err != nil {
		return err
	}
	return setStock(ctx, env, catalogRows(s.skus, locs, storefrontOnHand, uint64(time.Now().UnixNano())))
}

// Do implements Scenario: one GetAvailability of a batch of distinct SKUs.
// The answer is checked on the wire (availability_reply.go): as many SKUs as
// asked, each the one asked at its position.
func (s *Storefront) Do(ctx context.Context, env *Env, w int, rnd *rand.Rand, rec Recorder) {
	k := 0
	if len(s.batches) > 1 {
		k = rnd.IntN(len(s.batches))
	}
	sw := &storefrontWorker{}
	if w >= 0 && w < len(s.workers) {
		sw = &s.workers[w]
	}
	sw.idx = s.pop.appendDistinct(sw.idx[:0], rnd, s.batches[k])
	skus := sw.req.Skus[:0]
	for _, j := range sw.idx {
		skus = append(skus, s.skus[j])
	}
	sw.req = stockdv1.GetAvailabilityRequest{Channel: storefrontChannel, Skus: skus, View: s.view}
	sw.reply.reset(skus, env.Opts.FullView)
	start := time.Now()
	err := env.Conn(w).Invoke(ctx, stockdv1.Inventory_GetAvailability_FullMethodName, &sw.req, &sw.reply, s.callOpts...)
	d := time.Since(start)
	if err == nil {
		err = sw.reply.check()
	}
	rec.Record(s.ops[k], d, err)
}

// Verify implements Scenario: storefront writes nothing.
func (*Storefront) Verify(context.Context, *Env) error { return nil }

// Summary implements Summarizer: SKUs read per second per batch size.
func (s *Storefront) Summary(res *ScenarioResult) []Figure {
	var out []Figure
	for _, o := range res.Ops {
		b, ok := strings.CutPrefix(o.Op, "get-")
		n, err := strconv.Atoi(b)
		if !ok || err != nil {
			continue
		}
		out = append(out, Figure{Name: o.Op + " SKU reads", Value: o.OKPerSec * float64(n), Unit: "SKU/s"})
	}
	return out
}
