package client

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/stockd/stockd/api/stockdv1"
)

// always answers every call with err.
func always(err error) func(context.Context, int) error {
	return func(context.Context, int) error { return err }
}

// failFirst answers the first len(errs) calls with errs in turn, then OK.
func failFirst(errs ...error) func(context.Context, int) error {
	return func(_ context.Context, n int) error {
		if n <= len(errs) {
			return errs[n-1]
		}
		return nil
	}
}

// checkSame fails unless every request in got equals want.
func checkSame(t *testing.T, node string, got []*stockdv1.ReserveRequest, want *stockdv1.ReserveRequest) {
	t.Helper()
	for i, r := range got {
		if !proto.Equal(r, want) {
			t.Errorf("%s request %d: got %v, want the request sent unchanged %v", node, i+1, r, want)
		}
	}
}

func TestUnavailableNodeIsLeftForTheNextWithTheSameID(t *testing.T) {
	a := &fakeNode{answer: always(status.Error(codes.Unavailable, "no leader"))}
	b := &fakeNode{}
	c, p := newTestClient(t, Config{Addrs: []string{a.start(t), b.start(t)}})
	req := reserveRequest("cart-1")

	resp, err := c.Inventory().Reserve(t.Context(), req)
	if err != nil {
		t.Fatalf("Reserve(cart-1) via [unavailable, ok]: got %v, want OK", err)
	}
	if resp.GetRevision() != 42 {
		t.Errorf("Reserve(cart-1): got revision %d, want 42 from the second node", resp.GetRevision())
	}
	if got := a.calls(); got != 1 {
		t.Errorf("first node: got %d calls, want 1", got)
	}
	if got := b.seen(); len(got) != 1 {
		t.Fatalf("second node: got %d calls, want 1", len(got))
	}
	checkSame(t, "first node", a.seen(), req)
	checkSame(t, "second node", b.seen(), req)
	if got := len(p.taken()); got != 1 {
		t.Errorf("pauses: got %d, want 1 between the two attempts", got)
	}

	// The client stays on the node that answered.
	if _, err := c.Inventory().Reserve(t.Context(), reserveRequest("cart-2")); err != nil {
		t.Fatalf("Reserve(cart-2): got %v, want OK", err)
	}
	if got, want := [2]int{a.calls(), b.calls()}, [2]int{1, 2}; got != want {
		t.Errorf("calls on [first, second] node after a second Reserve: got %v, want %v", got, want)
	}
}

func TestNodeThatIsDownIsSkipped(t *testing.T) {
	b := &fakeNode{}
	c, _ := newTestClient(t, Config{Addrs: []string{downAddr(t), b.start(t)}})
	req := reserveRequest("cart-1")
	if _, err := c.Inventory().Reserve(t.Context(), req); err != nil {
		t.Fatalf("Reserve(cart-1) via [down, ok]: got %v, want OK", err)
	}
	if got := b.calls(); got != 1 {
		t.Errorf("second node: got %d calls, want 1", got)
	}
	checkSame(t, "second node", b.seen(), req)
}

func TestFailingTwiceThenSucceedingTakesThreeIdenticalAttempts(t *testing.T) {
	n := &fakeNode{answer: failFirst(
		status.Error(codes.Unavailable, "node stopped"),
		status.Error(codes.ResourceExhausted, "proposal queue full"),
	)}
	c, p := newTestClient(t, Config{Addrs: []string{n.start(t)}, BackoffBase: 10 * time.Millisecond, BackoffMax: time.Second})
	req := reserveRequest("cart-1")
	if _, err := c.Inventory().Reserve(t.Context(), req); err != nil {
		t.Fatalf("Reserve(cart-1) on [unavailable, exhausted, ok]: got %v, want OK", err)
	}
	if got := n.calls(); got != 3 {
		t.Fatalf("attempts: got %d, want 3", got)
	}
	checkSame(t, "node", n.seen(), req)
	got := p.taken()
	if len(got) != 2 {
		t.Fatalf("pauses: got %v, want 2", got)
	}
	// Steps 10 ms then 20 ms, each with up to half taken off.
	for i, want := range []time.Duration{10 * time.Millisecond, 20 * time.Millisecond} {
		if got[i] < want/2 || got[i] > want {
			t.Errorf("pause %d: got %v, want within [%v, %v]", i+1, got[i], want/2, want)
		}
	}
}

func TestAnswersThatAreNotRetriedTakeOneAttempt(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"aborted (compare-and-reserve lost) is not retried", status.Error(codes.Aborted, "lines[0].expected_mod_revision: figure moved")},
		{"already exists (same id, other payload) is not retried", status.Error(codes.AlreadyExists, "reservation_id: used with another payload")},
		{"invalid argument is not retried", status.Error(codes.InvalidArgument, "lines[0].quantity: must be > 0, got 0")},
		{"not found is not retried", status.Error(codes.NotFound, "unknown channel")},
		{"failed precondition (short stock) is not retried", status.Error(codes.FailedPrecondition, "insufficient stock")},
		{"permission denied is not retried", status.Error(codes.PermissionDenied, "channel web")},
		{"unauthenticated is not retried", status.Error(codes.Unauthenticated, "bad token")},
		{"internal is not retried", status.Error(codes.Internal, "internal error")},
		{"a message over grpc's size limit is not retried", status.Error(codes.ResourceExhausted, "grpc: received message larger than max (5242985 vs. 4194304)")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &fakeNode{answer: always(tc.err)}
			b := &fakeNode{answer: always(tc.err)}
			c, p := newTestClient(t, Config{Addrs: []string{a.start(t), b.start(t)}})
			_, err := c.Inventory().Reserve(t.Context(), reserveRequest("cart-1"))
			if got, want := status.Code(err), status.Code(tc.err); got != want {
				t.Errorf("Reserve answered %v: got code %v, want %v", tc.err, got, want)
			}
			if got := a.calls() + b.calls(); got != 1 {
				t.Errorf("Reserve answered %v: got %d attempts, want 1", tc.err, got)
			}
			if got := p.taken(); len(got) != 0 {
				t.Errorf("Reserve answered %v: got pauses %v, want none", tc.err, got)
			}
		})
	}
}

func TestMaxAttemptsBoundsRetries(t *testing.T) {
	n := &fakeNode{answer: always(status.Error(codes.Unavailable, "no leader"))}
	c, _ := newTestClient(t, Config{Addrs: []string{n.start(t)}, MaxAttempts: 3})
	_, err := c.Inventory().Reserve(t.Context(), reserveRequest("cart-1"))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Reserve with MaxAttempts 3 on a node always unavailable: got %v, want UNAVAILABLE", err)
	}
	if got := n.calls(); got != 3 {
		t.Errorf("attempts with MaxAttempts 3: got %d, want 3", got)
	}
}

// retryAfter is RESOURCE_EXHAUSTED with a RetryInfo of d.
func retryAfter(t *testing.T, d time.Duration) error {
	t.Helper()
	st, err := status.New(codes.ResourceExhausted, "rate limited").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
	if err != nil {
		t.Fatalf("WithDetails: %v", err)
	}
	return st.Err()
}

func TestRetryInfoDelayIsHonoured(t *testing.T) {
	n := &fakeNode{answer: failFirst(retryAfter(t, 250*time.Millisecond))}
	c, p := newTestClient(t, Config{Addrs: []string{n.start(t)}, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond})
	if _, err := c.Inventory().Reserve(t.Context(), reserveRequest("cart-1")); err != nil {
		t.Fatalf("Reserve on [retry after 250ms, ok]: got %v, want OK", err)
	}
	if got := n.calls(); got != 2 {
		t.Errorf("attempts: got %d, want 2", got)
	}
	if got := p.taken(); len(got) != 1 || got[0] != 250*time.Millisecond {
		t.Errorf("pauses with a 1 ms backoff and RetryInfo 250ms: got %v, want [250ms]", got)
	}
}

func TestRetryInfoPastTheDeadlineEndsTheCall(t *testing.T) {
	n := &fakeNode{answer: failFirst(retryAfter(t, time.Hour))}
	c, p := newTestClient(t, Config{Addrs: []string{n.start(t)}})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err := c.Inventory().Reserve(ctx, reserveRequest("cart-1"))
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("Reserve on [retry after 1h] with 30 s left: got %v, want RESOURCE_EXHAUSTED", err)
	}
	if got := n.calls(); got != 1 {
		t.Errorf("attempts: got %d, want 1", got)
	}
	if got := p.taken(); len(got) != 0 {
		t.Errorf("pauses: got %v, want none (it would end after the deadline)", got)
	}
}

func TestCallerDeadlineBoundsRetries(t *testing.T) {
	n := &fakeNode{answer: always(status.Error(codes.Unavailable, "no leader"))}
	c, _ := newTestClient(t, Config{Addrs: []string{n.start(t)}, MaxAttempts: 100,
		BackoffBase: 20 * time.Millisecond, BackoffMax: 20 * time.Millisecond})
	c.sleep = sleep // real pauses: the deadline, not MaxAttempts, must end the call
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Inventory().Reserve(ctx, reserveRequest("cart-1"))
	took := time.Since(start)
	if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
		t.Errorf("Reserve on an always unavailable node with 300 ms: got %v, want UNAVAILABLE or DEADLINE_EXCEEDED", err)
	}
	if got := n.calls(); got < 2 || got >= 100 {
		t.Errorf("attempts within 300 ms at 10-20 ms pauses: got %d, want at least 2 and below MaxAttempts 100 (about 20 fit)", got)
	}
	if took > 5*time.Second {
		t.Errorf("Reserve with a 300 ms deadline: took %v, want it to end near the deadline", took)
	}
}

func TestAttemptThatTimesOutIsRetriedWhileTheCallerHasTime(t *testing.T) {
	hung := &fakeNode{answer: func(ctx context.Context, _ int) error {
		<-ctx.Done() // a node that never answers
		return ctx.Err()
	}}
	b := &fakeNode{}
	c, _ := newTestClient(t, Config{Addrs: []string{hung.start(t), b.start(t)}, AttemptTimeout: 100 * time.Millisecond})
	req := reserveRequest("cart-1")
	if _, err := c.Inventory().Reserve(t.Context(), req); err != nil {
		t.Fatalf("Reserve via [hung, ok] with AttemptTimeout 100ms: got %v, want OK", err)
	}
	if got := [2]int{hung.calls(), b.calls()}; got != [2]int{1, 1} {
		t.Errorf("calls on [hung, ok]: got %v, want [1 1]", got)
	}
	checkSame(t, "hung node", hung.seen(), req)
	checkSame(t, "second node", b.seen(), req)
}

func TestServerDeadlineExceededIsRetriedWithTheSameID(t *testing.T) {
	// The node saw the attempt's deadline pass (a per-attempt bound, say)
	// while the caller's own deadline still has time: the write's fate is
	// unknown, so it is resent unchanged.
	n := &fakeNode{answer: failFirst(status.Error(codes.DeadlineExceeded, "forward reserve: context deadline exceeded"))}
	c, _ := newTestClient(t, Config{Addrs: []string{n.start(t)}})
	req := reserveRequest("cart-1")
	if _, err := c.Inventory().Reserve(t.Context(), req); err != nil {
		t.Fatalf("Reserve on [deadline exceeded, ok]: got %v, want OK", err)
	}
	if got := n.calls(); got != 2 {
		t.Errorf("attempts: got %d, want 2", got)
	}
	checkSame(t, "node", n.seen(), req)
}

func TestCallWithoutDeadlineGetsTheDefault(t *testing.T) {
	n := &fakeNode{}
	c, _ := newTestClient(t, Config{Addrs: []string{n.start(t)}, Timeout: 7 * time.Second})
	if _, err := c.Inventory().Reserve(context.Background(), reserveRequest("cart-1")); err != nil {
		t.Fatalf("Reserve without deadline: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
	defer cancel()
	if _, err := c.Inventory().Reserve(ctx, reserveRequest("cart-2")); err != nil {
		t.Fatalf("Reserve with a 1 h deadline: %v", err)
	}
	n.mu.Lock()
	got := append([]time.Duration(nil), n.deadlines...)
	n.mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("calls: got %d, want 2", len(got))
	}
	if got[0] <= 0 || got[0] > 7*time.Second {
		t.Errorf("time left at the node for a call without deadline, Timeout 7s: got %v, want within (0, 7s]", got[0])
	}
	if got[1] <= 7*time.Second {
		t.Errorf("time left at the node for a call with a 1 h deadline: got %v, want the caller's own (> 7s)", got[1])
	}
}

func TestTokenIsSentAsBearerOnEveryAttempt(t *testing.T) {
	n := &fakeNode{answer: failFirst(status.Error(codes.Unavailable, "no leader"))}
	c, _ := newTestClient(t, Config{Addrs: []string{n.start(t)}, Token: "x"})
	if _, err := c.Inventory().Reserve(t.Context(), reserveRequest("cart-1")); err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	n.mu.Lock()
	got := append([][]string(nil), n.auth...)
	n.mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("attempts: got %d, want 2", len(got))
	}
	for i, a := range got {
		if len(a) != 1 || a[0] != "Bearer x" {
			t.Errorf("attempt %d with Token x: got authorization %q, want [\"Bearer x\"]", i+1, a)
		}
	}
}

func TestNoTokenNoAuthorization(t *testing.T) {
	n := &fakeNode{}
	c, _ := newTestClient(t, Config{Addrs: []string{n.start(t)}})
	if _, err := c.Inventory().Reserve(t.Context(), reserveRequest("cart-1")); err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	n.mu.Lock()
	got := n.auth[0]
	n.mu.Unlock()
	if len(got) != 0 {
		t.Errorf("authorization without a Token: got %q, want none", got)
	}
}

func TestStreamsAreNotRetried(t *testing.T) {
	a := &fakeNode{answer: always(status.Error(codes.Unavailable, "server shutting down"))}
	b := &fakeNode{}
	c, _ := newTestClient(t, Config{Addrs: []string{a.start(t), b.start(t)}})
	stream, err := c.Inventory().Watch(t.Context(), &stockdv1.WatchRequest{Channel: "web"})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("Watch Recv on a draining node: got %v, want UNAVAILABLE", err)
	}
	a.mu.Lock()
	got := [2]int{a.watches, 0}
	a.mu.Unlock()
	b.mu.Lock()
	got[1] = b.watches
	b.mu.Unlock()
	if got != [2]int{1, 0} {
		t.Errorf("Watch streams on [draining, ok]: got %v, want [1 0]", got)
	}
}

func TestConcurrentCallsMoveOnTogether(t *testing.T) {
	a := &fakeNode{answer: always(status.Error(codes.Unavailable, "no leader"))}
	b := &fakeNode{}
	c, _ := newTestClient(t, Config{Addrs: []string{a.start(t), downAddr(t), b.start(t)}, MaxAttempts: 10})
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = c.Inventory().Reserve(t.Context(), reserveRequest("cart-"+string(rune('a'+i))))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("concurrent Reserve %d via [unavailable, down, ok]: got %v, want OK", i, err)
		}
	}
	if got := b.calls(); got != len(errs) {
		t.Errorf("calls on the working node: got %d, want %d", got, len(errs))
	}
}

func TestCloseEndsEveryConnection(t *testing.T) {
	n := &fakeNode{}
	addr := n.start(t)
	ignore := goleak.IgnoreCurrent() // the node's own goroutines
	c, err := New(t.Context(), Config{Addrs: []string{addr, downAddr(t)}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if _, err := c.Inventory().Reserve(t.Context(), reserveRequest("cart-1")); err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	goleak.VerifyNone(t, ignore)
	if err := c.Close(); err != nil {
		t.Errorf("second Close: got %v, want nil", err)
	}
	_, err = c.Inventory().Reserve(t.Context(), reserveRequest("cart-2"))
	if status.Code(err) != codes.Canceled {
		t.Errorf("Reserve after Close: got %v, want CANCELED", err)
	}
	if got := n.calls(); got != 1 {
		t.Errorf("calls after Close: got %d in all, want 1 (the one before)", got)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	ended, cancel := context.WithCancel(t.Context())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		cfg  Config
	}{
		{"no address", t.Context(), Config{}},
		{"an empty address", t.Context(), Config{Addrs: []string{"127.0.0.1:1", ""}}},
		{"a token over plaintext without InsecureToken", t.Context(), Config{Addrs: []string{"127.0.0.1:1"}, Token: "x"}},
		{"a negative timeout", t.Context(), Config{Addrs: []string{"127.0.0.1:1"}, Timeout: -time.Second}},
		{"negative attempts", t.Context(), Config{Addrs: []string{"127.0.0.1:1"}, MaxAttempts: -1}},
		{"a backoff max below its base", t.Context(), Config{Addrs: []string{"127.0.0.1:1"}, BackoffBase: time.Second, BackoffMax: time.Millisecond}},
		{"an ended context", ended, Config{Addrs: []string{"127.0.0.1:1"}}},
	} {
		t.Run(tc.name+" is refused", func(t *testing.T) {
			c, err := New(tc.ctx, tc.cfg)
			if err == nil {
				t.Errorf("New(%+v): got a client, want an error", tc.cfg)
				if err := c.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			}
		})
	}
}
