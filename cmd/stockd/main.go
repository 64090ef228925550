// Command stockd runs one stockd node: the gRPC API over a Raft-replicated
// in-memory state machine whose log and snapshots live in --data-dir.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"

	"github.com/stockd/stockd/api/peerv1"
	"github.com/stockd/stockd/cluster"
	"github.com/stockd/stockd/server"
	"github.com/stockd/stockd/store"
)

func main() {
	if os.Getenv("GOGC") == "" {
		// The state lives in the heap and is mostly long-lived. Collecting at
		// 5x the live heap instead of 2x cuts GC work: Reserve ~47% of the
		// health floor on one node (39-44% at GOGC=100) and, with three nodes
		// sharing two cores, p99 22-25 ms instead of 27-29 ms at GOGC=200.
		// It would cost memory at a large state (~900 B of RSS per counter at
		// a million counters): the heap governor (--memory-ratio) caps that.
		// GOGC in the environment overrides it.
		debug.SetGCPercent(400)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "stockd:", err)
		os.Exit(1)
	}
}

// options are stockd's flags.
type options struct {
	dataDir           string
	grpcAddr          string
	raftAddr          string
	nodeID            string
	grpcAdvertise     string
	raftAdvertise     string
	join              []string
	maxBatch          int
	linger            time.Duration
	snapshotThreshold uint64
	snapshotInterval  time.Duration
	trailingLogs      uint64
	logFormat         string
	logLevel          string
	shutdownTimeout   time.Duration
	pprofAddr         string
	memoryRatio       float64
	gcCPUTarget       float64
	changeLogEntries  int
	watchBuffer       int
	dialMap           cluster.DialMap
	httpAddr          string
	readyMaxLag       uint64
	readyMaxContact   time.Duration
	authFile          string
	insecure          bool
	tlsCert, tlsKey   string
	clientCA, peerCA  string
	peerTokenFile     string
	maxMessageBytes   int
}

// envPrefix names the environment variable of each flag: --data-dir is
// STOCKD_DATA_DIR. A flag on the command line wins over its variable.
const envPrefix = "STOCKD_"

// envName is the environment variable of a flag name.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("stockd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.dataDir, "data-dir", "./data", "folder for the raft log, stable store and snapshots (created if missing)")
	fs.StringVar(&o.grpcAddr, "grpc-addr", "127.0.0.1:7400", "address the gRPC API listens on (port 0 picks a free one)")
	fs.StringVar(&o.raftAddr, "raft-addr", "127.0.0.1:7401", "address raft peers reach this node on (port 0 picks a free one)")
	fs.StringVar(&o.nodeID, "node-id", "node-1", "this node's id in the raft configuration")
	fs.StringVar(&o.grpcAdvertise, "grpc-advertise", "", "gRPC address other nodes reach this node on (default: the bound --grpc-addr)")
	fs.StringVar(&o.raftAdvertise, "raft-advertise", "", "raft address other nodes reach this node on (default: the bound --raft-addr)")
	fs.Func("join", "comma-separated gRPC addresses of cluster members to join; a node with data ignores it, one without never bootstraps", func(v string) error {
		for _, a := range strings.Split(v, ",") {
			if a = strings.TrimSpace(a); a != "" {
				o.join = append(o.join, a)
			}
		}
		return nil
	})
	fs.IntVar(&o.maxBatch, "max-batch", 512, "most commands grouped into one log entry; 1 turns grouping off")
	fs.DurationVar(&o.linger, "linger", time.Millisecond, "longest wait for more commands before proposing an entry")
	fs.Uint64Var(&o.snapshotThreshold, "snapshot-threshold", 8192, "log entries between snapshots")
	fs.DurationVar(&o.snapshotInterval, "snapshot-interval", 30*time.Second, "how often to check whether a snapshot is due")
	fs.Uint64Var(&o.trailingLogs, "trailing-logs", cluster.DefaultTrailingLogs, "log entries kept behind a snapshot: a follower lagging by more catches up by a snapshot install")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "longest wait for in-flight calls on shutdown")
	fs.StringVar(&o.pprofAddr, "pprof-addr", "", "serve Go's net/http/pprof profiles on this address (off when empty)")
	fs.Float64Var(&o.memoryRatio, "memory-ratio", 1.5, "keep memory near this multiple of the live heap once that passes 192 MiB (a soft limit, wider while the collector is busy: --gc-cpu-target; 0 turns it off; ignored when GOMEMLIMIT is set)")
	fs.Float64Var(&o.gcCPUTarget, "gc-cpu-target", 0.05, "while the collector takes more than this share of the CPU GOMAXPROCS gives stockd, --memory-ratio widens (up to twice itself, within GOGC's bound) until it does not, and narrows back after; 0 holds it at --memory-ratio")
	fs.IntVar(&o.changeLogEntries, "change-log-entries", store.DefaultChangeLogEntries, "changes kept in memory for Watch resumes and ListChanges")
	fs.IntVar(&o.watchBuffer, "watch-buffer", server.DefaultWatchBufferSKUs, "distinct SKUs that may wait to be sent on one Watch stream before it gets a resync")
	fs.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:7402", "address of the HTTP port serving /metrics, /healthz and /readyz (port 0 picks a free one; empty turns it off)")
	fs.Uint64Var(&o.readyMaxLag, "ready-max-lag", 1000, "/readyz fails while this node's applied index is more entries than this behind the commit index it knows")
	fs.DurationVar(&o.readyMaxContact, "ready-max-contact", 2*time.Second, "/readyz fails on a follower that has not heard from the leader for longer than this")
	var dialMap string
	fs.StringVar(&dialMap, "dial-map", "", "TEST ONLY (fault harness): ADDR=VIA,... makes this node dial VIA whenever it would dial the peer address ADDR (raft or gRPC)")
	fs.StringVar(&o.authFile, "auth-file", "", "JSON file of the principals allowed to call (name, role, channel, token_sha256, rate_limit); without it stockd runs open, on loopback only unless --insecure")
	fs.BoolVar(&o.insecure, "insecure", false, "run open (no --auth-file) on an address other machines can reach")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate this node serves gRPC (and raft, with --peer-ca) with and shows its peers; TLS is off when empty")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&o.clientCA, "client-ca", "", "PEM CA bundle: gRPC clients must show a certificate it signed (mTLS); include the nodes' CA so peers get in")
	fs.StringVar(&o.peerCA, "peer-ca", "", "PEM CA bundle that signed every node's certificate: raft runs over mutual TLS checked against it, and peer gRPC dials check against it")
	fs.IntVar(&o.maxMessageBytes, "max-message-bytes", server.DefaultMaxRecvMsgBytes, "largest gRPC message a client may send; a larger one is refused with RESOURCE_EXHAUSTED")
	fs.StringVar(&o.peerTokenFile, "peer-token-file", "", "file holding the bearer token this node sends to its peers (a principal of role node in their --auth-file)")
	// Every flag can come from the environment; say so in --help.
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := envName(f.Name)
		f.Usage += " [$" + name + "]"
		if v, ok := os.LookupEnv(name); ok && envErr == nil {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("$%s: %w", name, err)
			}
		}
	})
	if envErr != nil {
		return o, envErr
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	var err error
	if o.dialMap, err = cluster.ParseDialMap(dialMap); err != nil {
		return o, fmt.Errorf("--dial-map: %w", err)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.changeLogEntries < 1 || o.watchBuffer < 1 {
		return o, fmt.Errorf("--change-log-entries and --watch-buffer must be >= 1, got %d and %d", o.changeLogEntries, o.watchBuffer)
	}
	if o.maxMessageBytes < 1<<16 {
		return o, fmt.Errorf("--max-message-bytes must be >= 65536, got %d", o.maxMessageBytes)
	}
	if o.maxBatch < 1 {
		return o, fmt.Errorf("--max-batch must be >= 1, got %d", o.maxBatch)
	}
	if o.memoryRatio != 0 && o.memoryRatio < 1.1 {
		return o, fmt.Errorf("--memory-ratio must be 0 (off) or >= 1.1, got %v", o.memoryRatio)
	}
	if o.gcCPUTarget < 0 || o.gcCPUTarget >= 1 {
		return o, fmt.Errorf("--gc-cpu-target must be at least 0 (0 is off) and below 1, got %v", o.gcCPUTarget)
	}
	return o, nil
}

func newLogger(o options, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch o.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, hopts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, got %q", o.logFormat)
}

// run starts a node and serves until ctx ends, then shuts down cleanly.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "restore":
			return runRestore(args[1:], stderr)
		case "recover":
			return runRecover(args[1:], stderr)
		}
	}
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	logger, err := newLogger(o, stderr)
	if err != nil {
		return err
	}
	dataDir, err := filepath.Abs(o.dataDir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}

	lis, err := net.Listen("tcp", o.grpcAddr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer lis.Close()
	grpcAdvertise := o.grpcAdvertise
	if grpcAdvertise == "" {
		grpcAdvertise = lis.Addr().String()
	}

	sec, err := loadSecurity(o, lis.Addr(), logger)
	if err != nil {
		return err
	}

	scfg := store.DefaultConfig()
	scfg.ChangeLogEntries = o.changeLogEntries
	machine := store.New(scfg)
	// One registry per process, handed to whoever adds metrics (metrics.go
	// in server and cluster); /metrics serves it.
	reg := prometheus.NewRegistry()
	grpcMetrics := server.NewGRPCMetrics()
	if err := errors.Join(
		// Besides the default Go metrics, the collector's CPU
		// (go_cpu_classes_gc_*_cpu_seconds_total): what a large live state
		// costs a node under write load.
		reg.Register(collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
			collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/cpu/classes/gc/`)}))),
		reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})),
		reg.Register(grpcMetrics),
		reg.Register(server.NewStoreCollector(machine, time.Now)),
	); err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	node, err := cluster.New(cluster.Config{
		NodeID:            o.nodeID,
		DataDir:           dataDir,
		RaftAddr:          o.raftAddr,
		RaftAdvertise:     o.raftAdvertise,
		GRPCAddr:          grpcAdvertise,
		Join:              o.join,
		Machine:           machine,
		Logger:            logger,
		MaxBatch:          o.maxBatch,
		Linger:            o.linger,
		SnapshotThreshold: o.snapshotThreshold,
		SnapshotInterval:  o.snapshotInterval,
		TrailingLogs:      o.trailingLogs,
		DialMap:           o.dialMap,
		PeerDialOptions:   sec.peerDial,
		RaftTLS:           sec.raftTLS,
		Registerer:        reg,
	})
	if err != nil {
		return err
	}
	if err := node.Start(); err != nil {
		return fmt.Errorf("start node: %w", err)
	}
	defer func() {
		st := node.Stats()
		logger.Info("proposer stats", "entries", st.Entries, "commands", st.Commands)
		if err := node.Close(); err != nil {
			logger.Error("close node", "err", err)
		}
	}()

	if o.memoryRatio > 0 && os.Getenv("GOMEMLIMIT") == "" {
		gctx, stopGovernor := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			heapGovernor{ratio: o.memoryRatio, gcTarget: o.gcCPUTarget, interval: 250 * time.Millisecond, log: logger, captured: node.CapturedBytes}.run(gctx)
		}()
		defer func() { stopGovernor(); <-done }()
	}

	if o.pprofAddr != "" {
		stopPprof, err := servePprof(o.pprofAddr, logger)
		if err != nil {
			return err
		}
		defer stopPprof()
	}

	gs := grpc.NewServer(append(server.ServerOptionsFor(server.ChainConfig{Logger: logger, Auth: sec.auth, MaxRecvMsgBytes: o.maxMessageBytes, GRPCMetrics: grpcMetrics}), sec.grpcServerCreds())...)
	srv := server.New(server.Config{
		Proposer:     node,
		Reader:       machine,
		Cluster:      clusterAdapter{node},
		Logger:       logger,
		Unavailable:  []error{cluster.ErrNotLeader, cluster.ErrNoLeader, cluster.ErrStopped},
		Exhausted:    []error{cluster.ErrQueueFull},
		Precondition: []error{cluster.ErrFeatureNotEnabled},
		SnapshotDir:  dataDir,
		// Watch streams (watch.go).
		WatchBufferSKUs: o.watchBuffer,
		// Reads wait until this node has applied a read index taken after
		// the start, so a restart never answers older state than before (I5).
		CatchUpOnStart: true,
	})
	srv.Register(gs)
	cctx, stopCatchUp := context.WithCancel(ctx)
	caughtUp := make(chan struct{})
	go func() { defer close(caughtUp); _ = srv.CatchUp(cctx) }()
	defer func() { stopCatchUp(); <-caughtUp }()
	peerv1.RegisterPeerServer(gs, cluster.NewPeerServer(node))
	grpcMetrics.InitializeMetrics(gs)

	if o.httpAddr != "" {
		mux := newHTTPMux(httpConfig{Gatherer: reg, Logger: logger,
			Ready: readiness(srv, node, o.readyMaxLag, o.readyMaxContact)})
		// The JSON gateway calls this node's own gRPC port, so every HTTP
		// call passes the same interceptors (auth, limits, metrics).
		gwConn, err := grpc.NewClient(selfAddr(lis.Addr()), sec.selfDialOptions()...)
		if err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		defer gwConn.Close()
		gw, err := server.NewGateway(ctx, gwConn)
		if err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		mux.Handle("/v1/", gw)
		httpBound, stopHTTP, err := serveHTTP(o.httpAddr, mux, sec.serveTLS, logger)
		if err != nil {
			return err
		}
		defer func() {
			hctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
			stopHTTP(hctx)
			cancel()
		}()
		logger.Info("http listening", "addr", httpBound)
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- gs.Serve(lis) }()
	logger.Info("stockd listening", "grpc", lis.Addr().String(), "grpc_advertise", grpcAdvertise, "raft", node.RaftAddr(),
		"data_dir", dataDir, "node_id", o.nodeID)

	select {
	case <-ctx.Done():
		logger.Info("shutting down", "reason", context.Cause(ctx))
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	}
	// Hand leadership over while this node still serves, so forwarded writes
	// in flight finish and the cluster stalls for less than an election.
	tctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	if err := node.TransferLeadership(tctx); err != nil {
		logger.Warn("leadership transfer", "err", err)
	}
	cancel()
	// Health says NOT_SERVING and PullOrders streams that follow the outbox
	// end, so the graceful stop waits only for calls that finish on their own.
	srv.Drain()
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(o.shutdownTimeout):
		gs.Stop()
		<-stopped
	}
	return nil
}
