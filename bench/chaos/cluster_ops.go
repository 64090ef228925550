package chaos

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/stockd/stockd/api/stockdv1"
)

// Operations on a Cluster that the newer nemeses need: a graceful stop, a
// wiped data folder, a rate-limited link and looks at a node's files. Kept
// apart from cluster.go so the latter stays as small as it was.

// Stop sends sig (SIGTERM: a graceful shutdown, with leadership hand-off) to
// nd's process and waits up to timeout for it to exit; then it kills it. It
// returns the process's exit error (nil for a clean exit) or why it had to
// kill it.
func (c *Cluster) Stop(nd *Node, sig syscall.Signal, timeout time.Duration) error {
	nd.mu.Lock()
	p := nd.proc
	nd.mu.Unlock()
	if p == nil {
		return nil
	}
	_ = syscall.Kill(p.cmd.Process.Pid, sig)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		nd.mu.Lock()
		if nd.proc == p {
			nd.proc, nd.paused = nil, false
		}
		nd.mu.Unlock()
		if p.err != nil {
			return fmt.Errorf("%s after %v: %w", nd.ID, sig, p.err)
		}
		return nil
	case <-t.C:
		c.Kill(nd)
		return fmt.Errorf("%s still running %v after %v: killed", nd.ID, timeout, sig)
	}
}

// Wipe removes nd's data folder; nd must be down. Its next Start is an
// empty node, which joins through the other members (never bootstraps).
func (c *Cluster) Wipe(nd *Node) error {
	if nd.Running() {
		return fmt.Errorf("wipe %s: still running", nd.ID)
	}
	if err := os.RemoveAll(nd.dir); err != nil {
		return fmt.Errorf("wipe %s: %w", nd.ID, err)
	}
	nd.mu.Lock()
	defer nd.mu.Unlock()
	for _, a := range nd.args {
		if a == "--join" {
			return nil
		}
	}
	// The first node bootstrapped; empty, it must join the others instead.
	// A node with data ignores --join, so this stays harmless afterwards.
	var addrs []string
	for _, other := range c.Nodes {
		if other != nd {
			addrs = append(addrs, other.grpcAddr)
		}
	}
	nd.args = append(nd.args, "--join", strings.Join(addrs, ","))
	return nil
}

// SetLinkRate sets the directed link i->j (raft and peer gRPC) up with a
// delay per chunk and a bandwidth limit in bytes per second.
func (c *Cluster) SetLinkRate(i, j int, delay time.Duration, rate int64) {
	c.raft[i][j].setRate(linkUp, delay, rate)
	c.peer[i][j].setRate(linkUp, delay, rate)
}

// snapshotIndexes lists the log indexes of the complete snapshots in nd's
// data folder (raft's file snapshot store names each term-index-millis).
func (nd *Node) snapshotIndexes() []uint64 {
	ents, err := os.ReadDir(filepath.Join(nd.dir, "snapshots"))
	if err != nil {
		return nil
	}
	var out []uint64
	for _, e := range ents {
		parts := strings.Split(e.Name(), "-")
		if !e.IsDir() || len(parts) != 3 || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		if _, err := os.Stat(filepath.Join(nd.dir, "snapshots", e.Name(), "meta.json")); err != nil {
			continue
		}
		if idx, err := strconv.ParseUint(parts[1], 10, 64); err == nil {
			out = append(out, idx)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// latestSnapshotBytes is the size of the newest complete snapshot in nd's
// data folder (0 if none).
func (nd *Node) latestSnapshotBytes() int64 {
	dir := filepath.Join(nd.dir, "snapshots")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var best uint64
	var size int64
	for _, e := range ents {
		parts := strings.Split(e.Name(), "-")
		if !e.IsDir() || len(parts) != 3 || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		idx, err := strconv.ParseUint(parts[1], 10, 64)
		if err != nil || idx < best {
			continue
		}
		files, err := os.ReadDir(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		var n int64
		for _, f := range files {
			if fi, err := f.Info(); err == nil {
				n += fi.Size()
			}
		}
		best, size = idx, n
	}
	return size
}

// logLines returns the lines of nd's log (every run of its process) that
// contain any of the needles.
func (nd *Node) logLines(needles ...string) ([]string, error) {
	return grepFile(nd.logPath, needles...)
}

// grepFile returns the lines of path that contain any of the needles.
func grepFile(path string, needles ...string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		for _, n := range needles {
			if strings.Contains(sc.Text(), n) {
				out = append(out, sc.Text())
				break
			}
		}
	}
	return out, sc.Err()
}

// status asks nd for its Status within a second.
func (c *Cluster) status(ctx context.Context, i int) (leader string, term, commit uint64, voters map[string]bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := c.Nodes[i].Cl.Status(cctx, &stockdv1.StatusRequest{})
	if err != nil {
		return "", 0, 0, nil, err
	}
	voters = map[string]bool{}
	for _, m := range st.GetMembers() {
		if m.GetVoter() {
			voters[m.GetNodeId()] = true
		}
	}
	return st.GetLeaderId(), st.GetTerm(), st.GetCommitIndex(), voters, nil
}

// poll calls f every 50 ms until it reports done or ctx ends.
func poll(ctx context.Context, what string, f func() (bool, string)) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last := "not polled"
	for {
		ok, why := f()
		if ok {
			return nil
		}
		last = why
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w; last: %s", what, ctx.Err(), last)
		case <-tick.C:
		}
	}
}
