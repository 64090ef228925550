package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/stockd/stockd/api/stockdv1"
)

// Defaults for the zero fields of Config.
const (
	DefaultTimeout     = 10 * time.Second
	DefaultMaxAttempts = 5
	DefaultBackoffBase = 50 * time.Millisecond
	DefaultBackoffMax  = 1 * time.Second
)

// LeaderHeader is the response header in which a follower that forwarded a
// write names the leader's gRPC address (the server's LeaderHeader).
const LeaderHeader = "stockd-leader"

// Config is what New needs. Only Addrs is required.
type Config struct {
	// Addrs are the host:port gRPC addresses of the cluster's nodes, tried
	// in this order (see the package doc). At least one.
	Addrs []string
	// TransportCredentials secure the connections (TLS); nil means
	// plaintext.
	TransportCredentials credentials.TransportCredentials
	// DialOptions are appended after the Client's own (transport and
	// per-RPC credentials), so they may override them.
	DialOptions []grpc.DialOption
	// Token, when not empty, is sent on every call, retries and streams
	// included, as the metadata "authorization: Bearer <Token>".
	Token string
	// InsecureToken allows sending Token over plaintext (no
	// TransportCredentials), e.g. to a node on localhost or behind a TLS
	// terminating proxy. Without it New refuses a Token over plaintext.
	InsecureToken bool
	// Timeout is the overall deadline given to a unary call whose context
	// has none, all attempts and pauses included; zero means DefaultTimeout.
	// A context that has a deadline keeps it.
	Timeout time.Duration
	// AttemptTimeout, when positive, bounds each attempt: one that runs out
	// is retried (same request) while the overall deadline allows, so a
	// hung node is left for the next. Keep it above the server's own waits
	// (reads wait up to 2 s for min_revision, writes up to the apply timeout,
	// 5 s by default) or calls that would have succeeded are cut. Zero means
	// an attempt may use the whole remaining deadline.
	AttemptTimeout time.Duration
	// MaxAttempts bounds the attempts of one unary call, the first included;
	// 1 disables retries, zero means DefaultMaxAttempts.
	MaxAttempts int
	// BackoffBase and BackoffMax shape the pause before attempt n+1:
	// min(BackoffBase * 2^(n-1), BackoffMax), of which a random half is
	// taken off (jitter). Zero means DefaultBackoffBase / DefaultBackoffMax.
	BackoffBase time.Duration
	BackoffMax  time.Duration
}

// Client is a connection to a stockd cluster. It is safe for concurrent
// use; Close releases it.
type Client struct {
	conns          []*grpc.ClientConn
	cc             retrying
	timeout        time.Duration
	attemptTimeout time.Duration
	maxAttempts    int
	backoffBase    time.Duration
	backoffMax     time.Duration
	// current is the index in conns the next call starts at.
	current atomic.Uint64
	// addrs are Config.Addrs, in conns' order.
	addrs []string
	// leader is 1 + the index in conns of the node a follower last named
	// in LeaderHeader; 0 when none is known.
	leader atomic.Uint64
	// writes holds the methods (full names) that came back with
	// LeaderHeader: writes, which go to leader while it is known.
	writes sync.Map
	// sleep pauses for d or until ctx ends (then returns ctx's error);
	// tests replace it to observe the pauses.
	sleep func(ctx context.Context, d time.Duration) error
	// jitter maps a backoff step to the pause actually taken.
	jitter func(d time.Duration) time.Duration

	closeOnce sync.Once
	closeErr  error
}

// New returns a Client for cfg. It checks cfg and creates one
// grpc.ClientConn per address; it does not dial (connections are made on
// first use, so a node that is down at start is no error) and starts no
// goroutine of its own. ctx is not retained; New fails if it has already
// ended.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("client: Config.Addrs is empty")
	}
	for i, a := range cfg.Addrs {
		if a == "" {
			return nil, fmt.Errorf("client: Config.Addrs[%d] is empty", i)
		}
	}
	if cfg.Timeout < 0 || cfg.AttemptTimeout < 0 || cfg.BackoffBase < 0 || cfg.BackoffMax < 0 || cfg.MaxAttempts < 0 {
		return nil, errors.New("client: Config durations and MaxAttempts must not be negative")
	}
	if cfg.Token != "" && cfg.TransportCredentials == nil && !cfg.InsecureToken {
		return nil, errors.New("client: a Token over plaintext needs Config.InsecureToken (or set TransportCredentials)")
	}
	c := &Client{
		timeout:        orDefault(cfg.Timeout, DefaultTimeout),
		attemptTimeout: cfg.AttemptTimeout,
		maxAttempts:    cfg.MaxAttempts,
		backoffBase:    orDefault(cfg.BackoffBase, DefaultBackoffBase),
		backoffMax:     orDefault(cfg.BackoffMax, DefaultBackoffMax),
		sleep:          sleep,
		jitter:         equalJitter,
	}
	if c.maxAttempts == 0 {
		c.maxAttempts = DefaultMaxAttempts
	}
	if c.backoffMax < c.backoffBase {
		return nil, fmt.Errorf("client: Config.BackoffMax %v is below BackoffBase %v", c.backoffMax, c.backoffBase)
	}
	c.cc = retrying{c: c}
	c.addrs = slices.Clone(cfg.Addrs)

	tc := cfg.TransportCredentials
	if tc == nil {
		tc = insecure.NewCredentials()
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(tc)}
	if cfg.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{
			token:  cfg.Token,
			secure: cfg.TransportCredentials != nil || !cfg.InsecureToken,
		}))
	}
	opts = append(opts, cfg.DialOptions...)
	for _, addr := range cfg.Addrs {
		conn, err := grpc.NewClient(addr, opts...)
		if err != nil {
			closeErr := c.Close()
			return nil, errors.Join(fmt.Errorf("client: %s: %w", addr, err), closeErr)
		}
		c.conns = append(c.conns, conn)
	}
	return c, nil
}

// Close closes every connection; calls in flight and later calls fail with
// CANCELED. It returns once the connections are closed; a second Close
// returns the first one's result.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		var errs []error
		for _, conn := range c.conns {
			if err := conn.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// Inventory is the Inventory service through the retrying layer.
func (c *Client) Inventory() stockdv1.InventoryClient { return stockdv1.NewInventoryClient(c.cc) }

// Erp is the Erp service through the retrying layer.
func (c *Client) Erp() stockdv1.ErpClient { return stockdv1.NewErpClient(c.cc) }

// Admin is the Admin service through the retrying layer.
func (c *Client) Admin() stockdv1.AdminClient { return stockdv1.NewAdminClient(c.cc) }

// Cluster is the Cluster service through the retrying layer.
func (c *Client) Cluster() stockdv1.ClusterClient { return stockdv1.NewClusterClient(c.cc) }

// Conn is the retrying layer itself, for other services the nodes serve
// (grpc health, say): unary calls get the deadline and retries, streams go
// to the current address unretried.
func (c *Client) Conn() grpc.ClientConnInterface { return c.cc }

// retrying is the grpc.ClientConnInterface the service clients use.
type retrying struct{ c *Client }

// Invoke runs a unary call: deadline, attempts, backoff, address moves.
// req is marshalled again for each attempt, unchanged.
func (r retrying) Invoke(ctx context.Context, method string, req, reply any, opts ...grpc.CallOption) error {
	c := r.c
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	n := uint64(len(c.conns))
	at := c.current.Load() % n
	leader := c.leaderFor(method)
	if leader > 0 {
		at = leader - 1
	}
	for attempt := 1; ; attempt++ {
		err := c.attempt(ctx, at, method, req, reply, opts)
		if err == nil || Classify(err) != RetrySameID || attempt >= c.maxAttempts || ctx.Err() != nil {
			return err
		}
		if leader > 0 {
			// The leader it was told of failed: forget it (unless another
			// call has learnt a newer one) and go round the addresses.
			c.leader.CompareAndSwap(leader, 0)
			leader = 0
		}
		// Move on; a concurrent call that already moved past at wins.
		next := (at + 1) % n
		c.current.CompareAndSwap(at, next)
		at = next
		pause := c.jitter(c.backoff(attempt))
		if d := retryDelay(err); d > pause {
			pause = d
		}
		if deadline, _ := ctx.Deadline(); time.Until(deadline) <= pause {
			return err // waking after the deadline would only add a late DEADLINE_EXCEEDED
		}
		if c.sleep(ctx, pause) != nil {
			return err
		}
	}
}

// attempt makes one try on conns[at], within AttemptTimeout if set.
func (c *Client) attempt(ctx context.Context, at uint64, method string, req, reply any, opts []grpc.CallOption) error {
	if c.attemptTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.attemptTimeout)
		defer cancel()
	}
	var md metadata.MD
	// A copy, so the caller's opts never see this attempt's Header option.
	err := c.conns[at].Invoke(ctx, method, req, reply, append(opts[:len(opts):len(opts)], grpc.Header(&md))...)
	c.noteLeader(method, md)
	return err
}

// leaderFor is 1 + the index of the leader's connection when method is a
// write and a follower has named the leader; 0 otherwise.
func (c *Client) leaderFor(method string) uint64 {
	if _, ok := c.writes.Load(method); !ok {
		return 0
	}
	return c.leader.Load()
}

// noteLeader learns from a follower's answer (LeaderHeader) that method is
// a write and which of the configured nodes leads. A leader that is not one
// of Config.Addrs is not dialled: the follower keeps forwarding.
func (c *Client) noteLeader(method string, md metadata.MD) {
	v := md.Get(LeaderHeader)
	if len(v) == 0 {
		return
	}
	if i := slices.Index(c.addrs, v[0]); i >= 0 {
		if _, ok := c.writes.Load(method); !ok {
			c.writes.Store(method, struct{}{})
		}
		c.leader.Store(uint64(i) + 1)
	}
}

// NewStream opens a stream on the current address: no default deadline (a
// Watch or a following PullOrders lives as long as the caller wants) and no
// retry.
func (r retrying) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	c := r.c
	return c.conns[c.current.Load()%uint64(len(c.conns))].NewStream(ctx, desc, method, opts...)
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
