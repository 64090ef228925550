package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stockd/stockd/api/stockdv1"
)

// fakeBackfills records, per fake, what Backfill streams sent: the message
// sizes and whether a commit came. fakeState belongs to fake_test.go, so the
// record lives here.
var fakeBackfills = struct {
	sync.Mutex
	m map[*fakeState]*fakeBackfill
}{m: map[*fakeState]*fakeBackfill{}}

type fakeBackfill struct {
	gens     []string
	messages []int // rows per message
	commits  int
	prune    bool
	mark     uint64
}

func backfillOf(st *fakeState) *fakeBackfill {
	fakeBackfills.Lock()
	defer fakeBackfills.Unlock()
	b := fakeBackfills.m[st]
	if b == nil {
		b = &fakeBackfill{}
		fakeBackfills.m[st] = b
	}
	return b
}

// Backfill stages rows and applies them at commit like the fake SetStock:
// unknown locations are rejected, older or equal versions stale; prune zeroes
// the counters not named.
func (f *fakeErp) Backfill(stream stockdv1.Erp_BackfillServer) error {
	st := f.st
	b := backfillOf(st)
	var rows []*stockdv1.StockCount
	gen := ""
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("commit: the stream ended without a commit")
		}
		if err != nil {
			return err
		}
		st.mu.Lock()
		if gen == "" {
			gen = req.GetGenerationId()
			b.gens = append(b.gens, gen)
		}
		if len(req.GetRows()) > 0 {
			b.messages = append(b.messages, len(req.GetRows()))
		}
		st.mu.Unlock()
		rows = append(rows, req.GetRows()...)
		if !req.GetCommit() {
			continue
		}
		st.mu.Lock()
		defer st.mu.Unlock()
		b.commits++
		b.prune, b.mark = req.GetPrune(), req.GetAbsorbedMark()
		resp := &stockdv1.BackfillResponse{GenerationId: gen, Rows: uint64(len(rows))}
		named := map[counterKey]bool{}
		for i, row := range rows {
			k := counterKey{row.GetItem(), row.GetLocation()}
			named[k] = true
			if _, ok := st.locations[row.GetLocation()]; !ok {
				resp.Rejected++
				resp.RejectedRows = append(resp.RejectedRows, &stockdv1.RejectedRow{Source: "backfill", Row: uint32(i),
					Key: row.GetItem() + "@" + row.GetLocation(), Reason: fmt.Sprintf("rows[%d].location: unknown location %q", i, row.GetLocation())})
				continue
			}
			c := st.counters[k]
			if c == nil {
				c = &fakeCounter{}
				st.counters[k] = c
			}
			if row.GetVersion() <= c.version {
				resp.IgnoredStale++
				continue
			}
			c.onHand, c.version = row.GetOnHandBaseUnits(), row.GetVersion()
			resp.Applied++
		}
		if req.GetPrune() {
			for k, c := range st.counters {
				if !named[k] && c.onHand != 0 {
					c.onHand = 0
					resp.Pruned++
				}
			}
		}
		resp.Revision = st.nextRevision()
		return stream.SendAndClose(resp)
	}
}

func writeCSV(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "stock.csv")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatalf("write %s: %v", p, err)
	}
	return p
}

func TestImportStreamsChunksAndCommits(t *testing.T) {
	st, addr := startFake(t)
	st.mu.Lock()
	st.locations["ams"], st.locations["fra"] = "Amsterdam", "Frankfurt"
	st.counters[counterKey{"OLD", "ams"}] = &fakeCounter{onHand: 9, version: 1}
	st.mu.Unlock()
	var sb strings.Builder
	sb.WriteString("item,location,on_hand,version\n")
	for i := range 25 {
		fmt.Fprintf(&sb, "I%d,ams,%d,5\n", i, i)
	}
	sb.WriteString("ROSE,fra,7\n")       // no version: now
	sb.WriteString("ROSE,nowhere,1,3\n") // unknown location: rejected
	code, stdout, stderr := runCLI(t, addr, "import", writeCSV(t, sb.String()), "--chunk", "10", "--prune", "--mark", "4", "--generation", "nightly")
	if code != 1 {
		t.Fatalf("import with a rejected row: got exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	b := backfillOf(st)
	if got, want := fmt.Sprint(b.messages), "[10 10 7]"; got != want || b.commits != 1 || !b.prune || b.mark != 4 || fmt.Sprint(b.gens) != "[nightly]" {
		t.Errorf("stream: got messages %s commits %d prune %v mark %d gens %v, want %s, 1, true, 4, [nightly]",
			got, b.commits, b.prune, b.mark, b.gens, want)
	}
	for _, want := range []string{"applied 26, ignored stale 0, rejected 1, pruned 1, revision", "ROSE@nowhere", "rows[].location\t1"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary: got\n%s\nwant it to contain %q", stdout, want)
		}
	}
	for _, want := range []string{"import: 10 rows sent (", "import: 27 rows sent (100%)"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("progress: got\n%s\nwant it to contain %q", stderr, want)
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if c := st.counters[counterKey{"ROSE", "fra"}]; c == nil || c.onHand != 7 || c.version < 1_600_000_000_000_000_000 {
		t.Errorf("ROSE@fra: got %+v, want on_hand 7 at a Unix-nanosecond version", c)
	}
	if c := st.counters[counterKey{"OLD", "ams"}]; c.onHand != 0 {
		t.Errorf("OLD@ams after prune: got %d, want 0", c.onHand)
	}
}

func TestImportAllAppliedExitsZero(t *testing.T) {
	st, addr := startFake(t)
	st.mu.Lock()
	st.locations["ams"] = "Amsterdam"
	st.mu.Unlock()
	code, stdout, stderr := runCLI(t, addr, "import", writeCSV(t, "A,ams,1,2\nB,ams,3,2\n"))
	if code != 0 || !strings.Contains(stdout, "applied 2, ignored stale 0, rejected 0, pruned 0") {
		t.Fatalf("import: got exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit 0 and 2 applied", code, stdout, stderr)
	}
	if b := backfillOf(st); fmt.Sprint(b.messages) != "[2]" || b.commits != 1 || b.prune || !strings.HasPrefix(b.gens[0], "import-") {
		t.Errorf("stream: got %+v, want one message of 2 rows, one commit, no prune, a generated id", b)
	}
}

func TestImportBadLineCommitsNothing(t *testing.T) {
	cases := []struct{ name, csv, want string }{
		{"a word as count", "A,ams,1\nB,ams,lots\n", ":2: on_hand \"lots\" is not a whole number"},
		{"too few fields", "A,ams\n", "got 2 fields"},
		{"version zero", "A,ams,1,0\n", "version \"0\""},
		{"no rows", "item,location,on_hand\n", "no rows"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, addr := startFake(t)
			code, stdout, stderr := runCLI(t, addr, "import", writeCSV(t, c.csv), "--chunk", "1")
			if code != 1 || !strings.Contains(stderr, c.want) || !strings.Contains(stderr, "nothing was applied") {
				t.Errorf("import of %q: got exit %d stderr %q stdout %q, want exit 1 and %q", c.csv, code, stderr, stdout, c.want)
			}
			if b := backfillOf(st); b.commits != 0 {
				t.Errorf("import of %q: got %d commits, want 0", c.csv, b.commits)
			}
		})
	}
}

func TestImportUsage(t *testing.T) {
	_, addr := startFake(t)
	for _, args := range [][]string{{"import"}, {"import", "a.csv", "b.csv"}, {"import", "a.csv", "--chunk", "0"}, {"import", "a.csv", "--chunk", "10001"}} {
		if code, _, stderr := runCLI(t, addr, args...); code != 2 {
			t.Errorf("stockctl %v: got exit %d (%s), want 2", args, code, stderr)
		}
	}
}
