// Package bench is stockbench's library: load scenarios that drive a stockd
// cluster through its public gRPC API only (a black box: no store, cluster or
// server imports), the drivers that pace them, the recorder that keeps
// latencies in HDR histograms, and the reports. cmd/stockbench is its
// command line.
package bench

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
)

// Recorder receives every measured operation. Implementations are safe for
// concurrent use.
type Recorder interface {
	// Record notes one operation named op (a row of the final table, e.g.
	// "get-1", "reserve", "confirm") that took d; err is nil on success and
	// otherwise counted by its gRPC status code.
	Record(op string, d time.Duration, err error)
}

// Options are the knobs every scenario may read (flags of cmd/stockbench).
type Options struct {
	// SKUs is the catalog size (--catalog, default 100,000), Locations the
	// warehouses it is stocked in (default 3).
	SKUs      int
	Locations int
	// Seed makes the catalog, the popularity draw and the carts repeatable.
	Seed uint64
	// Concurrency is the number of workers (closed loop) or the cap on
	// operations in flight (open loop).
	Concurrency int
	// Duration is how long the measured phase lasts (a scenario that runs a
	// fixed amount of work, like backfill, may ignore it).
	Duration time.Duration
	// Batches are the GetAvailability batch sizes storefront reads (--batch,
	// default [1]); each operation picks one of them at random.
	Batches []int
	// FullView makes storefront ask for AVAILABILITY_VIEW_FULL (the
	// per-location breakdown; --view full) instead of BASIC, what a
	// storefront shows.
	FullView bool
	// WritesToLeader sends reservation writes (reserve, confirm, release;
	// peak-day's SetStock too) to the node that leads when the scenario
	// starts, or that a follower names when it forwards a reserve (--writes
	// leader), instead of spreading them over every node as reads are
	// (--writes any). A follower forwards every write to the leader, so
	// spreading them costs a second gRPC hop; routing them is what a client
	// that knows the leader does.
	WritesToLeader bool
}

// Env is what a scenario runs against.
type Env struct {
	// Conns holds one client connection per node, in --addr (or spawn)
	// order. Workers spread over them as Conn(w) says.
	Conns []*grpc.ClientConn
	Opts  Options
	Log   *slog.Logger
	// DialOptions are what Conns were dialled with (TLS, tokens); a
	// scenario that opens a connection of its own uses them too. Nil:
	// plaintext.
	DialOptions []grpc.DialOption

	// leader is 1 + the index in Conns of the leader found by findLeader;
	// 0 while writes are spread over every node.
	leader atomic.Int32
}

// Conn is worker w's connection.
func (e *Env) Conn(w int) *grpc.ClientConn { return e.Conns[w%len(e.Conns)] }

// WriteConn is the connection worker w sends reservation writes on: the
// leader's once findLeader found it, otherwise Conn(w).
func (e *Env) WriteConn(w int) *grpc.ClientConn {
	if i := e.leader.Load(); i > 0 {
		return e.Conns[i-1]
	}
	return e.Conn(w)
}

// Scenario is one load shape. The driver calls Setup once, then Do from
// Options.Concurrency workers (closed loop: back to back; open loop: at a
// fixed arrival rate, latency measured from the intended start so
// coordinated omission is not hidden) until the duration ends, then Verify.
type Scenario interface {
	// Name is the scenario's name on the command line (e.g. "storefront").
	Name() string
	// Setup loads what the scenario needs (locations, channels, SKUs, stock)
	// through the public API. It is not measured.
	Setup(ctx context.Context, env *Env) error
	// Do runs one operation as worker w with the worker's own random source
	// and records what it measured. It returns when the operation (and any
	// follow-up it implies, like a checkout's confirm) is done; an RPC error
	// is recorded, not returned.
	Do(ctx context.Context, env *Env, w int, rnd *rand.Rand, rec Recorder)
	// Verify checks the stock invariants after the load through the public
	// API: nothing oversold, every acknowledged reservation present. A
	// read-only scenario returns nil.
	Verify(ctx context.Context, env *Env) error
}

// Runner is a Scenario that paces itself instead of being driven op by op
// (backfill sends a fixed amount; watch measures event latency on streams).
// The driver calls Run instead of calling Do from workers; Setup and Verify
// are called as for any scenario.
type Runner interface {
	Scenario
	Run(ctx context.Context, env *Env, rec Recorder) error
}

// Unavailable is returned by Setup when the cluster lacks an RPC the
// scenario needs (codes.Unimplemented): the scenario is reported as skipped
// with this reason, never faked.
type Unavailable struct{ Reason string }

func (u Unavailable) Error() string { return "scenario unavailable: " + u.Reason }
