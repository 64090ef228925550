package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/stockd/stockd/api/stockdv1"
)

// stockdPackage is what BuildStockd builds; it resolves inside this module,
// so the build must run from within the module's tree.
const stockdPackage = "github.com/stockd/stockd/cmd/stockd"

// SpawnOptions tune Spawn. The zero value builds stockd and starts the nodes
// with their default flags.
type SpawnOptions struct {
	// Stockd is the path of a prebuilt stockd binary (--stockd). Empty: Spawn
	// builds one with BuildStockd into its temporary folder.
	Stockd string
	// Args are extra flags passed to every node (e.g. "--linger", "2ms").
	Args []string
	// Stderr receives every node's log lines, each prefixed with the node
	// id; nil discards them (the last lines of a node that fails to start are
	// in Spawn's error either way).
	Stderr io.Writer
	// ReadyTimeout bounds the wait for every node to listen, the leader to
	// list every member as a reachable voter and every node to report
	// SERVING. Default 30 s.
	ReadyTimeout time.Duration
}

// Cluster is a local stockd cluster started by Spawn: one process per node
// on 127.0.0.1 with OS-picked ports, each in its own temporary folder. Close
// kills the processes and removes the folders. Its methods are safe for
// concurrent use.
type Cluster struct {
	dir   string
	nodes []*spawnedNode

	closeOnce sync.Once
	closeErr  error
}

// spawnedNode is one stockd process of a Cluster.
type spawnedNode struct {
	id       string
	cmd      *exec.Cmd
	grpcAddr string
	raftAddr string

	listening chan struct{} // closed once grpcAddr and raftAddr are known
	done      chan struct{} // closed once the process has exited and its log is read
	mu        sync.Mutex
	tail      []string // the last log lines, for error messages
	waitErr   error
}

const tailLines = 30

// BuildStockd runs `go build` of cmd/stockd into dir and returns the
// binary's path. It must run inside the stockd module's tree (the current
// directory of `go run ./cmd/stockbench` or of a test in bench/).
func BuildStockd(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "stockd")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, stockdPackage)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build %s (run inside the stockd module, or pass a prebuilt binary): %w: %s",
			stockdPackage, err, strings.TrimSpace(string(out)))
	}
	return bin, nil
}

// Spawn starts a cluster of nodes stockd processes on 127.0.0.1 in a fresh
// temporary folder: node1 bootstraps, the others join through it. It returns
// once the leader lists every node as a reachable voter and every node
// answers health SERVING. On an error (or ctx ending first) everything
// started so far is torn down. The caller must Close the Cluster, also on
// Ctrl-C; the processes additionally die with the calling process on Linux.
func Spawn(ctx context.Context, nodes int, opts SpawnOptions) (*Cluster, error) {
	if nodes < 1 {
		return nil, fmt.Errorf("spawn: nodes must be >= 1, got %d", nodes)
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 30 * time.Second
	}
	dir, err := os.MkdirTemp("", "stockbench-")
	if err != nil {
		return nil, fmt.Errorf("spawn: %w", err)
	}
	c := &Cluster{dir: dir}
	ok := false
	defer func() {
		if !ok {
			_ = c.Close()
		}
	}()
	bin := opts.Stockd
	if bin == "" {
		if bin, err = BuildStockd(ctx, dir); err != nil {
			return nil, fmt.Errorf("spawn: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, opts.ReadyTimeout)
	defer cancel()

	for i := range nodes {
		var join string
		if i > 0 {
			join = c.nodes[0].grpcAddr
		}
		nd, err := c.start(bin, fmt.Sprintf("node%d", i+1), join, opts)
		if err != nil {
			return nil, err
		}
		if err := nd.waitListening(ctx); err != nil {
			return nil, err
		}
		if i == 0 {
			// The others join through node1: it must lead its one-voter
			// cluster first.
			if err := c.waitReady(ctx, 1); err != nil {
				return nil, err
			}
		}
	}
	if err := c.waitReady(ctx, nodes); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

// start launches one node with OS-picked ports.
func (c *Cluster) start(bin, id, join string, opts SpawnOptions) (*spawnedNode, error) {
	args := []string{"--node-id", id, "--data-dir", filepath.Join(c.dir, id),
		"--grpc-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-format", "json"}
	if join != "" {
		args = append(args, "--join", join)
	}
	args = append(args, opts.Args...)
	cmd := exec.Command(bin, args...)
	setDeathSignal(cmd)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("spawn %s: %w", id, err)
	}
	nd := &spawnedNode{id: id, cmd: cmd, listening: make(chan struct{}), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("spawn %s: %w", id, err)
	}
	c.nodes = append(c.nodes, nd)
	go nd.readLog(stderr, opts.Stderr)
	return nd, nil
}

// readLog follows the node's JSON log until the process exits: it learns
// the bound addresses from the "stockd listening" line, keeps a tail and
// copies every line to w. It exits when the process's stderr closes.
func (nd *spawnedNode) readLog(r io.Reader, w io.Writer) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	listening := false
	for sc.Scan() {
		line := sc.Text()
		if w != nil {
			fmt.Fprintf(w, "[%s] %s\n", nd.id, line)
		}
		nd.mu.Lock()
		nd.tail = append(nd.tail, line)
		if len(nd.tail) > tailLines {
			nd.tail = nd.tail[len(nd.tail)-tailLines:]
		}
		nd.mu.Unlock()
		if listening {
			continue
		}
		var rec struct {
			Msg  string `json:"msg"`
			GRPC string `json:"grpc"`
			Raft string `json:"raft"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "stockd listening" && rec.GRPC != "" {
			nd.mu.Lock()
			nd.grpcAddr, nd.raftAddr = rec.GRPC, rec.Raft
			nd.mu.Unlock()
			listening = true
			close(nd.listening)
		}
	}
	_, _ = io.Copy(io.Discard, r) // a line over 1 MiB stops the scanner; keep the pipe drained
	err := nd.cmd.Wait()
	nd.mu.Lock()
	nd.waitErr = err
	nd.mu.Unlock()
	close(nd.done)
}

// waitListening waits for the node's "stockd listening" log line.
func (nd *spawnedNode) waitListening(ctx context.Context) error {
	select {
	case <-nd.listening:
		return nil
	case <-nd.done:
		return fmt.Errorf("spawn %s: exited before listening (%v): %s", nd.id, nd.exitErr(), nd.lastLines())
	case <-ctx.Done():
		return fmt.Errorf("spawn %s: not listening: %w: %s", nd.id, ctx.Err(), nd.lastLines())
	}
}

func (nd *spawnedNode) exitErr() error {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.waitErr
}

func (nd *spawnedNode) lastLines() string {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return strings.Join(nd.tail, "\n")
}

// waitReady polls (every 20 ms, until ctx ends) until node1 reports a
// leader whose status lists n reachable voters, and each of the first n
// nodes answers health SERVING.
func (c *Cluster) waitReady(ctx context.Context, n int) error {
	conns := make([]*grpc.ClientConn, n)
	for i := range n {
		conn, err := grpc.NewClient(c.nodes[i].grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return fmt.Errorf("spawn: dial %s: %w", c.nodes[i].id, err)
		}
		defer conn.Close()
		conns[i] = conn
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		ready, why := readyNow(ctx, conns, n)
		if ready {
			return nil
		}
		last = why
		for _, nd := range c.nodes[:n] {
			select {
			case <-nd.done:
				return fmt.Errorf("spawn %s: exited (%v): %s", nd.id, nd.exitErr(), nd.lastLines())
			default:
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("spawn: cluster of %d not ready: %w: last: %s", n, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// readyNow reports whether the cluster is ready, or why not.
func readyNow(ctx context.Context, conns []*grpc.ClientConn, n int) (bool, string) {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := stockdv1.NewClusterClient(conns[0]).Status(cctx, &stockdv1.StatusRequest{})
	if err != nil {
		return false, fmt.Sprintf("status: %v", err)
	}
	if st.GetLeaderId() == "" {
		return false, "no leader"
	}
	voters := 0
	for _, m := range st.GetMembers() {
		if m.GetVoter() && m.GetRole() != "unreachable" {
			voters++
		}
	}
	if voters != n {
		return false, fmt.Sprintf("%d reachable voters, want %d", voters, n)
	}
	for i, conn := range conns {
		h, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return false, fmt.Sprintf("health of node%d: %v", i+1, err)
		}
		if h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return false, fmt.Sprintf("health of node%d: %v", i+1, h.GetStatus())
		}
	}
	return true, ""
}

// Addrs returns the nodes' gRPC addresses, node1 first.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, nd := range c.nodes {
		addrs[i] = nd.grpcAddr
	}
	return addrs
}

// Close kills every node (SIGKILL: the data is thrown away), waits for them
// to exit and removes the temporary folder. It is idempotent.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		var errs []error
		for _, nd := range c.nodes {
			if err := nd.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
				errs = append(errs, fmt.Errorf("kill %s: %w", nd.id, err))
			}
		}
		for _, nd := range c.nodes {
			<-nd.done
		}
		if err := os.RemoveAll(c.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", c.dir, err))
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}
