package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/stockd/stockd/api/stockdv1"
)

// The backfill benchmarks load a full count of 1,000,000 counters, mostly
// shaped 100,000 items x 10 locations: a wholesaler's catalog (many items, a
// handful of warehouses; a channel sees at most 64 locations). One case loads
// 1,000 items x 1,000 locations, the shape where an item's counters are many.
const (
	backfillRows  = 1_000_000
	backfillChunk = 10_000
	// backfillChannelLocations is the most locations a channel sees; the
	// read-back checks those.
	backfillChannelLocations = 64
)

// backfillShape is a catalog of items x locations (1,000,000 counters), its
// ids built once, so the client spends no time formatting ids on the shared
// CPUs while it is timed.
type backfillShape struct {
	name      string
	items     []string
	locations []string
}

func newBackfillShape(items, locations int) *backfillShape {
	sh := &backfillShape{name: fmt.Sprintf("%dx%d", items, locations),
		items: make([]string, items), locations: make([]string, locations)}
	for i := range sh.items {
		sh.items[i] = fmt.Sprintf("BF-%06d", i)
	}
	for i := range sh.locations {
		sh.locations[i] = fmt.Sprintf("wh%04d", i)
	}
	return sh
}

var (
	// wideBackfill is 100,000 items x 10 locations.
	wideBackfill = sync.OnceValue(func() *backfillShape { return newBackfillShape(100_000, 10) })
	// deepBackfill is 1,000 items x 1,000 locations.
	deepBackfill = sync.OnceValue(func() *backfillShape { return newBackfillShape(1000, 1000) })
)

// onHand is the count generation gen sends for (item, location).
func (sh *backfillShape) onHand(item, loc, gen int) int64 {
	return int64((item*7 + loc*131 + gen*17) % 10_000)
}

// channelLocations are the locations channel "web" sees.
func (sh *backfillShape) channelLocations() []string {
	return sh.locations[:min(len(sh.locations), backfillChannelLocations)]
}

// BenchmarkBackfill1M streams 1,000,000 rows (rows in item order) through
// Erp.Backfill in chunks of 10,000 to a 3-process cluster (fsync on) and
// commits them. Every iteration starts a cluster of its own (untimed) and
// stops it after, so runs do not add up. The cases:
//
//   - shape=100000x10/into=empty/via=leader: the first load, into an empty
//     cluster: the commit creates 1,000,000 counters;
//   - shape=100000x10/into=loaded/via=leader: the nightly case: after an
//     untimed first load, a second generation with a higher version
//     replaces every count;
//   - shape=100000x10/into=loaded/via=follower: the same through a
//     follower, which forwards every chunk and the commit to the leader;
//   - shape=1000x1000/into=empty/via=leader: a first load of items with
//     1,000 counters each.
//
// It reports s/backfill (first chunk sent to the commit's answer, as the
// client sees it), rows/s, commit-s (from the leader having applied the last
// chunk, polled every 5 ms, to the commit's answer: the commit's log entry,
// its apply on the leader, the answer), and the peak resident memory (VmHWM,
// over the node's life, first load included) of the busiest and of the
// quietest of the three nodes. After each generation it checks the answer's
// counts (every row applied) and reads items back on every node at the
// answer's revision.
//
//	go test -run '^$' -bench 'Backfill1M' -benchtime 1x -count 3 -timeout 30m ./cmd/stockd/
func BenchmarkBackfill1M(b *testing.B) {
	reqsOf := map[*backfillShape]*backfillRequests{} // 1,000,000 rows each: built once, when first needed
	for _, c := range []struct {
		shape               *backfillShape
		loaded, viaFollower bool
	}{{wideBackfill(), false, false}, {wideBackfill(), true, false}, {wideBackfill(), true, true}, {deepBackfill(), false, false}} {
		name := "shape=" + c.shape.name + "/into=empty/via=leader"
		switch {
		case c.viaFollower:
			name = "shape=" + c.shape.name + "/into=loaded/via=follower"
		case c.loaded:
			name = "shape=" + c.shape.name + "/into=loaded/via=leader"
		}
		b.Run(name, func(b *testing.B) {
			reqs := reqsOf[c.shape]
			if reqs == nil {
				reqs = newBackfillRequests(c.shape)
				reqsOf[c.shape] = reqs
			}
			var total, commit time.Duration
			var peak peakResident
			for b.Loop() {
				b.StopTimer()
				bc := startBackfillCluster(b, c.shape)
				gen := bc.preload(b, reqs, c.loaded)
				nd := bc.leader
				if c.viaFollower {
					nd = bc.follower
				}
				reqs.setGeneration(gen)
				stopProfiles := profileNodes(b, bc.tc, "backfill-"+strings.ReplaceAll(name, "/", "-"))
				b.StartTimer()
				resp, tm, err := reqs.send(nd.c, bc.leader.cl)
				b.StopTimer()
				stopProfiles()
				if err != nil {
					b.Fatalf("backfill generation %d %s: %v", gen, name, err)
				}
				total += tm.total
				commit += tm.commit
				checkBackfill(b, bc.tc, c.shape, resp, gen)
				peak.read(b, bc.tc)
				bc.stop()
				b.StartTimer()
			}
			n := float64(b.N)
			b.ReportMetric(total.Seconds()/n, "s/backfill")
			b.ReportMetric(backfillRows*n/total.Seconds(), "rows/s")
			b.ReportMetric(commit.Seconds()/n, "commit-s")
			peak.report(b)
		})
	}
}

// BenchmarkImportCSV1M writes a CSV of 1,000,000 rows (100,000 items x 10
// locations, in item order, with a version column), then times the built
// `stockctl import` against the leader of a 3-process cluster (fsync on),
// from the process's start to its exit: reading and parsing the file,
// streaming it through Backfill, the commit. Every iteration starts a cluster
// of its own; into=empty is the first load, into=loaded replaces the counts
// of an untimed first load (sent by the benchmark itself) with a newer
// generation. Every answer must count 1,000,000 rows applied, and items are
// read back on every node. It reports s/import, rows/s and the nodes' peak
// resident memory as BenchmarkBackfill1M does.
//
//	go test -run '^$' -bench 'ImportCSV1M' -benchtime 1x -count 3 -timeout 30m ./cmd/stockd/
func BenchmarkImportCSV1M(b *testing.B) {
	stockctl := buildStockctl(b)
	shape := wideBackfill()
	reqs := newBackfillRequests(shape)
	dir := b.TempDir()
	csvOf := func(gen int) string {
		path := filepath.Join(dir, "count-"+strconv.Itoa(gen)+".csv")
		if _, err := os.Stat(path); err != nil {
			writeBackfillCSV(b, path, shape, gen)
		}
		return path
	}
	for _, c := range []struct {
		name   string
		loaded bool
	}{{"into=empty", false}, {"into=loaded", true}} {
		b.Run(c.name, func(b *testing.B) {
			var total time.Duration
			var peak peakResident
			for b.Loop() {
				b.StopTimer()
				bc := startBackfillCluster(b, shape)
				gen := bc.preload(b, reqs, c.loaded)
				cmd := exec.Command(stockctl, "--addr", bc.leader.grpcAddr, "--json", "import", "--generation", "csv-"+strconv.Itoa(gen), csvOf(gen))
				var stdout, stderr strings.Builder
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				b.StartTimer()
				start := time.Now()
				err := cmd.Run()
				took := time.Since(start)
				b.StopTimer()
				if err != nil {
					b.Fatalf("stockctl import generation %d: %v\nstderr (tail): %s", gen, err, tail(stderr.String(), 2000))
				}
				total += took
				var resp stockdv1.BackfillResponse
				if err := protojson.Unmarshal([]byte(strings.TrimSpace(stdout.String())), &resp); err != nil {
					b.Fatalf("stockctl import output %q: %v", tail(stdout.String(), 2000), err)
				}
				checkBackfill(b, bc.tc, shape, &resp, gen)
				peak.read(b, bc.tc)
				bc.stop()
				b.StartTimer()
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "s/import")
			b.ReportMetric(backfillRows*float64(b.N)/total.Seconds(), "rows/s")
			peak.report(b)
		})
	}
}

// backfillCluster is a 3-process cluster with the benchmark's catalog.
type backfillCluster struct {
	tc       *testCluster
	leader   *clusterNode
	follower *clusterNode
}

// startBackfillCluster starts 3 nodes (with $STOCKD_BENCH_ARGS) and declares
// the shape's locations and channel.
func startBackfillCluster(b *testing.B, shape *backfillShape) *backfillCluster {
	b.Helper()
	bc := &backfillCluster{tc: startCluster(b, 3, strings.Fields(os.Getenv("STOCKD_BENCH_ARGS"))...)}
	bc.leader = bc.tc.waitLeader(10*time.Second, nil)
	for _, nd := range bc.tc.nodes {
		if nd != bc.leader {
			bc.follower = nd
			break
		}
	}
	declareBackfillCatalog(b, bc.leader.c, shape)
	return bc
}

// preload, when loaded, sends generation 1 through the leader and checks
// it. It returns the generation to time: 2 after a preload, else 1.
func (bc *backfillCluster) preload(b *testing.B, reqs *backfillRequests, loaded bool) int {
	b.Helper()
	if !loaded {
		return 1
	}
	reqs.setGeneration(1)
	resp, _, err := reqs.send(bc.leader.c, bc.leader.cl)
	if err != nil {
		b.Fatalf("first load: %v", err)
	}
	checkBackfill(b, bc.tc, reqs.shape, resp, 1)
	return 2
}

// stop kills the nodes; their folders go at the benchmark's cleanup.
func (bc *backfillCluster) stop() {
	for _, nd := range bc.tc.nodes {
		bc.tc.kill(nd)
	}
}

// declareBackfillCatalog declares the shape's locations and a channel "web"
// that sees (the first 64 of) them with no buffer.
func declareBackfillCatalog(b *testing.B, c *clients, shape *backfillShape) {
	b.Helper()
	ctx := ctxT(b)
	for _, l := range shape.locations {
		if _, err := c.admin.PutLocation(ctx, &stockdv1.PutLocationRequest{Location: &stockdv1.Location{Id: l}}); err != nil {
			b.Fatalf("PutLocation %s: %v", l, err)
		}
	}
	if _, err := c.admin.PutChannel(ctx, &stockdv1.PutChannelRequest{Channel: &stockdv1.Channel{Id: "web", Locations: shape.channelLocations()}}); err != nil {
		b.Fatalf("PutChannel: %v", err)
	}
}

// backfillRequests is one generation's chunk messages, built once and
// rewritten in place for each generation.
type backfillRequests struct {
	shape  *backfillShape
	gen    string
	chunks []*stockdv1.BackfillRequest
}

// newBackfillRequests builds the chunks of a generation of shape, item by
// item; setGeneration fills in counts and versions.
func newBackfillRequests(shape *backfillShape) *backfillRequests {
	r := &backfillRequests{shape: shape}
	var chunk []*stockdv1.StockCount
	for _, item := range shape.items {
		for _, loc := range shape.locations {
			chunk = append(chunk, &stockdv1.StockCount{Item: item, Location: loc})
			if len(chunk) == backfillChunk {
				r.chunks = append(r.chunks, &stockdv1.BackfillRequest{Rows: chunk})
				chunk = nil
			}
		}
	}
	return r
}

// setGeneration rewrites every row's count and version for generation gen.
func (r *backfillRequests) setGeneration(gen int) {
	r.gen = "bf-" + strconv.Itoa(gen)
	k := 0
	for _, c := range r.chunks {
		c.GenerationId = ""
		for _, row := range c.Rows {
			row.OnHandBaseUnits = r.shape.onHand(k/len(r.shape.locations), k%len(r.shape.locations), gen)
			row.Version = uint64(gen)
			k++
		}
	}
	r.chunks[0].GenerationId = r.gen
}

// backfillTiming is one generation's times as the client saw them.
type backfillTiming struct {
	// total runs from the first chunk sent to the commit's answer.
	total time.Duration
	// commit runs from the moment the leader was first seen having applied
	// the entry before the commit (the last chunk) to the commit's answer.
	commit time.Duration
}

// send streams the generation and its commit through c and returns the
// answer and its times. Meanwhile it asks the leader (cl) for its applied
// index every 5 ms (a cheap Status, no digests), to tell when the last chunk
// was applied: the client's own sends run ahead of the server by what gRPC's
// flow-control window holds, so the time from sending the commit would
// include chunks still queued.
func (r *backfillRequests) send(c *clients, cl stockdv1.ClusterClient) (*stockdv1.BackfillResponse, backfillTiming, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	type sample struct {
		at      time.Time
		applied uint64
	}
	var samples []sample
	pollDone := make(chan struct{})
	pollCtx, stopPoll := context.WithCancel(ctx)
	go func() {
		defer close(pollDone)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			st, err := cl.Status(pollCtx, &stockdv1.StatusRequest{})
			if err == nil {
				if m := selfMember(st); m != nil {
					samples = append(samples, sample{time.Now(), m.GetAppliedIndex()})
				}
			}
			select {
			case <-pollCtx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	stop := func() { stopPoll(); <-pollDone }
	start := time.Now()
	st, err := c.erp.Backfill(ctx)
	if err != nil {
		stop()
		return nil, backfillTiming{}, err
	}
	for i, req := range r.chunks {
		if err := st.Send(req); err != nil {
			_, rerr := st.CloseAndRecv()
			stop()
			return nil, backfillTiming{}, fmt.Errorf("send chunk %d: %v (stream: %v)", i, err, rerr)
		}
	}
	if err := st.Send(&stockdv1.BackfillRequest{Commit: true}); err != nil {
		_, rerr := st.CloseAndRecv()
		stop()
		return nil, backfillTiming{}, fmt.Errorf("send commit: %v (stream: %v)", err, rerr)
	}
	resp, err := st.CloseAndRecv()
	end := time.Now()
	stop()
	if err != nil {
		return nil, backfillTiming{}, err
	}
	tm := backfillTiming{total: end.Sub(start)}
	for _, s := range samples {
		if s.applied+1 >= resp.GetRevision() {
			tm.commit = end.Sub(s.at)
			break
		}
	}
	return resp, tm, nil
}

// checkBackfill checks generation gen's answer (every row applied) and reads
// back 1,000 items (100 of the 1,000x1,000 shape) on every node at the
// answer's revision.
func checkBackfill(b *testing.B, tc *testCluster, shape *backfillShape, resp *stockdv1.BackfillResponse, gen int) {
	b.Helper()
	if resp.GetRows() != backfillRows || resp.GetApplied() != backfillRows || resp.GetIgnoredStale() != 0 ||
		resp.GetRejected() != 0 || resp.GetPruned() != 0 {
		b.Fatalf("generation %d answer: got rows %d applied %d stale %d rejected %d pruned %d (first rejected %v), want %d rows all applied",
			gen, resp.GetRows(), resp.GetApplied(), resp.GetIgnoredStale(), resp.GetRejected(), resp.GetPruned(),
			resp.GetRejectedRows(), backfillRows)
	}
	sample := min(1000, len(shape.items)/10)
	skus := make([]string, 0, sample)
	idx := make([]int, 0, sample)
	for k := range sample {
		i := (k*len(shape.items)/sample + gen*37) % len(shape.items)
		skus = append(skus, shape.items[i])
		idx = append(idx, i)
	}
	locs := shape.channelLocations()
	for _, nd := range tc.nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		av, err := nd.c.inv.GetAvailability(ctx, &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: skus, MinRevision: resp.GetRevision()})
		cancel()
		if err != nil {
			b.Fatalf("generation %d: GetAvailability on %s at revision %d: %v", gen, nd.id, resp.GetRevision(), err)
		}
		if len(av.GetSkus()) != len(skus) {
			b.Fatalf("generation %d: GetAvailability on %s of %d SKUs: got %d answers", gen, nd.id, len(skus), len(av.GetSkus()))
		}
		for k, s := range av.GetSkus() {
			got := s.GetLocations()
			if len(got) != len(locs) {
				b.Fatalf("generation %d: %s on %s: got %d locations, want %d", gen, skus[k], nd.id, len(got), len(locs))
			}
			for l, la := range got {
				if want := shape.onHand(idx[k], l, gen); la.GetOnHandBaseUnits() != want || la.GetLocation() != locs[l] {
					b.Fatalf("generation %d: on hand of %s at %s on %s: got %d at %s, want %d",
						gen, skus[k], locs[l], nd.id, la.GetOnHandBaseUnits(), la.GetLocation(), want)
				}
			}
		}
	}
}

// writeBackfillCSV writes generation gen of shape as
// item,location,on_hand,version lines with a header, in item order.
func writeBackfillCSV(b *testing.B, path string, shape *backfillShape, gen int) {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintln(w, "item,location,on_hand,version")
	var line []byte
	for i, item := range shape.items {
		for l, loc := range shape.locations {
			line = append(line[:0], item...)
			line = append(line, ',')
			line = append(line, loc...)
			line = append(line, ',')
			line = strconv.AppendInt(line, shape.onHand(i, l, gen), 10)
			line = append(line, ',')
			line = strconv.AppendInt(line, int64(gen), 10)
			line = append(line, '\n')
			if _, err := w.Write(line); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

// buildStockctl builds cmd/stockctl into a temporary folder.
func buildStockctl(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "stockctl")
	build := exec.Command("go", "build", "-o", bin, "../stockctl")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		b.Fatalf("build stockctl: %v", err)
	}
	return bin
}

// peakResident keeps, over a benchmark's iterations, the highest peak
// resident set (VmHWM) of the busiest node and of the quietest one: the node
// that takes the stream holds more than the others.
type peakResident struct {
	busiest, quietest int64
}

// read takes the peaks of tc's running nodes.
func (pr *peakResident) read(b *testing.B, tc *testCluster) {
	var hi, lo int64
	for _, nd := range tc.nodes {
		nd.mu.Lock()
		p := nd.p
		nd.mu.Unlock()
		if p == nil {
			continue
		}
		v := residentBytes(b, p.cmd.Process.Pid, "VmHWM")
		hi = max(hi, v)
		if lo == 0 || v < lo {
			lo = v
		}
	}
	pr.busiest, pr.quietest = max(pr.busiest, hi), max(pr.quietest, lo)
}

// report reports the peaks in MiB.
func (pr *peakResident) report(b *testing.B) {
	b.ReportMetric(float64(pr.busiest)/(1<<20), "peak-MiB/busiest-node")
	b.ReportMetric(float64(pr.quietest)/(1<<20), "peak-MiB/quietest-node")
}

// profileNodes, when $STOCKD_PROFILE_DIR is set (and the nodes run with
// STOCKD_BENCH_ARGS="--pprof-addr 127.0.0.1:0"), takes a CPU profile of every
// node for $STOCKD_PROFILE_SECONDS (default 5) into NAME-NODE.cpu in that
// folder, then its allocations since it started (NAME-NODE.allocs) and its
// heap (NAME-NODE.heap); stop waits for them.
func profileNodes(b *testing.B, tc *testCluster, name string) (stop func()) {
	dir := os.Getenv("STOCKD_PROFILE_DIR")
	if dir == "" {
		return func() {}
	}
	secs := os.Getenv("STOCKD_PROFILE_SECONDS")
	if secs == "" {
		secs = "5"
	}
	var wg sync.WaitGroup
	for _, nd := range tc.nodes {
		nd.mu.Lock()
		p := nd.p
		nd.mu.Unlock()
		rec := p.waitLog("pprof listening", time.Second)
		addr, _ := rec["addr"].(string)
		wg.Go(func() {
			resp, err := http.Get("http://" + addr + "/debug/pprof/profile?seconds=" + secs)
			if err != nil {
				b.Logf("profile %s: %v", nd.id, err)
				return
			}
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			if err != nil {
				b.Logf("profile %s: %v", nd.id, err)
			}
			if err := os.WriteFile(filepath.Join(dir, name+"-"+nd.id+".cpu"), raw, 0o644); err != nil {
				b.Error(err)
			}
			// Allocations since the node started, and the heap now.
			for _, kind := range []string{"allocs", "heap"} {
				resp, err := http.Get("http://" + addr + "/debug/pprof/" + kind)
				if err != nil {
					b.Logf("%s profile %s: %v", kind, nd.id, err)
					continue
				}
				raw, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					b.Logf("%s profile %s: %v", kind, nd.id, err)
				}
				if err := os.WriteFile(filepath.Join(dir, name+"-"+nd.id+"."+kind), raw, 0o644); err != nil {
					b.Error(err)
				}
			}
		})
	}
	return wg.Wait
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
