package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/stockd/stockd/api/stockdv1"
)

// stockdPackage is what BuildStockd builds; the build runs inside the module.
const stockdPackage = "github.com/stockd/stockd/cmd/stockd"

// BuildStockd builds cmd/stockd into dir and returns the binary's path.
func BuildStockd(ctx context.Context, dir string) (string, error) {
	return BuildStockdTags(ctx, dir)
}

// BuildStockdTags builds cmd/stockd with the given build tags into dir and
// returns the binary's path. The harness's self-test uses it for stockd's
// deliberately broken builds (tags stockd_broken_*).
func BuildStockdTags(ctx context.Context, dir string, tags ...string) (string, error) {
	bin := filepath.Join(dir, "stockd")
	args := []string{"build", "-o", bin}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	out, err := exec.CommandContext(ctx, "go", append(args, stockdPackage)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build %s %v: %w: %s", stockdPackage, tags, err, strings.TrimSpace(string(out)))
	}
	return bin, nil
}

// Node is one stockd process of a Cluster, with the client connection the
// harness keeps across its restarts. Its addresses are picked once, so a
// restarted node comes back where its peers' raft configuration expects it.
type Node struct {
	ID       string
	idx      int
	dir      string
	logPath  string
	grpcAddr string
	raftAddr string
	args     []string

	mu     sync.Mutex
	proc   *process // nil while down
	paused bool

	conn *grpc.ClientConn
	Inv  stockdv1.InventoryClient
	Erp  stockdv1.ErpClient
	Adm  stockdv1.AdminClient
	Cl   stockdv1.ClusterClient
}

// process is one run of a node's binary.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once it has exited
	err  error         // set before done closes
}

// Cluster is a stockd cluster of real processes on 127.0.0.1 whose peer
// links each run through their own proxy: raft[i][j] and peer[i][j] carry
// what node i dials to reach node j. Clients talk to nodes directly.
type Cluster struct {
	bin    string
	dir    string
	logDir string
	Nodes  []*Node
	raft   [][]*proxy
	peer   [][]*proxy
	// client[i] carries every client connection to node i: the workload's
	// and the harness's own (heal before checking).
	client []*proxy
}

// ClusterConfig configures StartCluster.
type ClusterConfig struct {
	Bin    string   // prebuilt stockd binary (BuildStockd)
	Dir    string   // data folders go here
	LogDir string   // node logs (stderr, appended across restarts) go here
	Nodes  int      // 3 unless set
	Args   []string // extra flags for every node
}

// freePorts returns n distinct free ports on 127.0.0.1, held open until
// release is called (after the proxies have picked theirs, so no proxy gets
// a node's port), then free for stockd to bind.
func freePorts(n int) (addrs []string, release func(), err error) {
	var ls []net.Listener
	release = func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}
	for range n {
		l, err := ListenLoopback()
		if err != nil {
			release()
			return nil, func() {}, err
		}
		ls = append(ls, l)
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, release, nil
}

// StartCluster starts the nodes (node1 bootstraps, the others join through
// it, over their proxies) and returns once the cluster is ready. The caller
// must Close it, also when StartCluster fails (it closes what it started).
func StartCluster(ctx context.Context, cfg ClusterConfig) (*Cluster, error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	n := cfg.Nodes
	c := &Cluster{bin: cfg.Bin, dir: cfg.Dir, logDir: cfg.LogDir}
	ports, releasePorts, err := freePorts(2 * n)
	if err != nil {
		return c, err
	}
	defer releasePorts()
	for i := range n {
		nd := &Node{ID: fmt.Sprintf("node%d", i+1), idx: i, grpcAddr: ports[2*i], raftAddr: ports[2*i+1]}
		nd.dir = filepath.Join(cfg.Dir, nd.ID)
		nd.logPath = filepath.Join(cfg.LogDir, nd.ID+".log")
		cp, err := newProxy(nd.ID+" client", nd.grpcAddr)
		if err != nil {
			return c, err
		}
		c.client = append(c.client, cp)
		nd.conn, err = grpc.NewClient(cp.addr(),
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			// The default backoff grows to 2 minutes: far longer than a node
			// is down.
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 200 * time.Millisecond},
				MinConnectTimeout: time.Second,
			}))
		if err != nil {
			return c, err
		}
		nd.Inv, nd.Erp = stockdv1.NewInventoryClient(nd.conn), stockdv1.NewErpClient(nd.conn)
		nd.Adm, nd.Cl = stockdv1.NewAdminClient(nd.conn), stockdv1.NewClusterClient(nd.conn)
		c.Nodes = append(c.Nodes, nd)
	}
	c.raft, c.peer = make([][]*proxy, n), make([][]*proxy, n)
	for i := range n {
		c.raft[i], c.peer[i] = make([]*proxy, n), make([]*proxy, n)
		for j := range n {
			if i == j {
				continue
			}
			name := fmt.Sprintf("%s->%s", c.Nodes[i].ID, c.Nodes[j].ID)
			if c.raft[i][j], err = newProxy(name+" raft", c.Nodes[j].raftAddr); err != nil {
				return c, err
			}
			if c.peer[i][j], err = newProxy(name+" grpc", c.Nodes[j].grpcAddr); err != nil {
				return c, err
			}
		}
	}
	releasePorts()
	for i, nd := range c.Nodes {
		var dm []string
		for j, other := range c.Nodes {
			if i != j {
				dm = append(dm, other.raftAddr+"="+c.raft[i][j].addr(), other.grpcAddr+"="+c.peer[i][j].addr())
			}
		}
		nd.args = []string{"--node-id", nd.ID, "--data-dir", nd.dir, "--grpc-addr", nd.grpcAddr,
			"--raft-addr", nd.raftAddr, "--http-addr", "127.0.0.1:0", "--log-format", "json", "--dial-map", strings.Join(dm, ",")}
		if i > 0 {
			nd.args = append(nd.args, "--join", c.Nodes[0].grpcAddr)
		}
		nd.args = append(nd.args, cfg.Args...)
	}
	// Every node starts at once: the ports were free a moment ago, and each
	// second a node waits to bind is a second in which another process may
	// take its port (a CI run lost node2 that way, it seems, while node1 got
	// ready). The joiners retry until node1 has bootstrapped and admits them.
	for _, nd := range c.Nodes {
		if err := c.Start(nd); err != nil {
			return c, err
		}
	}
	return c, c.WaitReady(ctx, n)
}

// Start starts nd's process (again) with its folder and addresses.
func (c *Cluster) Start(nd *Node) error {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.proc != nil {
		return fmt.Errorf("start %s: already running", nd.ID)
	}
	logf, err := os.OpenFile(nd.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start %s: %w", nd.ID, err)
	}
	defer logf.Close() // the child has its own copy of the descriptor
	cmd := exec.Command(c.bin, nd.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so a kill takes everything it started; and it
	// dies with the test binary if that is killed first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", nd.ID, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	nd.proc, nd.paused = p, false
	return nil
}

// Kill sends SIGKILL to nd's process group and waits for it to exit.
func (c *Cluster) Kill(nd *Node) {
	nd.mu.Lock()
	p := nd.proc
	nd.proc, nd.paused = nil, false
	nd.mu.Unlock()
	if p == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Pause stops nd's process (SIGSTOP); Resume continues it.
func (c *Cluster) Pause(nd *Node) { c.signal(nd, syscall.SIGSTOP, true) }

// Resume continues a paused node (SIGCONT).
func (c *Cluster) Resume(nd *Node) { c.signal(nd, syscall.SIGCONT, false) }

func (c *Cluster) signal(nd *Node, sig syscall.Signal, paused bool) {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.proc == nil {
		return
	}
	_ = syscall.Kill(-nd.proc.cmd.Process.Pid, sig)
	nd.paused = paused
}

// Running reports whether nd has a live process (paused or not).
func (nd *Node) Running() bool {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.proc != nil
}

// exited returns the exit error of a node whose process died on its own.
func (nd *Node) exited() error {
	nd.mu.Lock()
	p := nd.proc
	nd.mu.Unlock()
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		return fmt.Errorf("%s exited by itself: %v; its log ends: %s", nd.ID, p.err, logTail(nd.logPath, 600))
	default:
		return nil
	}
}

// logTail is the last n bytes of the log at path (from a line start when
// one is in them), or why it could not be read: a node that exits on its
// own says why there (a port taken, a corrupt folder), and a CI run's temp
// folders are gone by the time anyone looks.
func logTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err.Error()
	}
	off := max(st.Size()-n, 0)
	b := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return err.Error()
	}
	if i := bytes.IndexByte(b, '\n'); off > 0 && i >= 0 && i < len(b)-1 {
		b = b[i+1:]
	}
	return strings.TrimSpace(string(b))
}

// Exited lists the nodes whose process died without the harness killing it
// (a crash or a panic: the node's log says which).
func (c *Cluster) Exited() []error {
	var errs []error
	for _, nd := range c.Nodes {
		if err := nd.exited(); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// Partition cuts every link between nodes of different groups, both ways,
// in mode (refuse or drop); nodes in no group keep all their links.
func (c *Cluster) Partition(mode linkMode, groups ...[]int) {
	group := make(map[int]int)
	for g, members := range groups {
		for _, i := range members {
			group[i] = g
		}
	}
	for i := range c.Nodes {
		for j := range c.Nodes {
			gi, iok := group[i]
			gj, jok := group[j]
			if i != j && iok && jok && gi != gj {
				c.SetLink(i, j, mode, 0)
			}
		}
	}
}

// SetLink sets the directed link i->j (raft and peer gRPC) to mode and delay.
func (c *Cluster) SetLink(i, j int, mode linkMode, delay time.Duration) {
	c.raft[i][j].set(mode, delay)
	c.peer[i][j].set(mode, delay)
}

// SetClientLink sets the clients' link to node i.
func (c *Cluster) SetClientLink(i int, mode linkMode, delay time.Duration) {
	c.client[i].set(mode, delay)
}

// Heal restores every link, the clients' included.
func (c *Cluster) Heal() {
	for _, p := range c.client {
		p.set(linkUp, 0)
	}
	for i := range c.Nodes {
		for j := range c.Nodes {
			if i != j {
				c.SetLink(i, j, linkUp, 0)
			}
		}
	}
}

// Restore heals every link, resumes paused nodes and starts stopped ones.
func (c *Cluster) Restore() error {
	c.Heal()
	var errs []error
	for _, nd := range c.Nodes {
		c.Resume(nd)
		if !nd.Running() {
			errs = append(errs, c.Start(nd))
		}
	}
	return errors.Join(errs...)
}

// Leader returns the index of the node that says it leads with the highest
// term among those that answer within a second, or -1.
func (c *Cluster) Leader(ctx context.Context) int {
	best, bestTerm := -1, uint64(0)
	for i, nd := range c.Nodes {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := nd.Cl.Status(cctx, &stockdv1.StatusRequest{})
		cancel()
		if err != nil || st.GetLeaderId() != nd.ID {
			continue
		}
		if best < 0 || st.GetTerm() > bestTerm {
			best, bestTerm = i, st.GetTerm()
		}
	}
	return best
}

// WaitReady polls (every 50 ms, until ctx ends) until the first n nodes
// agree on one leader that lists n reachable voters and each answers health
// SERVING.
func (c *Cluster) WaitReady(ctx context.Context, n int) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last := "not polled"
	for {
		ok, why := c.readyNow(ctx, n)
		if ok {
			return nil
		}
		last = why
		if errs := c.Exited(); len(errs) > 0 {
			return errors.Join(errs...)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster of %d not ready: %w; last: %s", n, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

func (c *Cluster) readyNow(ctx context.Context, n int) (bool, string) {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	leader := ""
	for _, nd := range c.Nodes[:n] {
		st, err := nd.Cl.Status(cctx, &stockdv1.StatusRequest{})
		if err != nil {
			return false, fmt.Sprintf("status of %s: %v", nd.ID, err)
		}
		if st.GetLeaderId() == "" || (leader != "" && st.GetLeaderId() != leader) {
			return false, fmt.Sprintf("%s sees leader %q, others %q", nd.ID, st.GetLeaderId(), leader)
		}
		leader = st.GetLeaderId()
		if st.GetLeaderId() == nd.ID {
			voters := 0
			for _, m := range st.GetMembers() {
				if m.GetVoter() && m.GetRole() != "unreachable" {
					voters++
				}
			}
			if voters != n {
				return false, fmt.Sprintf("leader %s sees %d reachable voters, want %d", nd.ID, voters, n)
			}
		}
		h, err := healthpb.NewHealthClient(nd.conn).Check(cctx, &healthpb.HealthCheckRequest{})
		if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return false, fmt.Sprintf("health of %s: %v %v", nd.ID, h.GetStatus(), err)
		}
	}
	return true, ""
}

// Close kills every node, closes every proxy and client connection. The
// folders belong to the caller (t.TempDir).
func (c *Cluster) Close() {
	for _, nd := range c.Nodes {
		c.Kill(nd)
		if nd.conn != nil {
			_ = nd.conn.Close()
		}
	}
	for _, p := range c.client {
		p.Close()
	}
	for _, row := range [][][]*proxy{c.raft, c.peer} {
		for _, ps := range row {
			for _, p := range ps {
				if p != nil {
					p.Close()
				}
			}
		}
	}
}
