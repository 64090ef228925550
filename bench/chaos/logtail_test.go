package chaos

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A node that exits by itself is reported with the end of its log, from a
// line start: the reason (here a taken port) is on its last line.
func TestLogTailEndsTheExitReport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node2.log")
	var b strings.Builder
	for range 50 {
		b.WriteString(`{"level":"INFO","msg":"starting up"}` + "\n")
	}
	b.WriteString("stockd: listen: listen tcp 127.0.0.1:7400: bind: address already in use\n")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	got := logTail(path, 200)
	if !strings.HasSuffix(got, "bind: address already in use") || !strings.HasPrefix(got, `{"level"`) || len(got) > 200 {
		t.Errorf("logTail: got %q, want whole lines ending with the bind error, at most 200 bytes", got)
	}
	if got := logTail(filepath.Join(t.TempDir(), "none.log"), 200); !strings.Contains(got, "no such file") {
		t.Errorf("logTail of a missing log: got %q, want the open error", got)
	}
}
