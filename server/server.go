package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

// DefaultReadWaitTimeout bounds how long a read waits for its min_revision
// when Config.ReadWaitTimeout is zero.
const DefaultReadWaitTimeout = 2 * time.Second

// Proposer puts commands into the replicated log. Propose returns once the
// command is applied, with the state machine's answer; a business refusal is
// Result.Err, while an error return means the command's fate is not known to
// be decided (not leader, stopped, queue full, context done). WaitApplied
// returns once the local state machine has applied rev, or with an error when
// ctx ends first. Both are called from many goroutines at once.
type Proposer interface {
	Propose(ctx context.Context, cmd *logv1.Command) (store.Result, error)
	WaitApplied(ctx context.Context, rev store.Revision) error
}

// Reader is the local state machine's read side; *store.Machine satisfies it.
// Every method is called from many goroutines at once.
type Reader interface {
	AppliedIndex() store.Revision
	Availability(ch store.ChannelID, sku store.SKU, dst *store.SKUAvailability) error
	// ReadAtomic runs read (again, if needed) so that it sees all or nothing
	// of each bulk command such as a Backfill commit.
	ReadAtomic(read func() error) error
	Reservation(ch store.ChannelID, id store.ReservationID) (store.Reservation, error)
	Locations() []store.Location
	Channels() []store.Channel
	SKUs(item store.ItemID) []store.SKUMapping
	LocationGroups() []store.LocationGroup
	Buffers(item store.ItemID) []store.BufferRule
	Incoming(item store.ItemID) []store.IncomingLine
	Reservations(q store.ReservationQuery) (page []store.Reservation, more bool)
	Outbox(afterSeq uint64, limit int) []store.OutboxEntry
	Order(ch store.ChannelID, orderRef string) (store.OutboxEntry, error)
	OutboxStatus() store.OutboxStatus
	Rejected(limit int) ([]store.RejectedRow, []store.RejectedCount)
	Counters(item store.ItemID, loc store.LocationID) ([]store.CounterCopy, store.Revision)
}

// Config is what New needs. Proposer and Reader are required.
type Config struct {
	// Proposer proposes write commands and waits for revisions.
	Proposer Proposer
	// Reader serves reads from the local state machine.
	Reader Reader
	// Cluster serves the Cluster service and the read index of linearizable
	// reads. When nil, the Cluster service is not registered (calls answer
	// UNIMPLEMENTED) and a linearizable read answers FAILED_PRECONDITION.
	Cluster Cluster
	// Logger receives internal error details; nil discards them.
	Logger *slog.Logger
	// Unavailable lists sentinel errors that mean "try again, maybe on
	// another node" (no leader, shutting down); matched with errors.Is and
	// answered UNAVAILABLE.
	Unavailable []error
	// Exhausted lists sentinel errors that mean "too much load" (queue full,
	// apply lag too large); matched with errors.Is and answered
	// RESOURCE_EXHAUSTED.
	Exhausted []error
	// Precondition lists sentinel errors that mean "the cluster's state
	// forbids this for now" (a command needs a feature version some voter
	// lacks); matched with errors.Is and answered FAILED_PRECONDITION.
	Precondition []error
	// ReadWaitTimeout bounds how long a read waits for its min_revision
	// before answering UNAVAILABLE, and a linearizable read's barrier and
	// wait together; zero means DefaultReadWaitTimeout.
	ReadWaitTimeout time.Duration
	// SnapshotDir is where SaveSnapshot spools a snapshot before streaming
	// it (it needs room for one snapshot per concurrent call); empty means
	// os.TempDir().
	SnapshotDir string
	// CatchUpOnStart holds every read (and health at NOT_SERVING) until
	// CatchUp has returned; see catchup.go. Needs Cluster.
	CatchUpOnStart bool
	// WatchBufferSKUs is how many distinct SKUs may wait in one Watch
	// stream's buffer before it gets a resync; zero means
	// DefaultWatchBufferSKUs. WatchProgressInterval is how often an idle
	// Watch stream is sent the revision it is complete up to; zero means
	// DefaultWatchProgressInterval. Watch, ListChanges and ListAvailability
	// need a Reader that is also a ChangeReader (watchhub.go).
	WatchBufferSKUs       int
	WatchProgressInterval time.Duration
}

// Server holds the stockd gRPC services. Its methods are safe for concurrent
// use once Register has run.
type Server struct {
	proposer     Proposer
	reader       Reader
	cluster      Cluster
	log          *slog.Logger
	unavailable  []error
	exhausted    []error
	precondition []error
	readWait     time.Duration
	snapshotDir  string
	health       *health.Server
	// draining is closed by Drain (once): streams that would otherwise wait
	// for new revisions forever (PullOrders with follow) end on it.
	draining  chan struct{}
	drainOnce sync.Once
	// caughtUp is closed once reads may be answered: at once, or by CatchUp
	// with Config.CatchUpOnStart.
	caughtUp chan struct{}
	// watch is the Watch hub (watchhub.go), nil without a ChangeReader.
	watch         *watchHub
	watchBuffer   int
	watchProgress time.Duration
}

// New returns a Server over cfg; it starts nothing. It panics if cfg.Proposer
// or cfg.Reader is nil, a wiring mistake no request could recover from.
func New(cfg Config) *Server {
	if cfg.Proposer == nil || cfg.Reader == nil {
		panic("server: Config.Proposer and Config.Reader are required")
	}
	s := &Server{
		proposer:     cfg.Proposer,
		reader:       cfg.Reader,
		cluster:      cfg.Cluster,
		log:          cfg.Logger,
		unavailable:  append([]error(nil), cfg.Unavailable...),
		exhausted:    append([]error(nil), cfg.Exhausted...),
		precondition: append([]error(nil), cfg.Precondition...),
		readWait:     cfg.ReadWaitTimeout,
		snapshotDir:  cfg.SnapshotDir,
		health:       health.NewServer(),
		draining:     make(chan struct{}),
		caughtUp:     make(chan struct{}),
	}
	if !cfg.CatchUpOnStart {
		close(s.caughtUp)
	}
	if cr, ok := cfg.Reader.(ChangeReader); ok {
		s.watch = newWatchHub(s, cr)
	}
	s.watchBuffer, s.watchProgress = cfg.WatchBufferSKUs, cfg.WatchProgressInterval
	if s.watchBuffer <= 0 {
		s.watchBuffer = DefaultWatchBufferSKUs
	}
	if s.watchProgress <= 0 {
		s.watchProgress = DefaultWatchProgressInterval
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.readWait <= 0 {
		s.readWait = DefaultReadWaitTimeout
	}
	return s
}

// serviceNames are the services Register registers and health reports on,
// besides "" (the whole server).
func (s *Server) serviceNames() []string {
	names := []string{
		stockdv1.Inventory_ServiceDesc.ServiceName,
		stockdv1.Erp_ServiceDesc.ServiceName,
		stockdv1.Admin_ServiceDesc.ServiceName,
	}
	if s.cluster != nil {
		names = append(names, stockdv1.Cluster_ServiceDesc.ServiceName)
	}
	return names
}

// Register registers Inventory, Erp, Admin, Cluster (when Config.Cluster is
// set), gRPC health (SERVING for "" and each service) and reflection on gs.
// Call it once, before gs.Serve; gs should be built with ServerOptions so
// every service, health included, runs behind the same interceptor chain.
func (s *Server) Register(gs *grpc.Server) {
	stockdv1.RegisterInventoryServer(gs, &inventory{s: s})
	stockdv1.RegisterErpServer(gs, &erp{s: s})
	stockdv1.RegisterAdminServer(gs, &admin{s: s})
	if s.cluster != nil {
		stockdv1.RegisterClusterServer(gs, &clusterService{s: s})
	}
	healthpb.RegisterHealthServer(gs, s.health)
	reflection.Register(gs)
	st := healthpb.HealthCheckResponse_SERVING
	select {
	case <-s.caughtUp:
	default:
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	s.setServing(st)
}

// setServing sets the health of the server and every service.
func (s *Server) setServing(st healthpb.HealthCheckResponse_ServingStatus) {
	s.health.SetServingStatus("", st)
	for _, name := range s.serviceNames() {
		s.health.SetServingStatus(name, st)
	}
}

// Drain marks the server and every service NOT_SERVING in the health service,
// so balancers stop sending new calls before the grpc.Server stops, and ends
// the open PullOrders streams that follow the outbox and the Watch streams
// (UNAVAILABLE: the client reconnects, to another node if it has one), so a
// graceful stop does not wait for them. Other calls in flight finish. It
// cannot be undone; a second call does nothing more.
func (s *Server) Drain() {
	s.health.Shutdown()
	s.drainOnce.Do(func() { close(s.draining) })
}

// propose validates cmd, proposes it and returns its result; the returned
// error is an input error found before proposing, the proposer's error, or the
// state machine's refusal (Result.Err), in that order.
func (s *Server) propose(ctx context.Context, cmd *logv1.Command) (store.Result, error) {
	if err := store.Validate(cmd); err != nil {
		return store.Result{}, err
	}
	res, err := s.proposer.Propose(ctx, cmd)
	if ss := cmd.GetSetStock(); err != nil && ss.GetSameVersionStale() && firstMatch(err, s.precondition) != nil {
		// A voter still runs a build without feature 3 (a rolling upgrade):
		// the leader refused before proposing, so propose the older form,
		// which only differs for a row under the held version with another
		// count (rejected instead of ignored as stale).
		older := &logv1.SetStock{Rows: ss.GetRows(), AbsorbedMark: ss.GetAbsorbedMark()}
		res, err = s.proposer.Propose(ctx, &logv1.Command{Kind: &logv1.Command_SetStock{SetStock: older}})
	}
	if err != nil {
		return store.Result{}, err
	}
	s.hintLeader(ctx)
	if res.Err != nil {
		return res, res.Err
	}
	return res, nil
}

// LeaderHeader is the response header a follower puts on a write it
// forwarded: the leader's gRPC address, so a client that also talks to the
// leader can send its next writes there and skip the hop (api/client does).
const LeaderHeader = "stockd-leader"

// leaderHinter is a Proposer that forwards writes to another node
// (cluster.Node): LeaderGRPCAddr is that node's address, "" when the
// proposer itself leads or knows no leader.
type leaderHinter interface {
	LeaderGRPCAddr() string
}

// hintLeader sets LeaderHeader on a write's answer when another node leads
// now (so this node forwarded the write, or would forward the next one). A
// stream whose headers went out already keeps them (SetHeader fails and the
// hint is dropped: it is advice, never needed).
func (s *Server) hintLeader(ctx context.Context) {
	h, ok := s.proposer.(leaderHinter)
	if !ok {
		return
	}
	if addr := h.LeaderGRPCAddr(); addr != "" {
		_ = grpc.SetHeader(ctx, metadata.Pairs(LeaderHeader, addr))
	}
}

// errReadLag: this node did not apply a read's min_revision (or read index)
// within the bound. Wrapped as "min_revision: revision 9 not yet applied on
// this node", so the message names the field first.
var errReadLag = errors.New("not yet applied on this node")

// awaitRead returns once the local state machine may answer a read: the
// node has caught up after its start (catchup.go), and it has
// applied minRev and, when linearizable, the read index the Cluster
// confirms. Barrier and wait together take at most s.readWait; past it the
// read is UNAVAILABLE (try another node). The caller's own deadline or
// cancellation wins over the bound, so it keeps its own code.
func (s *Server) awaitRead(ctx context.Context, minRev store.Revision, linearizable bool) error {
	linearizable = linearizable && !brokenStaleRead // false but in bench/chaos's self-test (broken_stale_read.go)
	if err := s.awaitCaughtUp(ctx); err != nil {
		return err
	}
	if !linearizable && (minRev == 0 || s.reader.AppliedIndex() >= minRev) {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, s.readWait)
	defer cancel()
	rev, what := minRev, "min_revision: revision"
	if linearizable {
		if s.cluster == nil {
			return errLinearizableUnsupported
		}
		index, err := s.cluster.ReadBarrier(wctx)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return ctx.Err()
		case wctx.Err() != nil:
			// The bound, not the barrier, decided: err only echoes it.
			s.log.LogAttrs(ctx, slog.LevelDebug, "read barrier timed out", methodAttr(ctx), slog.Any("error", err))
			return fmt.Errorf("linearizable: %w", errReadIndexLag)
		default:
			return fmt.Errorf("linearizable: read barrier: %w", err)
		}
		if index > rev {
			rev, what = index, "linearizable: read index"
		}
	}
	return s.waitRevision(ctx, wctx, what, rev)
}

// waitRevision returns once the local state machine has applied rev or wctx,
// a child of ctx, ends; what names the field and the kind of rev in the lag
// error.
func (s *Server) waitRevision(ctx, wctx context.Context, what string, rev store.Revision) error {
	if rev == 0 || s.reader.AppliedIndex() >= rev {
		return nil
	}
	err := s.proposer.WaitApplied(wctx, rev)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case wctx.Err() != nil:
		return fmt.Errorf("%s %d %w", what, rev, errReadLag)
	}
	return fmt.Errorf("wait for revision %d: %w", rev, err)
}

// ServerOptions is ServerOptionsFor with only a logger: no auth (every call
// is let through), default limits.
func ServerOptions(logger *slog.Logger) []grpc.ServerOption {
	return ServerOptionsFor(ChainConfig{Logger: logger})
}

// ChainConfig configures the grpc.Server options ServerOptionsFor returns.
type ChainConfig struct {
	// Logger receives the call log and recovered panics; nil discards.
	Logger *slog.Logger
	// Auth, when set, authenticates every call by bearer token and enforces
	// roles, channels and rate limits (auth.go, permissions.go); nil lets
	// every call through (open mode).
	Auth *Authenticator
	// MaxRecvMsgBytes caps one incoming message; zero means
	// DefaultMaxRecvMsgBytes.
	MaxRecvMsgBytes int
	// GRPCMetrics, when set, counts and times every call (metrics.go),
	// right after recovery, so refused and failed calls count too.
	GRPCMetrics *grpcprom.ServerMetrics
}

// DefaultMaxRecvMsgBytes is the largest message a client may send by
// default (grpc's own default, 4 MiB): a 10,000-row SetStock batch fits;
// larger loads go through Backfill's chunks.
const DefaultMaxRecvMsgBytes = 4 << 20

// ServerOptionsFor returns the options for the grpc.Server that Register is
// given: message size limits, keepalive enforcement, and the interceptor
// chain, unary and stream alike: recovery outermost (a panic becomes INTERNAL
// "internal error"; the panic value and stack go to the log), then the gRPC
// metrics (with GRPCMetrics), then logging of
// each finished call (method, principal, code, duration; never a token) at
// debug level, or warn for INTERNAL, UNKNOWN and DATA_LOSS, then, with Auth,
// authentication and roles, the principal's rate limit and its channel.
// Request validation runs in the handlers, before anything is proposed. When
// the logger does not enable debug, a unary call that ends below its code's
// level skips the logging middleware entirely, so the hot path pays for no
// log fields.
func ServerOptionsFor(cfg ChainConfig) []grpc.ServerOption {
	unary, stream := interceptors(cfg.Logger, cfg.Auth, cfg.GRPCMetrics)
	maxRecv := cfg.MaxRecvMsgBytes
	if maxRecv <= 0 {
		maxRecv = DefaultMaxRecvMsgBytes
	}
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxRecv),
		// gRPC's proto codec, giving pooled GetAvailability messages back
		// once marshalled (answers.go).
		grpc.ForceServerCodecV2(newAnswerCodec()),
		// A client may ping at most every 10 s (more is abuse: the
		// connection is closed with ENHANCE_YOUR_CALM), also with no call
		// open; the server pings an idle client after 2 min and drops it if
		// no answer comes in 20 s, so dead peers do not hold streams.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Minute, Timeout: 20 * time.Second}),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		// Reused handler goroutines keep the stacks they grew. A fresh
		// goroutine per call starts at 8 KiB and copies its stack as a
		// write goes through the chain, the store and (on a follower) the
		// forwarding call: 7.6% of a follower's CPU under checkout. Calls
		// beyond the workers still get goroutines of their own. The option
		// is experimental in grpc-go; losing it would cost only that CPU.
		grpc.NumStreamWorkers(streamWorkers),
	}
}

// streamWorkers is how many goroutines serve calls: enough for every
// caller of a 64-caller benchmark plus what followers forward to a leader.
const streamWorkers = 128

// interceptors returns the unary and stream chains, outermost first.
func interceptors(logger *slog.Logger, a *Authenticator, gm *grpcprom.ServerMetrics) ([]grpc.UnaryServerInterceptor, []grpc.StreamServerInterceptor) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	rec := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		method, _ := grpc.Method(ctx)
		logger.LogAttrs(ctx, slog.LevelError, "panic in grpc handler",
			slog.String("grpc.method", method),
			slog.String("panic", fmt.Sprint(p)),
			slog.String("stack", string(debug.Stack())))
		return status.Error(codes.Internal, internalMessage)
	})
	logOpts := []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithLevels(logLevel),
		logging.WithDurationField(logging.DurationToDurationField),
		// Logging runs before auth, so the principal is looked up from
		// the token here too (cached after its first call).
		logging.WithFieldsFromContext(func(ctx context.Context) logging.Fields {
			if name := a.callerName(ctx); name != "" {
				return logging.Fields{"principal", name}
			}
			return nil
		}),
	}
	unary := []grpc.UnaryServerInterceptor{recovery.UnaryServerInterceptor(rec)}
	stream := []grpc.StreamServerInterceptor{recovery.StreamServerInterceptor(rec)}
	if m := gm; m != nil {
		unary = append(unary, m.UnaryServerInterceptor())
		stream = append(stream, m.StreamServerInterceptor())
	}
	unary = append(unary, unaryLogging(logger, logOpts))
	stream = append(stream, logging.StreamServerInterceptor(slogAdapter(logger), logOpts...))
	if a != nil {
		au, as := authInterceptors(a)
		unary = append(unary, au...)
		stream = append(stream, as...)
	}
	return unary, stream
}

// logLevel is the level a finished call is logged at, by its code.
func logLevel(c codes.Code) logging.Level {
	switch c {
	case codes.Internal, codes.Unknown, codes.DataLoss:
		return logging.LevelWarn
	}
	return logging.LevelDebug
}

// slogAdapter lets the logging middleware write to logger.
func slogAdapter(logger *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		logger.Log(ctx, slog.Level(lvl), msg, fields...)
	})
}

// unaryLogging is the logging middleware behind a gate: with debug enabled
// every call goes through it; otherwise the handler runs bare and only a call
// whose code's level is enabled is replayed through the middleware (with its
// real duration) to be logged.
func unaryLogging(logger *slog.Logger, opts []logging.Option) grpc.UnaryServerInterceptor {
	full := logging.UnaryServerInterceptor(slogAdapter(logger), opts...)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if logger.Enabled(ctx, slog.LevelDebug) {
			return full(ctx, req, info, handler)
		}
		start := time.Now()
		resp, err := handler(ctx, req)
		if err == nil || !logger.Enabled(ctx, slog.Level(logLevel(status.Code(err)))) {
			return resp, err
		}
		// Fields in ctx win over the ones the replay would measure itself.
		ctx = logging.InjectFields(ctx, logging.Fields{
			"grpc.start_time", start.Format(time.RFC3339),
			"grpc.duration", time.Since(start).String(),
		})
		return full(ctx, req, info, func(context.Context, any) (any, error) { return resp, err })
	}
}
