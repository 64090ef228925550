package bench

// Shared by every test of package bench (one TestMain per package): the
// stockd binary is built once, and SpawnTest starts a cluster from it that
// t.Cleanup tears down. goleak checks that no test leaves a goroutine.

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// stockdBin is the binary TestMain built; empty when the build failed.
var stockdBin string

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "stockbench-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if stockdBin, err = BuildStockd(ctx, dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			return 1
		}
	}
	return code
}

// testStockd returns the stockd binary built by TestMain.
func testStockd(t testing.TB) string {
	t.Helper()
	if stockdBin == "" {
		t.Fatal("stockd binary not built")
	}
	return stockdBin
}

// SpawnTest starts an n-node cluster from the test binary of stockd, with
// Close registered in t.Cleanup; nodes' logs go to the test log only when
// the test fails (Spawn's error carries a failing node's last lines).
func SpawnTest(t testing.TB, n int, args ...string) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := Spawn(ctx, n, SpawnOptions{Stockd: testStockd(t), Args: args})
	if err != nil {
		t.Fatalf("Spawn(%d): %v", n, err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close spawned cluster: %v", err)
		}
	})
	return c
}

func itoa(n int) string { return strconv.Itoa(n) }
