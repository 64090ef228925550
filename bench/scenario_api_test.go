package bench

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// tallyRecorder is a Recorder for the scenario tests: per operation, how
// many succeeded and how many failed with each code.
type tallyRecorder struct {
	mu   sync.Mutex
	ok   map[string]int
	errs map[string]map[codes.Code]int
}

func newTallyRecorder() *tallyRecorder {
	return &tallyRecorder{ok: map[string]int{}, errs: map[string]map[codes.Code]int{}}
}

func (r *tallyRecorder) Record(op string, _ time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.ok[op]++
		return
	}
	if r.errs[op] == nil {
		r.errs[op] = map[codes.Code]int{}
	}
	r.errs[op][status.Code(err)]++
}

func (r *tallyRecorder) okCount(op string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ok[op]
}

func (r *tallyRecorder) errCount(op string, c codes.Code) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errs[op][c]
}

// errorsOf returns every operation's failures, for a failure message.
func (r *tallyRecorder) errorsOf() map[string]map[codes.Code]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errs
}

// scenarioTestEnv dials every node of c (closed by t.Cleanup).
func scenarioTestEnv(t *testing.T, c *Cluster, opts Options) *Env {
	t.Helper()
	env := &Env{Opts: opts}
	for _, a := range c.Addrs() {
		conn, err := grpc.NewClient(a, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatalf("dial %s: %v", a, err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		env.Conns = append(env.Conns, conn)
	}
	return env
}

// driveScenario calls s.Do from Options.Concurrency workers back to back for
// Options.Duration, as the closed-loop driver does.
func driveScenario(ctx context.Context, s Scenario, env *Env, rec Recorder) {
	end := time.Now().Add(env.Opts.Duration)
	var wg sync.WaitGroup
	for w := range max(env.Opts.Concurrency, 1) {
		wg.Go(func() {
			rnd := workerRand(env.Opts.Seed, w)
			for ctx.Err() == nil && time.Now().Before(end) {
				s.Do(ctx, env, w, rnd, rec)
			}
		})
	}
	wg.Wait()
}

// serveFake serves a gRPC server with the services register adds on
// 127.0.0.1 until the test ends, and returns its address and a connection
// to it (closed by t.Cleanup).
func serveFake(t *testing.T, register func(*grpc.Server)) (string, *grpc.ClientConn) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	register(srv)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return lis.Addr().String(), conn
}

// testContext is a context that ends with the test or after limit.
func testContext(t *testing.T, limit time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	t.Cleanup(cancel)
	return ctx
}

func TestScenariosAreSkippedWhenTheServerLacksTheirRPC(t *testing.T) {
	// A gRPC server with no service at all answers every call Unimplemented.
	_, conn := serveFake(t, func(*grpc.Server) {})
	env := &Env{Conns: []*grpc.ClientConn{conn}, Opts: Options{SKUs: 10, Locations: 1, Concurrency: 1, Duration: time.Second}}
	ctx := testContext(t, 10*time.Second)
	for _, s := range []Scenario{NewMarketplace(), NewERPStorm(), NewBackfill(), NewWatch()} {
		err := s.Setup(ctx, env)
		if _, ok := errors.AsType[Unavailable](err); !ok {
			t.Errorf("%s: Setup against a server without the RPC: got %v, want Unavailable", s.Name(), err)
		}
	}
}
