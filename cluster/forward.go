package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/api/peerv1"
	"github.com/stockd/stockd/store"
)

// peerPool holds one gRPC client connection per peer address, made on first
// use and closed by Close, with Config.PeerDialOptions (TLS, a node token).
type peerPool struct {
	// dialMap redirects dials (fault tests only); read-only.
	dialMap DialMap
	// opts are Config.PeerDialOptions; read-only.
	opts []grpc.DialOption

	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	closed bool
}

func newPeerPool(dialMap DialMap, opts []grpc.DialOption) *peerPool {
	return &peerPool{dialMap: dialMap, opts: opts, conns: make(map[string]*grpc.ClientConn)}
}

// client returns a Peer client for addr, or ErrStopped once the pool is closed.
func (p *peerPool) client(addr string) (peerv1.PeerClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrStopped
	}
	cc, ok := p.conns[addr]
	if !ok {
		var err error
		opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
			// A forwarded command's answer has a row per input row: up to
			// 10,000 rows with reasons can pass grpc's 4 MB default.
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxPeerMessage))},
			p.opts...) // later options win: the configured credentials
		if p.dialMap[addr] != "" {
			// A proxy stands in for addr (fault tests): TLS still checks
			// the certificate against addr's host.
			opts = append(opts, grpc.WithAuthority(addr))
		}
		cc, err = grpc.NewClient(p.dialMap.target(addr), opts...)
		if err != nil {
			return nil, fmt.Errorf("dial peer %s: %w", addr, err)
		}
		p.conns[addr] = cc
	}
	return peerv1.NewPeerClient(cc), nil
}

// close closes every connection; in-flight calls end with Canceled.
func (p *peerPool) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	var errs []error
	for addr, cc := range p.conns {
		if err := cc.Close(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		}
	}
	clear(p.conns)
	return errors.Join(errs...)
}

// maxPeerMessage is the largest answer a node takes from a peer.
const maxPeerMessage = 64 << 20

// forwardPropose sends cmd once to the leader's Peer.Propose.
func (n *Node) forwardPropose(ctx context.Context, rn *running, li leaderInfo, cmd *logv1.Command) (store.Result, error) {
	c, err := rn.peers.client(li.grpcAddr)
	if err != nil {
		return store.Result{}, fmt.Errorf("forward propose: %w", err)
	}
	resp, err := c.Propose(ctx, &peerv1.ProposeRequest{Command: cmd})
	if err != nil {
		return store.Result{}, n.fromStatus(ctx, "forward propose to "+li.id, err)
	}
	return store.DecodeResult(resp.GetResult()), nil
}

// fromStatus maps a peer's gRPC error back to this package's sentinels.
func (n *Node) fromStatus(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	st, _ := status.FromError(err)
	var sentinel error
	switch st.Code() {
	case codes.Unavailable:
		sentinel = ErrNotLeader
		if reasonOf(st) == reasonNoLeader {
			sentinel = ErrNoLeader
		}
	case codes.ResourceExhausted:
		// Only the leader's own queue-full says "retry later"; grpc's
		// message-size limits answer the same code and mean a bug.
		if reasonOf(st) == reasonQueueFull {
			sentinel = ErrQueueFull
		}
	case codes.FailedPrecondition:
		if reasonOf(st) == reasonFeatureNotEnabled {
			sentinel = ErrFeatureNotEnabled
		}
	case codes.DeadlineExceeded:
		sentinel = context.DeadlineExceeded
	case codes.Canceled:
		select {
		case <-n.stopped:
			sentinel = ErrStopped
		default:
			sentinel = context.Canceled
		}
	}
	if sentinel == nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w: %s", op, sentinel, st.Message())
}

// toStatus maps this node's error to the gRPC status a peer's fromStatus
// reads back. Unavailable always means "try the leader again": the message
// says whether a leader is known.
func toStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNoLeader):
		return withReason(codes.Unavailable, reasonNoLeader, err)
	case errors.Is(err, ErrNotLeader), errors.Is(err, ErrStopped):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, ErrQueueFull):
		return withReason(codes.ResourceExhausted, reasonQueueFull, err)
	case errors.Is(err, ErrFeatureNotEnabled):
		return withReason(codes.FailedPrecondition, reasonFeatureNotEnabled, err)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	var rej *store.Rejection
	if errors.As(err, &rej) {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// Reasons a peer's status carries in an errdetails.ErrorInfo, so the
// receiving node tells sentinels apart by a field, not by message text.
const (
	errorDomain             = "stockd.peer"
	reasonNoLeader          = "NO_LEADER"
	reasonQueueFull         = "QUEUE_FULL"
	reasonFeatureNotEnabled = "FEATURE_NOT_ENABLED"
)

func withReason(code codes.Code, reason string, err error) error {
	st := status.New(code, err.Error())
	if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: errorDomain}); derr == nil {
		st = d
	}
	return st.Err()
}

// reasonOf returns the ErrorInfo reason a peer's status carries, or "".
func reasonOf(st *status.Status) string {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == errorDomain {
			return info.GetReason()
		}
	}
	return ""
}
