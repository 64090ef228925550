package chaos

import (
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

func TestCheckNodeLogsCatchesPanics(t *testing.T) {
	dir := t.TempDir()
	clean := filepath.Join(dir, "node1.log")
	if err := os.WriteFile(clean, []byte(`{"level":"INFO","msg":"stockd listening"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if v := checkNodeLogs([]string{clean}); len(v) != 0 {
		t.Fatalf("checkNodeLogs(a clean log): got %v, want none", v)
	}
	for name, text := range map[string]string{
		"a panic":             "panic: cluster: decode log entry 7: bad\n\ngoroutine 1 [running]:\n",
		"a fatal error":       "fatal error: concurrent map writes\n",
		"a panic in a second": `{"level":"INFO","msg":"x"}` + "\npanic: runtime error: index out of range\n",
	} {
		t.Run(name+" is caught", func(t *testing.T) {
			p := filepath.Join(dir, "node2.log")
			if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			if v := checkNodeLogs([]string{clean, p}); len(v) == 0 {
				t.Fatalf("checkNodeLogs(%q): got no violation, want one", text)
			}
		})
	}
}

func TestCheckFDsCatchesLeakedDescriptor(t *testing.T) {
	before, err := openFDs()
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	f, err := os.CreateTemp(t.TempDir(), "leak")
	if err != nil {
		t.Fatal(err)
	}
	after, err := openFDs()
	if err != nil {
		t.Fatal(err)
	}
	if v := checkFDs(before, after); len(v) != 1 {
		t.Fatalf("checkFDs(one file left open): got %v, want one violation", v)
	}
	_ = f.Close()
	if after, _ = openFDs(); len(checkFDs(before, after)) != 0 {
		t.Fatalf("checkFDs(the file closed): got %v, want none", checkFDs(before, after))
	}
}

func TestCheckGoroutinesCatchesLeak(t *testing.T) {
	opts := goleak.IgnoreCurrent()
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { defer close(done); <-stop }()
	if v := checkGoroutines(opts); len(v) != 1 {
		t.Fatalf("checkGoroutines(one goroutine blocked): got %v, want one violation", v)
	}
	close(stop)
	<-done
	if v := checkGoroutines(opts); len(v) != 0 {
		t.Fatalf("checkGoroutines(it returned): got %v, want none", v)
	}
}
