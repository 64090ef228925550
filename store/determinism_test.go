package store_test

import (
	"bytes"
	"fmt"
	"go/parser"
	"go/token"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// logGen writes a plausible random log: batched entries of mixed commands,
// stamps jittering behind a leader clock that now and then restarts behind
// (a new leader), holds that expire, retries, conflicts, ERP batches with
// absorbed marks, full backfills staged in chunks between the other
// commands, config changes and some malformed input.
type logGen struct {
	r             *rand.Rand
	clock         int64
	orders        uint64
	recent        [][2]string                    // (channel, id) of the last few reserves, for lifecycle commands
	lastConfirmed [2]string                      // the last hold lifecycleCommand confirmed
	incoming      map[string]*logv1.IncomingLine // the last row backorderCommand sent per po line
	carts         [][2]string                    // (channel, id) of the last few carts backorderCommand sent
	acked         uint64                         // the last seq ackCommand's sweep reached
	bf            *backfillGen                   // genLog's full backfills, on a stream of their own (determinism_backfill_test.go)
}

var (
	genLocations = []string{"l0", "l1", "l2", "l3", "l4"}
	genChannels  = []string{"c0", "c1", "c2"}
)

// genConfig prunes within a generated log's span of log time.
var genConfig = store.Config{RetryWindowNanos: int64(5 * time.Minute), MaxRecords: 400}

func (g *logGen) pick(s []string) string { return s[g.r.IntN(len(s))] }
func (g *logGen) item() string           { return "i" + strconv.Itoa(g.r.IntN(50)) }
func (g *logGen) resID() string          { return "r" + strconv.Itoa(g.r.IntN(150)) }

// genLog returns a setup entry and then entries holding about n commands.
func genLog(seed uint64, n int) []*logv1.Entry {
	g := &logGen{r: rand.New(rand.NewPCG(seed, 0x5eed)), clock: t0, bf: newBackfillGen(seed)}
	setup := []*logv1.Command{}
	for _, l := range genLocations {
		setup = append(setup, loc(l))
	}
	setup = append(setup, channel("c0", 0, "l0", "l1"), channel("c1", 1, "l1", "l2", "l3"), channel("c2", 2, "l4", "l0", "l2"))
	var rows []*logv1.StockCount
	for i := range 50 {
		for _, l := range genLocations {
			rows = append(rows, row("i"+strconv.Itoa(i), l, int64(g.r.IntN(40)), 1))
		}
	}
	setup = append(setup, setStock(rows...))
	log := []*logv1.Entry{entry(g.clock, setup...)}
	for made := 0; made < n; {
		g.clock += int64(g.r.IntN(3000)) * int64(time.Millisecond)
		if g.r.IntN(50) == 0 {
			g.clock -= int64(30 * time.Second) // a new leader whose clock is behind
		}
		k := 1 + g.r.IntN(8)
		e := entry(g.clock - int64(g.r.IntN(2000))*int64(time.Millisecond))
		for range k {
			e.Commands = append(e.Commands, g.command())
			if g.bf.r.IntN(backfillEvery) == 0 {
				e.Commands = append(e.Commands, g.backfillCommand())
			}
		}
		made += k
		log = append(log, e)
	}
	return log
}

func (g *logGen) command() *logv1.Command {
	ttls := []time.Duration{0, time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute}
	switch p := g.r.IntN(150); {
	case p >= 140:
		return g.ackCommand() // determinism_outbox_test.go
	case p >= 122:
		return g.backorderCommand() // determinism_backorder_test.go
	case p >= 112:
		return g.catalogCommand(ttls) // catalog_test.go
	case p >= 100:
		return g.lifecycleCommand(ttls)
	case p < 35:
		var lines []*logv1.ReserveLine
		for range 1 + g.r.IntN(3) {
			l := line(g.item(), 1+int64(g.r.IntN(10)))
			if g.r.IntN(5) == 0 {
				l.Location = g.pick(append(genLocations, "zz"))
			}
			if g.r.IntN(40) == 0 {
				l.QuantitySkuUnits = 0
			}
			lines = append(lines, l)
		}
		ch, id := g.pick(append(genChannels, "cx")), g.resID()
		g.recent = append(g.recent[max(0, len(g.recent)-7):], [2]string{ch, id})
		return reserve(ch, id, ttls[g.r.IntN(len(ttls))], lines...)
	case p < 47:
		return confirm(g.pick(genChannels), g.resID(), "o"+strconv.Itoa(g.r.IntN(3)))
	case p < 59:
		return release(g.pick(genChannels), g.resID())
	case p < 71:
		var rows []*logv1.StockCount
		for range 1 + g.r.IntN(4) {
			rows = append(rows, row(g.item(), g.pick(append(genLocations, "zz")), int64(g.r.IntN(60))-5, uint64(g.r.IntN(8))))
		}
		var mark uint64
		if g.r.IntN(2) == 0 {
			g.orders += uint64(g.r.IntN(2))
			mark = g.orders
		}
		return setStockMark(mark, rows...)
	case p < 81:
		var rows []*logv1.StockAdjustment
		for range 1 + g.r.IntN(3) {
			rows = append(rows, delta("d"+strconv.Itoa(g.r.IntN(100)), g.item(), g.pick(genLocations),
				int64(g.r.IntN(21))-10, uint64(g.r.IntN(3))*uint64(g.r.IntN(8))))
		}
		return adjust(rows...)
	case p < 87:
		return buffer(g.item(), g.pick([]string{"", "", "c0", "c1", "c2"}), g.pick([]string{"", "l0", "l1", "l2"}), int64(g.r.IntN(4)))
	case p < 94:
		return tickCmd()
	case p < 96:
		ls := append([]string(nil), genLocations...)
		g.r.Shuffle(len(ls), func(i, j int) { ls[i], ls[j] = ls[j], ls[i] })
		return channel(g.pick(genChannels), int64(g.r.IntN(3)), ls[:1+g.r.IntN(len(ls))]...)
	case p < 97:
		return locNamed(g.pick(genLocations), "renamed "+strconv.Itoa(g.r.IntN(9)))
	default:
		return reserve(g.pick(genChannels), g.resID(), time.Millisecond, line(g.item(), 1)) // invalid TTL
	}
}

// applyLog applies entries at indexes 1, 2, ... and returns every result.
func applyLog(m *store.Machine, log []*logv1.Entry, from int) [][]store.Result {
	out := make([][]store.Result, 0, len(log)-from)
	for i := from; i < len(log); i++ {
		out = append(out, m.ApplyEntry(store.Revision(i+1), log[i]))
	}
	return out
}

func sameRecords(t *testing.T, input string, got, want *store.Machine) {
	t.Helper()
	a, errA := records(got)
	b, errB := records(want)
	if errA != nil || errB != nil {
		t.Fatalf("%s: got record errors %v and %v, want none", input, errA, errB)
	}
	if len(a) != len(b) {
		t.Fatalf("%s (I4): got %d snapshot records, want %d", input, len(a), len(b))
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			t.Fatalf("%s (I4): record %d: got %x, want %x", input, i, a[i], b[i])
		}
	}
}

func TestI4TwoMachinesOneLogEndByteEqual(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			log := genLog(seed, 3000)
			a, b := store.New(genConfig), store.New(genConfig)
			input := fmt.Sprintf("log of seed %d (%d entries)", seed, len(log))
			for i, e := range log {
				ra := a.ApplyEntry(store.Revision(i+1), e)
				rb := b.ApplyEntry(store.Revision(i+1), e)
				if !reflect.DeepEqual(ra, rb) {
					t.Fatalf("%s entry %d (I4): got %+v and %+v, want equal results", input, i, ra, rb)
				}
				if i%500 == 0 {
					sameRecords(t, fmt.Sprintf("%s after entry %d", input, i), a, b)
				}
			}
			sameRecords(t, input, a, b)
			if digest(a) != digest(b) {
				t.Fatalf("%s (I4): got digests %s and %s, want equal", input, digest(a), digest(b))
			}
			assertLogWasRich(t, input, a, log)
		})
	}
}

// assertLogWasRich guards the generator: a log that never holds, refuses,
// expires or confirms would make the determinism tests vacuous.
func assertLogWasRich(t *testing.T, input string, m *store.Machine, log []*logv1.Entry) {
	t.Helper()
	replay := store.New(genConfig)
	seen := map[string]int{}
	for i, e := range log {
		for _, r := range replay.ApplyEntry(store.Revision(i+1), e) {
			seen[sentinelName(r.Err)]++
			if r.Reservation != nil {
				seen[r.Reservation.State.String()]++
			}
		}
	}
	for _, k := range []string{"ok", "held", "confirmed", "released", "expired", "cancelled", "insufficient stock", "reservation not held",
		"reservation not confirmed", "order already absorbed by the ERP",
		"invalid argument", "unknown reservation", "id reused with a different payload"} {
		if seen[k] == 0 {
			t.Errorf("%s: got outcomes %v, want at least one %q", input, seen, k)
		}
	}
}

// TestI4SnapshotAtAnyPointPlusTailEqualsFullReplay restores a snapshot taken
// at several points into a fresh machine, applies the rest of the log and
// compares results and records with the straight run.
func TestI4SnapshotAtAnyPointPlusTailEqualsFullReplay(t *testing.T) {
	log := genLog(7, 2500)
	full := store.New(genConfig)
	want := applyLog(full, log, 0)
	for _, cut := range []int{1, 2, len(log) / 7, len(log) / 3, len(log) / 2, len(log) - 1, len(log)} {
		prefix := store.New(genConfig)
		applyLog(prefix, log[:cut], 0)
		tail, err := restored(prefix, genConfig)
		if err != nil {
			t.Fatalf("input snapshot at entry %d: got restore error %v, want ok", cut, err)
		}
		got := applyLog(tail, log, cut)
		for i := range got {
			if !reflect.DeepEqual(got[i], want[cut+i]) {
				t.Fatalf("input snapshot at %d, entry %d (I4): got %+v, want %+v", cut, cut+i, got[i], want[cut+i])
			}
		}
		sameRecords(t, fmt.Sprintf("snapshot at %d plus tail", cut), tail, full)
	}
}

// TestI4RestoreChainEqualsStraightRun restores every few hundred entries, so
// a replica that was rebuilt from snapshots again and again ends equal.
func TestI4RestoreChainEqualsStraightRun(t *testing.T) {
	log := genLog(11, 3000)
	straight, chain := store.New(genConfig), store.New(genConfig)
	for i, e := range log {
		straight.ApplyEntry(store.Revision(i+1), e)
		chain.ApplyEntry(store.Revision(i+1), e)
		if i%97 == 0 {
			next, err := restored(chain, genConfig)
			if err != nil {
				t.Fatalf("input restore after entry %d: got %v, want ok", i, err)
			}
			chain = next
		}
	}
	sameRecords(t, "restore chain", chain, straight)
}

// TestI4SnapshotIsIndependentOfLaterApplies: Snapshot captures; writing it
// later, after more applies, still writes the captured state.
func TestI4SnapshotIsIndependentOfLaterApplies(t *testing.T) {
	log := genLog(5, 1500)
	m := store.New(genConfig)
	applyLog(m, log[:len(log)/2], 0)
	snap := m.Snapshot()
	before, err := m.Digest()
	if err != nil {
		t.Fatal(err)
	}
	for i := len(log) / 2; i < len(log); i++ {
		m.ApplyEntry(store.Revision(i+1), log[i])
	}
	if got, err := snap.Digest(); err != nil || got != before {
		t.Fatalf("input snapshot at %d written after %d more entries: got %x (%v), want %x", snap.Index(), len(log)/2, got, err, before)
	}
	if snap.Index() != store.Revision(len(log)/2) {
		t.Errorf("input snapshot after %d entries: got index %d, want %d", len(log)/2, snap.Index(), len(log)/2)
	}
}

// TestI4StoreImportsFollowStyle checks store's direct imports against
// STYLE.md: the standard library minus clocks, randomness, I/O, logging and
// runtime tricks, protobuf, and of stockd only the log entries (I4).
func TestI4StoreImportsFollowStyle(t *testing.T) {
	forbidden := map[string]bool{
		"time": true, "os": true, "net": true, "math/rand": true, "math/rand/v2": true, "crypto/rand": true,
		"hash/maphash": true, "log": true, "log/slog": true, "runtime": true, "unsafe": true,
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatalf("input %s: got parse error %v", name, err)
		}
		checked++
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if reason := importProblem(path, forbidden); reason != "" {
				t.Errorf("input %s imports %q: got %s, want only the imports STYLE.md allows store", name, path, reason)
			}
		}
	}
	if checked == 0 {
		t.Fatalf("input %v: got no non-test files to check, want store's sources", files)
	}
}

func importProblem(path string, forbidden map[string]bool) string {
	first, _, _ := strings.Cut(path, "/")
	switch {
	case forbidden[path] || strings.HasPrefix(path, "net/") || strings.HasPrefix(path, "os/") || strings.HasPrefix(path, "runtime/"):
		return "a forbidden standard package"
	case !strings.Contains(first, "."):
		return "" // the rest of the standard library
	case path == "google.golang.org/protobuf" || strings.HasPrefix(path, "google.golang.org/protobuf/"):
		return ""
	case path == "github.com/stockd/stockd/api/logv1":
		return ""
	case strings.HasPrefix(path, "github.com/stockd/stockd/"):
		return "another stockd package"
	}
	return "a third-party module"
}

// TestImportRuleCatchesViolations shows the checker above can fail.
func TestImportRuleCatchesViolations(t *testing.T) {
	forbidden := map[string]bool{"time": true, "math/rand": true, "hash/maphash": true, "log/slog": true}
	for path, bad := range map[string]bool{
		"time": true, "math/rand": true, "hash/maphash": true, "log/slog": true, "os/exec": true, "net/http": true,
		"runtime/debug": true, "github.com/stockd/stockd/cluster": true, "github.com/stockd/stockd/api/stockdv1": true,
		"github.com/hashicorp/raft": true, "sync": false, "container/heap": false, "crypto/sha256": false,
		"google.golang.org/protobuf/proto": false, "github.com/stockd/stockd/api/logv1": false,
	} {
		if got := importProblem(path, forbidden) != ""; got != bad {
			t.Errorf("input %q: got rejected %v, want %v", path, got, bad)
		}
	}
}
