package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stockd/stockd/api/stockdv1"
)

// Corruption of a stopped node's files (issue 8, item 7). Whatever the
// damage, a node either refuses to start with a clear error naming the
// damaged file (exit code 1, no Go panic), or starts and serves exactly the
// state acknowledged before it stopped: never other counts (I2). Every
// offset is computed from the file's own layout, so each run damages the
// same bytes.

const corruptItems = 24

// writeCorruptWorkload writes corruptItems counters at ams, one SetStock
// each (one log entry each), and a reservation on every third item.
func writeCorruptWorkload(t *testing.T, c *clients) {
	t.Helper()
	setupCatalog(t, c)
	for i := range corruptItems {
		_, err := c.erp.SetStock(ctxT(t), &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{
			{Item: corruptItem(i), Location: "ams", OnHandBaseUnits: int64(1000 + i), Version: 1},
		}})
		if err != nil {
			t.Fatalf("SetStock %s: %v", corruptItem(i), err)
		}
		if i%3 == 0 {
			_, err := c.inv.Reserve(ctxT(t), &stockdv1.ReserveRequest{Channel: "web", ReservationId: fmt.Sprintf("r-%d", i),
				Lines: []*stockdv1.ReserveLine{{Sku: corruptItem(i), Quantity: int64(i + 1)}}})
			if err != nil {
				t.Fatalf("Reserve on %s: %v", corruptItem(i), err)
			}
		}
	}
}

func corruptItem(i int) string { return fmt.Sprintf("ITEM-%02d", i) }

// corruptState renders every item's on_hand and reserved per location, as
// c serves them; it waits (with a deadline) while the node is catching up.
func corruptState(t *testing.T, c *clients) string {
	t.Helper()
	skus := make([]string, corruptItems)
	for i := range skus {
		skus[i] = corruptItem(i)
	}
	var (
		av   *stockdv1.GetAvailabilityResponse
		last error
	)
	waitFor(t, 15*time.Second, "an availability answer", func() bool {
		av, last = c.inv.GetAvailability(ctxT(t), &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: skus})
		return last == nil
	})
	var b strings.Builder
	for _, s := range av.GetSkus() {
		for _, l := range s.GetLocations() {
			fmt.Fprintf(&b, "%s@%s on_hand=%d reserved=%d\n", s.GetSku(), l.GetLocation(), l.GetOnHandBaseUnits(), l.GetReservedBaseUnits())
		}
	}
	return b.String()
}

// launch starts stockd on dir and waits until it listens or exits; exited
// reports the latter. The process is killed at cleanup.
func launch(t *testing.T, dir string, args ...string) (p *proc, exited bool) {
	t.Helper()
	all := append([]string{"--data-dir", dir, "--grpc-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0",
		"--http-addr", "127.0.0.1:0", "--log-format", "json"}, args...)
	cmd := exec.Command(stockdBin, all...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p = &proc{t: t, cmd: cmd, done: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go p.readLogs(stderr)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	timer := time.AfterFunc(20*time.Second, func() {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(20 * time.Second)
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := 0; ; {
		for ; i < len(p.logs); i++ {
			if p.logs[i]["msg"] == "stockd listening" {
				p.addr, _ = p.logs[i]["grpc"].(string)
				return p, false
			}
		}
		select {
		case <-p.done:
			return p, true
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("stockd on %s neither listened nor exited within 20s; log: %v", dir, p.logs)
		}
		p.cond.Wait()
	}
}

// stderrText is every line the process wrote to stderr.
func (p *proc) stderrText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	for _, rec := range p.logs {
		fmt.Fprintf(&b, "%v %v\n", rec["msg"], rec["error"])
	}
	return b.String()
}

// checkRefusal fails t unless an exited process ended with exit code 1 and a
// one-line error naming file (and every word of want), without a Go panic.
func checkRefusal(t *testing.T, p *proc, file string, want ...string) string {
	t.Helper()
	text := p.stderrText()
	if code := p.cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("exit code of a refused start: got %d, want 1; stderr:\n%s", code, text)
	}
	if strings.Contains(text, "goroutine ") || strings.Contains(text, "panic:") {
		t.Fatalf("refused start: got a Go panic, want a clear error; stderr:\n%s", text)
	}
	var line string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "stockd: ") {
			line = l
		}
	}
	if !strings.Contains(line, file) {
		t.Fatalf("refused start: got error line %q, want it to name %s; stderr:\n%s", line, file, text)
	}
	for _, w := range want {
		if !strings.Contains(line, w) {
			t.Fatalf("refused start: got error line %q, want it to say %q", line, w)
		}
	}
	return line
}

// boltLayout reads a bbolt file's page size, the used size (high-water mark
// times page size, from the newer meta page), and its freelist page.
func boltLayout(t *testing.T, b []byte) (pageSize, used, freelist int64) {
	t.Helper()
	le := binary.LittleEndian
	pageSize = int64(le.Uint32(b[16+8:]))
	var txid uint64
	for _, off := range []int64{16, pageSize + 16} {
		if tx := le.Uint64(b[off+48:]); tx >= txid {
			txid = tx
			used = int64(le.Uint64(b[off+40:])) * pageSize
			freelist = int64(le.Uint64(b[off+32:]))
		}
	}
	if pageSize < 512 || used <= 2*pageSize || used > int64(len(b)) {
		t.Fatalf("bbolt layout of a %d-byte file: page size %d, used %d: not a bbolt file", len(b), pageSize, used)
	}
	return pageSize, used, freelist
}

// boltFreePages lists the pages a bbolt freelist page holds (they may hold
// stale copies of live data).
func boltFreePages(b []byte, pageSize, freelist int64) map[int64]bool {
	le := binary.LittleEndian
	off := freelist * pageSize
	count, start := int64(le.Uint16(b[off+10:])), off+16
	if count == 0xffff {
		count, start = int64(le.Uint64(b[start:])), start+8
	}
	free := map[int64]bool{}
	for i := range count {
		free[int64(le.Uint64(b[start+8*i:]))] = true
	}
	return free
}

// copyDir copies a stopped node's folder.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o750)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o600)
	})
	if err != nil {
		t.Fatalf("copy %s: %v", from, err)
	}
}

// damage is one deterministic change to a file: it gets the file's bytes
// and returns them changed.
type damage struct {
	name string
	// mustRefuse: the damage always changes what the file holds, so the
	// node must refuse; otherwise serving the acknowledged state is fine.
	mustRefuse bool
	want       []string // words the error must contain when it refuses
	// names is what the error must name instead of the damaged file's path.
	names string
	apply func(t *testing.T, b []byte) []byte
}

func flip(off int64) func(t *testing.T, b []byte) []byte {
	return func(t *testing.T, b []byte) []byte {
		t.Helper()
		if off >= int64(len(b)) {
			t.Fatalf("flip at %d of a %d-byte file", off, len(b))
		}
		b[off] ^= 0x01
		return b
	}
}

// runDamage copies pristine, applies d to the files at rel (a glob), starts stockd on
// the copy and checks the outcome against want (the acknowledged state).
func runDamage(t *testing.T, pristine, rel string, d damage, want string, args ...string) {
	t.Helper()
	dir := t.TempDir()
	copyDir(t, pristine, dir)
	paths, err := filepath.Glob(filepath.Join(dir, rel))
	if err != nil || len(paths) == 0 {
		t.Fatalf("files %s in the copy: got %v (%v), want at least one", rel, paths, err)
	}
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, d.apply(t, b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := paths[0]
	p, exited := launch(t, dir, args...)
	if exited {
		named := path
		if d.names != "" {
			named = d.names
		}
		t.Logf("refused: %s", checkRefusal(t, p, named, d.want...))
		return
	}
	if d.mustRefuse {
		t.Fatalf("start on %s with %s: got a serving node, want a refusal", rel, d.name)
	}
	if got := corruptState(t, dial(t, p.addr)); got != want {
		t.Fatalf("state served after %s of %s: got\n%s\nwant the acknowledged\n%s", d.name, rel, got, want)
	}
	t.Logf("served the acknowledged state")
	p.stop()
}

// pristineNode runs the workload on a new single node with args, stops it
// with SIGTERM and returns its folder and the state it acknowledged.
func pristineNode(t *testing.T, args ...string) (dir, state string) {
	t.Helper()
	dir = t.TempDir()
	p := startStockd(t, dir, args...)
	c := dial(t, p.addr)
	writeCorruptWorkload(t, c)
	state = corruptState(t, c)
	p.stop()
	return dir, state
}

// TestCorruptRaftLogFailsClosed guards I2 against a damaged raft.db on one
// node whose whole state is in its log (no snapshot): truncations and bit
// flips in entry pages and meta pages.
func TestCorruptRaftLogFailsClosed(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: builds and starts stockd")
	}
	dir, want := pristineNode(t, "--snapshot-threshold", "100000")
	db, err := os.ReadFile(filepath.Join(dir, "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	ps, used, freelist := boltLayout(t, db)
	// The row's item, location, then on_hand; bbolt copies pages on write,
	// so stale copies sit in free pages: take the one in a live page.
	row := []byte(corruptItem(17) + "\x12\x03ams\x18")
	free := boltFreePages(db, ps, freelist)
	at := -1
	for i := 0; i < int(used); {
		j := bytes.Index(db[i:used], row)
		if j < 0 {
			break
		}
		if !free[int64(i+j)/ps] {
			at = i + j
			break
		}
		i += j + 1
	}
	if at < 0 {
		t.Fatalf("row of %s in a live page of raft.db: got none (used %d bytes, free pages %v), want one", corruptItem(17), used, free)
	}
	damages := []damage{
		{name: "truncation to zero bytes", mustRefuse: true, want: []string{"empty file"},
			apply: func(*testing.T, []byte) []byte { return nil }},
		{name: "truncation to the first meta page", mustRefuse: true, want: []string{"meta page 1"},
			apply: func(_ *testing.T, b []byte) []byte { return b[:ps] }},
		{name: "truncation to half the used pages, mid-page", mustRefuse: true, want: []string{"truncated"},
			apply: func(_ *testing.T, b []byte) []byte { return b[:used/2/ps*ps+ps/2] }},
		{name: "truncation mid-page in the last used page", mustRefuse: true, want: []string{"truncated"},
			apply: func(_ *testing.T, b []byte) []byte { return b[:used-ps/2] }},
		{name: "truncation of the unused tail", apply: func(_ *testing.T, b []byte) []byte { return b[:used] }},
		{name: "a bit flip in a log entry's on_hand", mustRefuse: true, want: []string{"checksum mismatch"},
			apply: flip(int64(at + len(row)))},
		{name: "a bit flip in meta page 0", mustRefuse: true, want: []string{"meta page 0"}, apply: flip(16 + 20)},
		{name: "a bit flip in meta page 1", mustRefuse: true, want: []string{"meta page 1"}, apply: flip(ps + 16 + 20)},
		{name: "a bit flip in the freelist page", apply: flip(freelist*ps + 16)},
	}
	// A bit flip in the first element header of every used page holding
	// entries or branches: a page id, a position or a length.
	for pg := int64(2); pg < used/ps; pg++ {
		if flags := binary.LittleEndian.Uint16(db[pg*ps+8:]); flags == 0x01 || flags == 0x02 {
			damages = append(damages, damage{name: fmt.Sprintf("a bit flip in page %d's first element", pg), apply: flip(pg*ps + 16 + 4)})
		}
	}
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			runDamage(t, dir, "raft.db", d, want, "--snapshot-threshold", "100000")
		})
	}
}

// TestCorruptSnapshotFailsClosed guards I2 against damaged snapshot files
// on one node: every snapshot cut or flipped refuses the start; only the
// newest damaged lets raft fall back to the older one, which is fine while
// the log still covers the gap and refused when it does not.
func TestCorruptSnapshotFailsClosed(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: builds and starts stockd")
	}
	args := []string{"--snapshot-threshold", "8", "--snapshot-interval", "50ms", "--trailing-logs", "4"}
	dir := t.TempDir()
	p := startStockd(t, dir, args...)
	c := dial(t, p.addr)
	writeCorruptWorkload(t, c)
	metas := func() []string {
		m, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*", "meta.json"))
		return m
	}
	waitFor(t, 20*time.Second, "a snapshot in "+dir, func() bool { return len(metas()) >= 1 })
	for i := range 12 { // past the threshold again, for a second snapshot
		_, err := c.erp.SetStock(ctxT(t), &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{
			{Item: corruptItem(i), Location: "fra", OnHandBaseUnits: int64(50 + i), Version: 1},
		}})
		if err != nil {
			t.Fatalf("SetStock %s at fra: %v", corruptItem(i), err)
		}
	}
	want := corruptState(t, c)
	waitFor(t, 20*time.Second, "two snapshots in "+dir, func() bool { return len(metas()) >= 2 })
	p.stop()
	newest := newestSnapshot(t, metas())
	half := func(_ *testing.T, b []byte) []byte { return b[:len(b)/2] }
	mid := func(t *testing.T, b []byte) []byte { return flip(int64(len(b)/2))(t, b) }
	for _, tc := range []struct {
		rel string
		d   damage
	}{
		{"snapshots/*/state.bin", damage{name: "every snapshot cut in half", mustRefuse: true, names: "snapshots",
			want: []string{"failed to load any existing snapshots"}, apply: half}},
		{"snapshots/*/state.bin", damage{name: "a bit flip in every snapshot", mustRefuse: true, names: "snapshots",
			want: []string{"failed to load any existing snapshots", "CRC mismatch"}, apply: mid}},
		// The log was compacted to 4 entries behind the newest snapshot, so
		// the older one plus the log would miss entries.
		{"snapshots/" + newest + "/state.bin", damage{name: "a bit flip in the newest snapshot over a compacted log",
			mustRefuse: true, names: newest, want: []string{"are missing", "CRC mismatch"}, apply: mid}},
		{"snapshots/" + newest + "/meta.json", damage{name: "the newest snapshot's meta file emptied",
			mustRefuse: true, names: "snapshot", want: []string{"are missing"}, apply: func(*testing.T, []byte) []byte { return nil }}},
	} {
		t.Run(tc.d.name, func(t *testing.T) { runDamage(t, dir, tc.rel, tc.d, want, args...) })
	}
}

// newestSnapshot names the snapshot folder with the highest term, index and
// time among metas. Raft names them "term-index-millis"; the names do not sort
// as strings ("2-8-…" sorts after "2-21-…"), so they are compared as numbers.
func newestSnapshot(t *testing.T, metas []string) string {
	t.Helper()
	var newest string
	var best [3]uint64
	for _, m := range metas {
		name := filepath.Base(filepath.Dir(m))
		var k [3]uint64
		if _, err := fmt.Sscanf(name, "%d-%d-%d", &k[0], &k[1], &k[2]); err != nil {
			t.Fatalf("snapshot folder %q: %v, want term-index-millis", name, err)
		}
		if newest == "" || k[0] > best[0] || k[0] == best[0] && (k[1] > best[1] || k[1] == best[1] && k[2] > best[2]) {
			newest, best = name, k
		}
	}
	if newest == "" {
		t.Fatal("snapshots: got none, want at least one")
	}
	return newest
}

// TestNewestSnapshotComparesNumbers: the first snapshot of
// TestCorruptSnapshotFailsClosed can land at index 8 and the second at 21;
// by string order it damaged the older one and wrongly saw a serving node.
func TestNewestSnapshotComparesNumbers(t *testing.T) {
	metas := []string{"s/2-21-100/meta.json", "s/2-8-200/meta.json", "s/1-99-300/meta.json", "s/2-21-99/meta.json"}
	if got := newestSnapshot(t, metas); got != "2-21-100" {
		t.Fatalf("newest of %v: got %s, want 2-21-100", metas, got)
	}
}

// TestCorruptFollowerFailsClosedAndResyncs guards I2 and I4 in a 3-node
// cluster: a follower whose raft.db was cut short refuses to start, the
// other two keep serving, and once the operator wipes its folder and starts
// it again with --join it catches up by snapshot install (its own snapshots
// are off) to the leader's state and digest.
func TestCorruptFollowerFailsClosedAndResyncs(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: builds and starts stockd")
	}
	args := []string{"--snapshot-threshold", "8", "--snapshot-interval", "50ms", "--trailing-logs", "4"}
	tc := startCluster(t, 3, args...)
	leader := tc.waitLeader(10*time.Second, nil)
	writeCorruptWorkload(t, leader.c)
	var nd *clusterNode
	for _, n := range tc.nodes {
		if n != leader {
			nd = n
			break
		}
	}
	waitConverged(t, 20*time.Second, map[string]stockdv1.ClusterClient{leader.id: leader.cl, nd.id: nd.cl})
	tc.kill(nd)

	dbPath := filepath.Join(nd.dir, "raft.db")
	db, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	ps, used, _ := boltLayout(t, db)
	if err := os.WriteFile(dbPath, db[:used-ps/2], 0o600); err != nil {
		t.Fatal(err)
	}
	p, exited := launch(t, nd.dir, append([]string{"--node-id", nd.id, "--grpc-addr", nd.grpcAddr,
		"--raft-addr", nd.raftAddr, "--join", leader.grpcAddr}, args...)...)
	if !exited {
		t.Fatalf("start of %s on a raft.db cut to %d of %d used bytes: got a serving node, want a refusal", nd.id, used-ps/2, used)
	}
	t.Logf("refused: %s", checkRefusal(t, p, dbPath, "truncated"))

	// The other two keep taking writes; past the threshold, so the leader
	// snapshots and compacts its log beyond what the follower had.
	for i := range 12 {
		_, err := leader.c.erp.SetStock(ctxT(t), &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{
			{Item: corruptItem(i), Location: "fra", OnHandBaseUnits: int64(50 + i), Version: 1},
		}})
		if err != nil {
			t.Fatalf("SetStock %s at fra with %s down: %v", corruptItem(i), nd.id, err)
		}
	}
	want := corruptState(t, leader.c)

	// Recovery, as the README says: wipe the folder, start with --join.
	if err := os.RemoveAll(nd.dir); err != nil {
		t.Fatal(err)
	}
	nd.join = []string{leader.grpcAddr}
	nd.args = append(append([]string(nil), args...), "--snapshot-threshold", "1000000")
	tc.start(nd)
	waitFor(t, 20*time.Second, "a snapshot installed in "+nd.dir, func() bool {
		m, _ := filepath.Glob(filepath.Join(nd.dir, "snapshots", "*", "meta.json"))
		return len(m) > 0
	})
	cls := map[string]stockdv1.ClusterClient{}
	for _, n := range tc.nodes {
		cls[n.id] = n.cl
	}
	waitConverged(t, 20*time.Second, cls)
	if got := corruptState(t, nd.c); got != want {
		t.Fatalf("state served by %s after wipe and rejoin: got\n%s\nwant the leader's\n%s", nd.id, got, want)
	}
}
