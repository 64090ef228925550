package client

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/stockdv1"
)

// fakeNode is an in-process stockd node that records what reaches it and
// answers as its script says.
type fakeNode struct {
	stockdv1.UnimplementedInventoryServer

	// answer, when set, decides the n-th (1-based) call on this node: an
	// error is returned as is, nil answers OK. It may block on ctx.
	answer func(ctx context.Context, n int) error

	mu       sync.Mutex
	requests []*stockdv1.ReserveRequest
	auth     [][]string
	// deadlines holds each call's remaining time at arrival, -1 for none.
	deadlines []time.Duration
	watches   int
	reads     int
}

func (f *fakeNode) Reserve(ctx context.Context, req *stockdv1.ReserveRequest) (*stockdv1.ReserveResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	left := time.Duration(-1)
	if dl, ok := ctx.Deadline(); ok {
		left = time.Until(dl)
	}
	f.mu.Lock()
	f.requests = append(f.requests, proto.Clone(req).(*stockdv1.ReserveRequest))
	f.auth = append(f.auth, md.Get("authorization"))
	f.deadlines = append(f.deadlines, left)
	n := len(f.requests)
	f.mu.Unlock()
	if f.answer != nil {
		if err := f.answer(ctx, n); err != nil {
			return nil, err
		}
	}
	return &stockdv1.ReserveResponse{Revision: 42}, nil
}

func (f *fakeNode) Watch(req *stockdv1.WatchRequest, ss grpc.ServerStreamingServer[stockdv1.WatchResponse]) error {
	f.mu.Lock()
	f.watches++
	n := f.watches
	f.mu.Unlock()
	if f.answer != nil {
		return f.answer(ss.Context(), n)
	}
	return nil
}

// seen returns copies of the Reserve requests the node received, in order.
func (f *fakeNode) seen() []*stockdv1.ReserveRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*stockdv1.ReserveRequest(nil), f.requests...)
}

func (f *fakeNode) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests)
}

// start serves f on 127.0.0.1 at an OS-picked port until the test ends and
// returns its address.
func (f *fakeNode) start(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s := grpc.NewServer()
	stockdv1.RegisterInventoryServer(s, f)
	done := make(chan error, 1)
	go func() { done <- s.Serve(lis) }()
	t.Cleanup(func() {
		s.Stop()
		if err := <-done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("serve %s: %v", lis.Addr(), err)
		}
	})
	return lis.Addr().String()
}

// downAddr is an address on 127.0.0.1 where nothing listens (a node that
// is down): the port was picked by the OS and closed again.
func downAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := lis.Addr().String()
	if err := lis.Close(); err != nil {
		t.Fatalf("close %s: %v", addr, err)
	}
	return addr
}

// pauses records the pauses the retrying layer takes, without taking them.
type pauses struct {
	mu sync.Mutex
	d  []time.Duration
}

func (p *pauses) sleep(ctx context.Context, d time.Duration) error {
	p.mu.Lock()
	p.d = append(p.d, d)
	p.mu.Unlock()
	return ctx.Err()
}

func (p *pauses) taken() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Duration(nil), p.d...)
}

// newTestClient is New(cfg) with InsecureToken set if a token is given,
// pauses recorded instead of slept and Close at the end of the test.
func newTestClient(t *testing.T, cfg Config) (*Client, *pauses) {
	t.Helper()
	if cfg.Token != "" {
		cfg.InsecureToken = true
	}
	c, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	p := &pauses{}
	c.sleep = p.sleep
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c, p
}

// reserveRequest is a cart with its reservation id.
func reserveRequest(id string) *stockdv1.ReserveRequest {
	return &stockdv1.ReserveRequest{
		Channel:       "web",
		ReservationId: id,
		Lines:         []*stockdv1.ReserveLine{{Sku: "ROSE", Quantity: 3}},
	}
}

// GetAvailability counts the read and answers an empty availability.
func (f *fakeNode) GetAvailability(context.Context, *stockdv1.GetAvailabilityRequest) (*stockdv1.GetAvailabilityResponse, error) {
	f.mu.Lock()
	f.reads++
	f.mu.Unlock()
	return &stockdv1.GetAvailabilityResponse{}, nil
}

func (f *fakeNode) readCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}
