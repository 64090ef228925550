package bench

import (
	"context"
	"math/rand/v2"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Floor is the `floor` scenario: grpc.health.v1.Health/Check (the server's
// normal health service, through the same interceptor chain as every other
// RPC) on the same connections and at the same concurrency as the other
// scenarios of a run. Its throughput is what the others are divided by: what
// gRPC, the interceptors and this machine cost before stockd does any work.
type Floor struct{}

// NewFloor returns the floor scenario.
func NewFloor() *Floor { return &Floor{} }

// Name implements Scenario.
func (*Floor) Name() string { return "floor" }

// Setup implements Scenario; the floor needs nothing.
func (*Floor) Setup(context.Context, *Env) error { return nil }

// Do implements Scenario: one health check, op "health".
func (*Floor) Do(ctx context.Context, env *Env, w int, _ *rand.Rand, rec Recorder) {
	start := time.Now()
	_, err := healthpb.NewHealthClient(env.Conn(w)).Check(ctx, &healthpb.HealthCheckRequest{})
	rec.Record("health", time.Since(start), err)
}

// Verify implements Scenario: the floor writes nothing.
func (*Floor) Verify(context.Context, *Env) error { return nil }
