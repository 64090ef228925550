package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// Fuzz tests for the two decoders of the package's input: committed log
// entries and snapshot record streams. Bad bytes give an error or a
// documented stop, never another panic, and never a state that breaks the
// machine's invariants. Their seed corpora live in testdata/fuzz and run as
// plain tests; TestFuzzSeedCorpus rewrites them with -update.

func unmarshalRecord(b []byte, rec *logv1.SnapshotRecord) error { return proto.Unmarshal(b, rec) }

// fuzzConfig prunes early, so fuzzed states reach the prune paths.
var fuzzConfig = store.Config{RetryWindowNanos: int64(time.Minute), MaxRecords: 8}

// preparedMachine has locations, channels, stock and a live hold, so fuzzed
// commands reach past the "unknown" checks.
func preparedMachine(t testing.TB) *store.Machine {
	t.Helper()
	m := store.New(fuzzConfig)
	res := m.ApplyEntry(1, entry(t0, loc("a"), loc("b"), channel("c", 1, "a", "b"), channel("d", 0, "b"),
		setStock(row("x", "a", 10, 1), row("x", "b", 5, 1), row("y", "b", 3, 1)),
		reserve("c", "r", time.Minute, line("x", 2)), reserve("c", "s", 0, line("x", 1)), confirm("c", "s", "o")))
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("prepare command %d: got %v, want ok", i, r.Err)
		}
	}
	return m
}

// documentedPanic reports whether ApplyEntry must stop on e, and how.
func documentedPanic(e *logv1.Entry) string {
	if e.GetFeatureVersion() > store.FeatureVersion {
		return "needs feature version"
	}
	for _, c := range e.GetCommands() {
		if c.GetKind() == nil {
			return "holds an unknown command"
		}
	}
	return ""
}

func applyRecovering(m *store.Machine, index store.Revision, e *logv1.Entry) (res []store.Result, stop string) {
	defer func() {
		if p := recover(); p != nil {
			stop = fmt.Sprint(p)
		}
	}()
	return m.ApplyEntry(index, e), ""
}

// checkEntry is FuzzDecodeEntry's property on one input.
func checkEntry(t *testing.T, data []byte) {
	var e logv1.Entry
	if err := proto.Unmarshal(data, &e); err != nil {
		return
	}
	invalid := make([]error, len(e.GetCommands()))
	for i, c := range e.GetCommands() {
		err := store.Validate(c)
		var rej *store.Rejection
		if err != nil && (!errors.Is(err, store.ErrInvalid) || !errors.As(err, &rej) || rej.Field == "") {
			t.Fatalf("input %v: Validate of command %d: got %v, want nil or a *Rejection of ErrInvalid naming a field", &e, i, err)
		}
		invalid[i] = err
	}
	m := preparedMachine(t)
	res, stop := applyRecovering(m, 100, &e)
	want := documentedPanic(&e)
	switch {
	case want == "" && stop != "":
		t.Fatalf("input %v: got panic %q, want no panic", &e, stop)
	case want != "" && !strings.Contains(stop, want):
		t.Fatalf("input %v: got panic %q, want a panic containing %q", &e, stop, want)
	case want != "":
		return // the replica stops: documented
	}
	if len(res) != len(e.GetCommands()) {
		t.Fatalf("input %v: got %d results, want one per command (%d)", &e, len(res), len(e.GetCommands()))
	}
	for i, r := range res {
		var rej *store.Rejection
		switch {
		case r.Revision != 100:
			t.Fatalf("input %v: result %d: got revision %d, want 100", &e, i, r.Revision)
		case r.Err != nil && !errors.As(r.Err, &rej):
			t.Fatalf("input %v: result %d: got %T %v, want a *store.Rejection", &e, i, r.Err, r.Err)
		case r.Err != nil && sentinelName(r.Err) != rej.Kind.Error():
			t.Fatalf("input %v: result %d: got %v, want it to unwrap to one sentinel", &e, i, r.Err)
		case invalid[i] != nil && (r.Err == nil || r.Err.Error() != invalid[i].Error()):
			// Apply repeats Validate: what Validate refuses, Apply refuses the same way.
			t.Fatalf("input %v: result %d: got %v, want Validate's %v", &e, i, r.Err, invalid[i])
		case invalid[i] == nil && errors.Is(r.Err, store.ErrInvalid) && !reservationShaped(e.GetCommands()[i]):
			t.Fatalf("input %v: result %d: got %v after Validate passed, want no ErrInvalid", &e, i, r.Err)
		}
	}
	for _, ch := range m.Channels() {
		for _, sku := range []store.SKU{"x", "y"} {
			var a store.SKUAvailability
			if err := m.Availability(ch.ID, sku, &a); err != nil || a.Available < 0 {
				t.Fatalf("input %v (I1): availability %s/%s: got %d (%v), want >= 0", &e, ch.ID, sku, a.Available, err)
			}
		}
	}
	// Restore checks reserved == live holds and committed == unabsorbed
	// orders per counter: any command sequence must keep them.
	back, err := restored(m, fuzzConfig)
	if err != nil {
		t.Fatalf("input %v: snapshot after applying: got restore error %v, want ok", &e, err)
	}
	if digest(back) != digest(m) {
		t.Fatalf("input %v (I4): restored digest %s, want %s", &e, digest(back), digest(m))
	}
}

// reservationShaped reports a command whose input Apply may still find
// malformed against the reservation it names: a partial release's line index
// or quantity, or an op beyond the ops one reservation keeps.
func reservationShaped(c *logv1.Command) bool {
	return len(c.GetRelease().GetLines()) > 0 || c.GetExtend() != nil
}

func FuzzDecodeEntry(f *testing.F) {
	for _, s := range entrySeeds() {
		f.Add(s.data)
	}
	f.Fuzz(checkEntry)
}

// checkRestore is FuzzRestore's property on one framed record stream; it
// returns what went wrong, if anything.
func checkRestore(t testing.TB, stream []byte) error {
	m := preparedMachine(t)
	before := digest(m)
	if err := m.Restore(unframe(stream)); err != nil {
		if got := digest(m); got != before {
			return fmt.Errorf("restore failed with %v and left digest %s, want unchanged %s", err, got, before)
		}
		if !errors.Is(err, store.ErrCorruptSnapshot) && !errors.Is(err, errBadFrame) {
			return fmt.Errorf("got restore error %v, want ErrCorruptSnapshot or the source's error", err)
		}
		return nil
	}
	// Accepted: it must survive a round trip through its own snapshot...
	recs, err := records(m)
	if err != nil {
		return fmt.Errorf("snapshot of the restored state: got %v", err)
	}
	twin := store.New(fuzzConfig)
	if err := twin.Restore(sliceSource(recs)); err != nil {
		return fmt.Errorf("restore of the restored state's own snapshot: got %v, want ok", err)
	}
	again, err := records(twin)
	if err != nil || !bytes.Equal(frame(again), frame(recs)) {
		return fmt.Errorf("round trip: got a different record stream (%v), want the same", err)
	}
	// ...and keep working: the same commands give the same answers on both,
	// and the state they lead to still snapshots and restores.
	tail := tailFor(m)
	for i, c := range tail {
		idx := m.AppliedIndex() + 1
		ts := m.LastTime() + store.Timestamp(time.Second)
		ra := m.Apply(idx, ts, c)
		rb := twin.Apply(idx, ts, c)
		if describe(ra) != describe(rb) {
			return fmt.Errorf("tail command %d %v (I4): got %s and %s, want equal answers", i, c, describe(ra), describe(rb))
		}
	}
	if digest(m) != digest(twin) {
		return fmt.Errorf("(I4) after the tail: got digests %s and %s, want equal", digest(m), digest(twin))
	}
	// A replica restored from the machine's snapshot now must go on exactly
	// like the machine: remember and forget the same answers in the same order.
	third, err := restored(m, fuzzConfig)
	if err != nil {
		return fmt.Errorf("after a restore and %d commands: got restore error %v for the machine's own snapshot, want ok", len(tail), err)
	}
	chs := m.Channels()
	for i := range 4 {
		c := tickCmd()
		if len(chs) > 0 {
			c = reserve(string(chs[0].ID), "fuzz-refused-"+strconv.Itoa(i), 0, line("fuzz-none", 1))
		}
		idx, ts := m.AppliedIndex()+1, m.LastTime()+1
		ra, rb := m.Apply(idx, ts, c), third.Apply(idx, ts, c)
		if describe(ra) != describe(rb) {
			return fmt.Errorf("(I4) command %v after restoring the machine's own snapshot: got %s and %s, want equal answers", c, describe(ra), describe(rb))
		}
		// Past MaxRecords each refusal forgets the oldest answer: the same one on both.
		if digest(m) != digest(third) {
			return fmt.Errorf("(I4) %d refusals after restoring the machine's own snapshot: got digests %s and %s, want equal",
				i+1, digest(m), digest(third))
		}
	}
	return nil
}

// tailFor builds commands that touch what a restored state declares: stock,
// a hold, a confirm, a release and an absorbed mark at its first channel.
func tailFor(m *store.Machine) []*logv1.Command {
	chs := m.Channels()
	if len(chs) == 0 || len(chs[0].Locations) == 0 {
		return []*logv1.Command{tickCmd()}
	}
	ch, l := string(chs[0].ID), string(chs[0].Locations[0])
	return []*logv1.Command{
		tickCmd(),
		setStock(row("fuzz-item", l, 100, 1<<62)),
		reserve(ch, "fuzz-1", 0, line("fuzz-item", 3)),
		reserve(ch, "fuzz-2", 0, line("fuzz-item", 2)),
		confirm(ch, "fuzz-1", "fuzz-order"),
		release(ch, "fuzz-2"),
		reserve(ch, "fuzz-3", time.Second, line("fuzz-item", 1)),
		tickCmd(),
		setStockMark(^uint64(0), row("fuzz-item", l, 90, 1<<62+1)),
	}
}

func FuzzRestore(f *testing.F) {
	for _, s := range restoreSeeds(f) {
		f.Add(s.data)
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		if err := checkRestore(t, stream); err != nil {
			t.Fatalf("input %x: %v", stream, err)
		}
	})
}

// TestI4RestoreCorruptedStreams runs FuzzRestore's property over bit flips and
// truncations of the golden stream, so plain test runs corrupt every byte,
// not only the committed seeds: every bit of the meta record, one rotating
// bit of every other byte, and cuts at every byte of the head and every
// seventh after. It reports one example of each distinct failure.
func TestI4RestoreCorruptedStreams(t *testing.T) {
	recs := mustRecords(t, goldenMachine(t))
	valid := frame(recs)
	metaEnd := len(frame(recs[:1]))
	if err := checkRestore(t, valid); err != nil {
		t.Fatalf("input the golden stream: %v", err)
	}
	seen := map[string]bool{}
	check := func(input string, stream []byte) {
		err := checkRestore(t, stream)
		if err == nil {
			return
		}
		class := hexOrNumber.ReplaceAllString(err.Error(), "#")
		if !seen[class] {
			seen[class] = true
			t.Errorf("input the golden stream with %s (%x): %v", input, stream, err)
		}
	}
	for i := range valid {
		for bit := range 8 {
			if i >= metaEnd && bit != i%8 {
				continue
			}
			b := bytes.Clone(valid)
			b[i] ^= 1 << bit
			check(fmt.Sprintf("bit %d of byte %d flipped", bit, i), b)
		}
		if i < 64 || i%7 == 0 {
			check(fmt.Sprintf("only its first %d bytes", i), valid[:i])
		}
	}
}

var hexOrNumber = regexp.MustCompile(`[0-9a-f]{16,}|[0-9]+`)

func mustRecords(t testing.TB, m *store.Machine) [][]byte {
	t.Helper()
	recs, err := records(m)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

type seed struct {
	name string
	data []byte
}

func entrySeeds() []seed {
	marshal := func(e *logv1.Entry) []byte {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(e)
		if err != nil {
			panic(err) // a static message always encodes
		}
		return b
	}
	unknownCommand := protowire.AppendTag(nil, 3, protowire.BytesType)
	unknownCommand = protowire.AppendBytes(unknownCommand, protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1))
	var seeds []seed
	for i, e := range goldenLog() {
		seeds = append(seeds, seed{"valid-golden-" + strconv.Itoa(i), marshal(e)})
	}
	return append(seeds,
		seed{"valid-retries-and-refusals", marshal(entry(t0+1, reserve("c", "r", time.Minute, line("x", 2)), reserve("c", "r", 0, line("x", 2)),
			reserve("c", "n", 0, line("x", 99)), confirm("c", "r", "o"), confirm("c", "s", "o2"), release("c", "s"),
			adjust(delta("q", "x", "a", -20, 0), delta("q", "x", "a", 1, 0)), setStockMark(7, row("x", "a", -3, 2))))},
		seed{"valid-lifecycle", marshal(entry(t0+2, extendCmd("c", "r", "e", time.Hour), extendCmd("c", "r", "e", time.Minute),
			releasePart("c", "r", "p", give(0, 1)), releasePart("c", "r", "q", give(3, 1)), releasePart("c", "r", "p", give(0, 1)),
			cancelOrder("c", "s"), cancelOrder("c", "s"), cancelOrder("c", "r"), releaseAll("c", "a"), releaseAll("c", "a"), releaseAll("zz", "a")))},
		seed{"valid-acks", marshal(entry(t0+3, ackCmd(ackBooked(1), ackBooked(1), ackRefused(1, "no"), ackDone(1), ackBooked(9)),
			cancelOrder("c", "s"), ackCmd(ackDone(2), ackBooked(2)), setStockMark(2, row("x", "zz", 1, 1))))},
		seed{"valid-empty-entry", marshal(entry(t0 + int64(time.Hour)))},
		seed{"invalid-commands", marshal(entry(-1, reserve("", "", -5), &logv1.Command{Kind: &logv1.Command_SetStock{SetStock: &logv1.SetStock{}}},
			buffer("", "zz", "zz", -1), channel("c", -1, "a", "a"), ackCmd(), ackCmd(&logv1.OrderAck{Seq: 1, Outcome: 9})))},
		seed{"stop-feature-version", marshal(&logv1.Entry{TimeUnixNanos: t0, FeatureVersion: store.FeatureVersion + 1, Commands: []*logv1.Command{tickCmd()}})},
		seed{"stop-unknown-command", append(marshal(entry(t0)), unknownCommand...)},
		seed{"garbage", []byte("\xff\xff\xff\xff not a protobuf")},
	)
}

func restoreSeeds(t testing.TB) []seed {
	recs := mustRecords(t, goldenMachine(t))
	valid := frame(recs)
	// Byte 1 is the meta record's tag: flipped, the first record is no meta.
	flipped := bytes.Clone(valid)
	flipped[1] ^= 0x40
	// A counter whose reserved disagrees with the live holds.
	mismatch := make([][]byte, len(recs))
	copy(mismatch, recs)
	for i, r := range recs {
		var rec logv1.SnapshotRecord
		if err := unmarshalRecord(r, &rec); err != nil {
			t.Fatal(err)
		}
		if c := rec.GetCounter(); c != nil && c.GetReservedBaseUnits() > 0 {
			c.ReservedBaseUnits++
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&rec)
			if err != nil {
				t.Fatal(err)
			}
			mismatch[i] = b
			break
		}
	}
	metaOnly := frame(recs[:1])
	swapped := frame(append([][]byte{recs[1], recs[0]}, recs[2:]...))
	return []seed{
		{"valid-golden", valid},
		{"valid-meta-only", metaOnly},
		{"valid-prepared", frame(mustRecords(t, preparedMachine(t)))},
		{"corrupt-truncated", valid[:len(valid)*2/3]},
		{"corrupt-flipped", flipped},
		{"corrupt-reserved-mismatch", frame(mismatch)},
		{"corrupt-meta-not-first", swapped},
		{"corrupt-empty", nil},
	}
}

// TestFuzzSeedCorpus keeps the committed corpora in step with the code
// (rewritten with -update) and checks they still mean what they say: valid
// seeds decode and apply or restore, corrupt ones are refused.
func TestFuzzSeedCorpus(t *testing.T) {
	corpora := map[string][]seed{"FuzzDecodeEntry": entrySeeds(), "FuzzRestore": restoreSeeds(t)}
	for fuzz, seeds := range corpora {
		dir := filepath.Join("testdata", "fuzz", fuzz)
		if *update {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for _, s := range seeds {
				text := "go test fuzz v1\n[]byte(" + strconv.Quote(string(s.data)) + ")\n"
				if err := os.WriteFile(filepath.Join(dir, s.name), []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, s := range seeds {
			raw, err := os.ReadFile(filepath.Join(dir, s.name))
			if err != nil {
				t.Fatalf("input %s/%s: got %v, want the seed file (go test -run TestFuzzSeedCorpus -update)", fuzz, s.name, err)
			}
			lit, ok := strings.CutPrefix(strings.TrimSpace(string(raw)), "go test fuzz v1\n[]byte(")
			data, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
			if !ok || err != nil {
				t.Fatalf("input %s/%s: got %q, want the go test fuzz v1 format", fuzz, s.name, raw)
			}
			if !bytes.Equal([]byte(data), s.data) {
				t.Errorf("input %s/%s: got a stale seed, want the current encoding (go test -run TestFuzzSeedCorpus -update)", fuzz, s.name)
			}
			valid := strings.HasPrefix(s.name, "valid-")
			switch fuzz {
			case "FuzzDecodeEntry":
				var e logv1.Entry
				err := proto.Unmarshal([]byte(data), &e)
				if got := err == nil && documentedPanic(&e) == "" && !strings.HasPrefix(s.name, "invalid-"); got != valid {
					t.Errorf("input %s/%s: got decodable and applicable %v (%v), want %v", fuzz, s.name, got, err, valid)
				}
			case "FuzzRestore":
				err := store.New(store.Config{}).Restore(unframe([]byte(data)))
				if got := err == nil; got != valid {
					t.Errorf("input %s/%s: got restore error %v, want accepted %v", fuzz, s.name, err, valid)
				}
			}
		}
	}
}
