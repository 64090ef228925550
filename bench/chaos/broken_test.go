package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/stockd/stockd/api/stockdv1"
)

// The harness's self-test on real processes (STYLE.md: a checker is shown to
// fail on a deliberately broken build). Each test builds stockd with one
// stockd_broken_* tag, runs a short schedule aimed at that bug on a 3-node
// cluster, and asserts that the checker meant to catch it reports a
// violation; then it runs the same schedule on the normal build and asserts
// that no checker reports anything, so the checker tells the two apart.
// A schedule whose precondition did not happen (a write that got no answer,
// a confirm slower than the hold's TTL) is inconclusive and run again on a
// fresh cluster, at most brokenAttempts times.

// brokenAttempts bounds the runs of one schedule on one build.
const brokenAttempts = 3

// Checker names, the keys of a verdict.
const (
	chkLinearizable = "linearizability"
	chkReads        = "reads (I1)"
	chkAcks         = "acknowledgements (I2, I3)"
	chkRetryAnswers = "retry answers (I3)"
	chkAppliedOnce  = "applied once (I3)"
	chkDigests      = "digests (I4)"
	chkFinalFigures = "final figures (I1, I4)"
	chkCrashes      = "crashes"
)

// verdict maps each checker to the violations it reported on one run.
type verdict map[string][]string

func (v verdict) String() string {
	names := make([]string, 0, len(v))
	for n := range v {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		if len(v[n]) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n  %s: %d violation(s), first: %s", n, len(v[n]), v[n][0])
	}
	if b.Len() == 0 {
		return "no violations"
	}
	return b.String()
}

// scenario runs a schedule on a fresh cluster with the catalog set up and
// records its operations in d; it returns "" or why the run is
// inconclusive. t.Fatal is for harness failures only.
type scenario func(ctx context.Context, t *testing.T, d *driver) (inconclusive string)

// brokenCase is one deliberately broken build and what must catch it.
type brokenCase struct {
	tag      string
	skus     []string // linearizability-checked SKUs the schedule uses
	schedule scenario
	// catchers must each report at least one violation on the broken build.
	catchers []string
}

// TestBrokenStaleReadIsCaughtByLinearizability: a linearizable read answered
// from the node's memory without the read index (stockd_broken_stale_read).
// The leader is isolated, the new majority acknowledges a reserve, and then
// a linearizable read goes to the old leader: the broken build answers the
// figure from before the reserve, which porcupine rejects; the normal build
// refuses the read (no quorum), which has no effect to model.
func TestBrokenStaleReadIsCaughtByLinearizability(t *testing.T) {
	testBroken(t, brokenCase{tag: "stockd_broken_stale_read", skus: []string{"stale"}, schedule: staleReadSchedule,
		catchers: []string{chkLinearizable}})
}

// TestBrokenIdempotencyIsCaughtByRetryChecks: a repeated reservation id
// applied again instead of answered with the first answer
// (stockd_broken_idempotency). A reserve is sent twice, released, and sent
// once more (a late duplicate): the broken build holds the units again each
// time. The retry-answer checker sees a hold created anew, the applied-once
// checker sees units reserved that no hold accounts for, and the
// acknowledgement checker sees the released hold back in HELD.
func TestBrokenIdempotencyIsCaughtByRetryChecks(t *testing.T) {
	testBroken(t, brokenCase{tag: "stockd_broken_idempotency", skus: []string{"idem"}, schedule: idempotencySchedule,
		catchers: []string{chkRetryAnswers, chkAppliedOnce, chkAcks}})
}

// TestBrokenClockExpiryIsCaughtByConvergence: each replica moves its state
// machine's time (and so expiry) by its own clock at apply time instead of
// the entry's time (stockd_broken_clock_expiry, cluster/broken_clock_expiry.go;
// store itself never reads a clock). A follower is paused, a 1 s hold is
// reserved and confirmed on the leader, and the follower resumes after the
// hold's deadline: the follower stamps the hold with its own later time, so
// its state digest differs from the others' at the same index (I4).
func TestBrokenClockExpiryIsCaughtByConvergence(t *testing.T) {
	testBroken(t, brokenCase{tag: "stockd_broken_clock_expiry", skus: []string{"clock"}, schedule: clockExpirySchedule,
		catchers: []string{chkDigests}})
}

func testBroken(t *testing.T, bc brokenCase) {
	if testing.Short() {
		t.Skip("fault harness: skipped with -short")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin, err := BuildStockdTags(ctx, dir, bc.tag)
	if err != nil {
		t.Fatalf("build with tag %s: %v", bc.tag, err)
	}
	t.Run("the broken build is caught", func(t *testing.T) {
		var last verdict
		for attempt := 1; attempt <= brokenAttempts; attempt++ {
			v, inconclusive := runBrokenSchedule(ctx, t, bin, bc, attempt)
			if inconclusive != "" {
				t.Logf("attempt %d inconclusive: %s", attempt, inconclusive)
				continue
			}
			last = v
			var missed []string
			for _, name := range bc.catchers {
				if len(v[name]) == 0 {
					missed = append(missed, name)
				}
			}
			if len(missed) == 0 {
				t.Logf("tag %s, attempt %d: caught:%s", bc.tag, attempt, v)
				return
			}
			t.Logf("attempt %d: tag %s: %v reported nothing:%s", attempt, bc.tag, missed, v)
		}
		t.Fatalf("tag %s, %d attempts: got %v, want violations from each of %v", bc.tag, brokenAttempts, last, bc.catchers)
	})
	t.Run("the normal build passes the same schedule", func(t *testing.T) {
		for attempt := 1; attempt <= brokenAttempts; attempt++ {
			v, inconclusive := runBrokenSchedule(ctx, t, stockdBin, bc, attempt)
			if inconclusive != "" {
				t.Logf("attempt %d inconclusive: %s", attempt, inconclusive)
				continue
			}
			if s := v.String(); s != "no violations" {
				t.Fatalf("normal build, schedule for %s: got%s; want no violations", bc.tag, s)
			}
			return
		}
		t.Fatalf("normal build, schedule for %s: got %d inconclusive runs, want a conclusive one", bc.tag, brokenAttempts)
	})
}

// runBrokenSchedule starts a 3-node cluster of bin, sets up the catalog,
// runs the schedule, heals and runs every checker.
func runBrokenSchedule(ctx context.Context, t *testing.T, bin string, bc brokenCase, attempt int) (verdict, string) {
	t.Helper()
	logDir := filepath.Join(t.ArtifactDir(), "attempt-"+strconv.Itoa(attempt))
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	c, err := StartCluster(sctx, ClusterConfig{Bin: bin, Dir: t.TempDir(), LogDir: logDir})
	defer c.Close()
	if err != nil {
		t.Fatalf("start cluster of %s: %v", bin, err)
	}
	d := &driver{c: c, start: time.Now(), skus: bc.skus}
	if err := d.setup(sctx); err != nil {
		t.Fatalf("setup: %v", err)
	}
	inconclusive := bc.schedule(sctx, t, d)
	if inconclusive != "" {
		return nil, inconclusive
	}
	v := d.check(sctx, t)
	if s := v.String(); s != "no violations" {
		if err := writeHistory(filepath.Join(logDir, "history.json"), d.ops); err != nil {
			t.Logf("save history: %v", err)
		}
		t.Logf("history and node logs of attempt %d in %s (kept with go test -artifacts)", attempt, logDir)
	}
	return v, ""
}

// brokenStock is every SKU's on hand at the start (version 1).
const brokenStock = 30

// driver issues a schedule's operations one by one against chosen nodes and
// records them as the workload does, so the same checkers judge them.
type driver struct {
	c     *Cluster
	start time.Time
	skus  []string
	ops   []op
}

func (d *driver) now() int64 { return time.Since(d.start).Nanoseconds() }

// setup declares the location and channel and stocks the SKUs and finalItem.
func (d *driver) setup(ctx context.Context) error {
	var rows []*stockdv1.StockCount
	for _, s := range append(append([]string(nil), d.skus...), finalItem) {
		rows = append(rows, &stockdv1.StockCount{Item: s, Location: chaosLocation, OnHandBaseUnits: brokenStock, Version: 1})
	}
	nd := d.c.Nodes[0]
	return retry(ctx, "setup", func(ctx context.Context) error {
		if _, err := nd.Adm.PutLocation(ctx, &stockdv1.PutLocationRequest{Location: &stockdv1.Location{Id: chaosLocation, Name: chaosLocation}}); err != nil {
			return err
		}
		if _, err := nd.Adm.PutChannel(ctx, &stockdv1.PutChannelRequest{Channel: &stockdv1.Channel{Id: chaosChannel, Locations: []string{chaosLocation}}}); err != nil {
			return err
		}
		resp, err := nd.Erp.SetStock(ctx, &stockdv1.SetStockRequest{Rows: rows})
		if err != nil {
			return err
		}
		for i, r := range resp.GetRows() {
			if r.GetStatus() != stockdv1.RowStatus_ROW_STATUS_APPLIED {
				return fmt.Errorf("setup row %d: %v %s", i, r.GetStatus(), r.GetReason())
			}
		}
		return nil
	})
}

// write runs one write on node: its calls (the same request each time)
// while the outcome is indeterminate, at most 4 within about 8 s; it fills
// o's timing and outcome and records it. call may set o's answer fields.
func (d *driver) write(ctx context.Context, client, node int, o *op, call func(ctx context.Context, nd *Node) error) op {
	o.Client, o.Node, o.Call = client, node, d.now()
	var err error
	for o.Attempts < 4 {
		o.Attempts++
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err = call(cctx, d.c.Nodes[node])
		cancel()
		if err == nil || !indeterminate(err) || ctx.Err() != nil {
			break
		}
		if wait(ctx, 100*time.Millisecond) != nil {
			break
		}
	}
	o.Return = d.now()
	switch {
	case err == nil:
		o.Outcome = outOK
	case indeterminate(err):
		o.Outcome, o.Err = outUnknown, err.Error()
	default:
		o.Outcome, o.Err = outRefused, err.Error()
	}
	d.ops = append(d.ops, *o)
	return *o
}

// reserve holds qty of sku under id for ttl; a call with an id already used
// is a retry (the same request). Its answer is the hold's created_at.
func (d *driver) reserve(ctx context.Context, client, node int, id, sku string, qty int64, ttl time.Duration) op {
	req := &stockdv1.ReserveRequest{Channel: chaosChannel, ReservationId: id, Ttl: durationpb.New(ttl),
		Lines: []*stockdv1.ReserveLine{{Sku: sku, Quantity: qty, Location: chaosLocation}}}
	o := op{Kind: opReserve, ID: id, Lines: []line{{SKU: sku, Qty: qty}}}
	return d.write(ctx, client, node, &o, func(ctx context.Context, nd *Node) error {
		resp, err := nd.Inv.Reserve(ctx, req)
		if err == nil {
			o.Revision = resp.GetRevision()
			o.Answer = "created_at " + strconv.FormatInt(resp.GetReservation().GetCreatedAt().AsTime().UnixNano(), 10)
		}
		return err
	})
}

func (d *driver) release(ctx context.Context, client, node int, id, sku string, qty int64) op {
	o := op{Kind: opRelease, ID: id, Lines: []line{{SKU: sku, Qty: qty}}}
	return d.write(ctx, client, node, &o, func(ctx context.Context, nd *Node) error {
		_, err := nd.Inv.Release(ctx, &stockdv1.ReleaseRequest{Channel: chaosChannel, ReservationId: id})
		return err
	})
}

func (d *driver) confirm(ctx context.Context, client, node int, id, sku string, qty int64) op {
	o := op{Kind: opConfirm, ID: id, Lines: []line{{SKU: sku, Qty: qty}}}
	return d.write(ctx, client, node, &o, func(ctx context.Context, nd *Node) error {
		_, err := nd.Inv.Confirm(ctx, &stockdv1.ConfirmRequest{Channel: chaosChannel, ReservationId: id, OrderRef: "o-" + id})
		return err
	})
}

// readLin is one linearizable read of sku on node, tried once; a read that
// gets no answer is recorded as failed (no effect to model).
func (d *driver) readLin(ctx context.Context, client, node int, sku string) op {
	o := op{Kind: opReadLin, Client: client, Node: node, Attempts: 1, Call: d.now()}
	cctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	resp, err := d.c.Nodes[node].Inv.GetAvailability(cctx, &stockdv1.GetAvailabilityRequest{Channel: chaosChannel, Skus: []string{sku}, Linearizable: true})
	cancel()
	o.Return = d.now()
	if err != nil {
		o.Outcome, o.Err = outFailed, err.Error()
	} else {
		o.Outcome, o.Revision, o.Reads = outOK, resp.GetRevision(), readsOf(resp.GetSkus())
	}
	d.ops = append(d.ops, o)
	return o
}

// awaitLeader polls (every 50 ms, within 15 s) until a node other than
// not leads with the highest term, and returns its index.
func (d *driver) awaitLeader(ctx context.Context, not int) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		if l := d.c.Leader(ctx); l >= 0 && l != not {
			return l, nil
		}
		if err := wait(ctx, 50*time.Millisecond); err != nil {
			return -1, fmt.Errorf("no leader other than node %d: %w", not+1, err)
		}
	}
}

// staleReadSchedule: isolate the leader; once the majority has elected
// another, reserve there, then read linearizably from the isolated node.
func staleReadSchedule(ctx context.Context, t *testing.T, d *driver) string {
	const sku = "stale"
	old, err := d.awaitLeader(ctx, -1)
	if err != nil {
		t.Fatal(err)
	}
	if o := d.reserve(ctx, 0, old, "s-1", sku, 2, holdTTL); o.Outcome != outOK {
		return "reserve before the isolation: " + string(o.Outcome) + " " + o.Err
	}
	d.readLin(ctx, 1, old, sku)
	d.c.Partition(linkRefuse, []int{old}, others(d.c, old))
	t.Logf("isolated leader %s", d.c.Nodes[old].ID)
	leader, err := d.awaitLeader(ctx, old)
	if err != nil {
		return err.Error()
	}
	if o := d.reserve(ctx, 0, leader, "s-2", sku, 3, holdTTL); o.Outcome != outOK {
		return "reserve on the new leader: " + string(o.Outcome) + " " + o.Err
	}
	// The reserve returned before these reads begin: a linearizable read
	// must show it, or fail.
	for range 2 {
		d.readLin(ctx, 1, old, sku)
	}
	d.readLin(ctx, 2, leader, sku)
	return ""
}

// idempotencySchedule: reserve, the same request again, release, and the
// same request once more, with linearizable reads between.
func idempotencySchedule(ctx context.Context, t *testing.T, d *driver) string {
	const sku, id = "idem", "i-1"
	for _, step := range []func() op{
		func() op { return d.reserve(ctx, 0, 0, id, sku, 2, holdTTL) },
		func() op { return d.reserve(ctx, 0, 1, id, sku, 2, holdTTL) }, // a retry
		func() op { return d.readLin(ctx, 1, 2, sku) },
		func() op { return d.release(ctx, 0, 2, id, sku, 2) },
		func() op { return d.reserve(ctx, 0, 0, id, sku, 2, holdTTL) }, // a late duplicate
		func() op { return d.readLin(ctx, 1, 1, sku) },
	} {
		if o := step(); o.Outcome != outOK {
			return fmt.Sprintf("%s %s on node%d: %s %s", o.Kind, o.ID, o.Node+1, o.Outcome, o.Err)
		}
	}
	return ""
}

// clockTTL is the hold's TTL in the clock schedule (the minimum stockd takes).
const clockTTL = time.Second

// clockExpirySchedule: pause a follower; reserve a short hold on the leader
// and confirm it well before its deadline; resume the follower once the
// deadline has passed on the clock, so it applies both entries after it.
func clockExpirySchedule(ctx context.Context, t *testing.T, d *driver) string {
	const sku, id = "clock", "k-1"
	leader, err := d.awaitLeader(ctx, -1)
	if err != nil {
		t.Fatal(err)
	}
	follower := (leader + 1) % len(d.c.Nodes)
	d.c.Pause(d.c.Nodes[follower])
	defer d.c.Resume(d.c.Nodes[follower])
	t.Logf("paused follower %s", d.c.Nodes[follower].ID)
	r := d.reserve(ctx, 0, leader, id, sku, 2, clockTTL)
	if r.Outcome != outOK {
		return "reserve: " + string(r.Outcome) + " " + r.Err
	}
	cf := d.confirm(ctx, 0, leader, id, sku, 2)
	if cf.Outcome != outOK {
		return "confirm: " + string(cf.Outcome) + " " + cf.Err
	}
	// The leader applied the confirm before answering and the hold's
	// deadline is at least the reserve's call plus the TTL: an answer well
	// within the TTL means the leader confirmed a live hold.
	if late := time.Duration(cf.Return - r.Call); late >= clockTTL*8/10 {
		return fmt.Sprintf("confirm acknowledged %v after the reserve began, want well within the %v TTL", late, clockTTL)
	}
	// Hold the pause until the deadline (at most the reserve's return plus
	// the TTL) is 500 ms past: a schedule step.
	if err := wait(ctx, time.Duration(r.Return-d.now())+clockTTL+500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	d.c.Resume(d.c.Nodes[follower])
	t.Logf("resumed follower %s", d.c.Nodes[follower].ID)
	d.readLin(ctx, 1, leader, sku)
	return ""
}

// check heals the cluster, makes the final write, waits for every node to
// apply it and runs every checker.
func (d *driver) check(ctx context.Context, t *testing.T) verdict {
	t.Helper()
	v := verdict{}
	for _, err := range d.c.Exited() {
		v[chkCrashes] = append(v[chkCrashes], err.Error())
	}
	if err := d.c.Restore(); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if err := d.c.WaitReady(ctx, len(d.c.Nodes)); err != nil {
		t.Fatalf("cluster did not recover after the heal: %v", err)
	}
	var rev uint64
	err := retry(ctx, "final write", func(ctx context.Context) error {
		resp, err := d.c.Nodes[0].Erp.SetStock(ctx, &stockdv1.SetStockRequest{Rows: []*stockdv1.StockCount{
			{Item: finalItem, Location: chaosLocation, OnHandBaseUnits: brokenStock + 1, Version: 2}}})
		rev = resp.GetRevision()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	err = retry(ctx, "convergence", func(ctx context.Context) error {
		st, err := d.c.Nodes[0].Cl.Status(ctx, &stockdv1.StatusRequest{IncludeDigests: true})
		if err != nil {
			return err
		}
		var ms []memberView
		for _, m := range st.GetMembers() {
			ms = append(ms, memberView{ID: m.GetNodeId(), Applied: m.GetAppliedIndex(), Digest: m.GetStateDigest()})
		}
		settled, viol := checkDigests(ms)
		if len(viol) > 0 {
			v[chkDigests] = viol
			return nil
		}
		if !settled || ms[0].Applied < rev {
			return fmt.Errorf("not settled at revision %d: %+v", rev, ms)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	figs := make([]map[string]skuRead, len(d.c.Nodes))
	res := make([]map[string]resView, len(d.c.Nodes))
	for i, nd := range d.c.Nodes {
		if res[i], err = listReservations(ctx, nd, rev); err != nil {
			t.Fatalf("final reservations of %s: %v", nd.ID, err)
		}
		err := retry(ctx, "final figures of "+nd.ID, func(ctx context.Context) error {
			resp, err := nd.Inv.GetAvailability(ctx, &stockdv1.GetAvailabilityRequest{Channel: chaosChannel, Skus: d.skus, MinRevision: rev})
			if err != nil {
				return err
			}
			figs[i] = map[string]skuRead{}
			for _, rd := range readsOf(resp.GetSkus()) {
				figs[i][rd.SKU] = rd
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	all := func(string) bool { return true } // the schedules never lower on hand
	v[chkReads] = checkReads(d.ops, all)
	v[chkAcks] = checkAcks(d.ops, res)
	v[chkRetryAnswers] = checkRetryAnswers(d.ops)
	v[chkAppliedOnce] = checkAppliedOnce(figs, res)
	v[chkFinalFigures] = checkFinalFigures(figs, all)
	resolveUnknowns(d.ops, res[0])
	for _, l := range checkLinearizable(d.ops, d.skus, brokenStock, 30*time.Second) {
		if l.result != porcupine.Ok {
			v[chkLinearizable] = append(v[chkLinearizable], fmt.Sprintf("SKU %s history of %d operations: %s", l.sku, l.ops, l.result))
		}
	}
	return v
}
