package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stockd/stockd/api/stockdv1"
)

// stockdBin is the binary built once in TestMain for the process tests.
var stockdBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "stockd-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	stockdBin = filepath.Join(dir, "stockd")
	build := exec.Command("go", "build", "-o", stockdBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build stockd:", err)
		return 1
	}
	return m.Run()
}

// proc is a stockd process started by a test, with its JSON log lines.
type proc struct {
	t    testing.TB
	cmd  *exec.Cmd
	addr string
	done chan struct{}

	mu   sync.Mutex
	cond *sync.Cond
	logs []map[string]any
}

// startStockd starts stockd on free loopback ports with data in dir and waits
// until it listens. The process is killed at cleanup.
func startStockd(t testing.TB, dir string, args ...string) *proc {
	t.Helper()
	all := append([]string{"--data-dir", dir, "--grpc-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0",
		"--http-addr", "127.0.0.1:0", "--log-format", "json"}, args...)
	cmd := exec.Command(stockdBin, all...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd, done: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go p.readLogs(stderr)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	rec := p.waitLog("stockd listening", 20*time.Second)
	p.addr, _ = rec["grpc"].(string)
	if p.addr == "" {
		t.Fatalf("listening line without grpc address: %v", rec)
	}
	return p
}

func (p *proc) readLogs(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			rec = map[string]any{"msg": sc.Text()}
		}
		p.mu.Lock()
		p.logs = append(p.logs, rec)
		p.cond.Broadcast()
		p.mu.Unlock()
	}
	_ = p.cmd.Wait()
	p.mu.Lock()
	close(p.done)
	p.cond.Broadcast()
	p.mu.Unlock()
}

// waitLog waits for a log record with the given msg and returns it.
func (p *proc) waitLog(msg string, timeout time.Duration) map[string]any {
	p.t.Helper()
	return p.waitLogMatch(fmt.Sprintf("%q", msg), timeout, func(rec map[string]any) bool { return rec["msg"] == msg })
}

// waitLogWith waits for a log record with the given msg whose key field is
// value, and returns it.
func (p *proc) waitLogWith(msg, key, value string, timeout time.Duration) map[string]any {
	p.t.Helper()
	return p.waitLogMatch(fmt.Sprintf("%q with %s=%q", msg, key, value), timeout, func(rec map[string]any) bool {
		return rec["msg"] == msg && rec[key] == value
	})
}

// waitLogMatch waits for a log record match accepts (what describes it in
// a failure) and returns it.
func (p *proc) waitLogMatch(what string, timeout time.Duration, match func(map[string]any) bool) map[string]any {
	p.t.Helper()
	timer := time.AfterFunc(timeout, func() {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(timeout)
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := 0; ; {
		for ; i < len(p.logs); i++ {
			if match(p.logs[i]) {
				return p.logs[i]
			}
		}
		select {
		case <-p.done:
			p.t.Fatalf("stockd exited before logging %s; log: %v", what, p.logs)
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("no %s log line within %v; log: %v", what, timeout, p.logs)
		}
		p.cond.Wait()
	}
}

// kill sends SIGKILL and waits for the process to end.
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.t.Fatal("stockd did not exit within 20s of SIGTERM")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		p.t.Fatalf("stockd exit code after SIGTERM: got %d, want 0", code)
	}
}

type clients struct {
	conn  *grpc.ClientConn
	inv   stockdv1.InventoryClient
	erp   stockdv1.ErpClient
	admin stockdv1.AdminClient
}

func dial(t testing.TB, addr string) *clients {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &clients{conn: conn, inv: stockdv1.NewInventoryClient(conn), erp: stockdv1.NewErpClient(conn), admin: stockdv1.NewAdminClient(conn)}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// setupCatalog declares two locations and a channel "web" that sees both with no buffer.
func setupCatalog(t testing.TB, c *clients) {
	t.Helper()
	ctx := ctxT(t)
	for _, l := range []string{"ams", "fra"} {
		if _, err := c.admin.PutLocation(ctx, &stockdv1.PutLocationRequest{Location: &stockdv1.Location{Id: l}}); err != nil {
			t.Fatalf("PutLocation %s: %v", l, err)
		}
	}
	if _, err := c.admin.PutChannel(ctx, &stockdv1.PutChannelRequest{Channel: &stockdv1.Channel{Id: "web", Locations: []string{"ams", "fra"}}}); err != nil {
		t.Fatalf("PutChannel: %v", err)
	}
}
