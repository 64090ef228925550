package main

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/stockdv1"
)

// demoSnapshot is what one demo run left in the fake.
type demoSnapshot struct {
	onHand   map[counterKey]int64
	versions map[counterKey]uint64
}

func snapshotCounters(st *fakeState) demoSnapshot {
	st.mu.Lock()
	defer st.mu.Unlock()
	s := demoSnapshot{onHand: map[counterKey]int64{}, versions: map[counterKey]uint64{}}
	for k, c := range st.counters {
		s.onHand[k], s.versions[k] = c.onHand, c.version
	}
	return s
}

func TestDemoLoadsCatalogAndHolds(t *testing.T) {
	st, addr := startFake(t)
	code, out, errOut := runCLI(t, addr, "demo")
	if code != 0 {
		t.Fatalf("demo: got exit %d, stderr %q; want 0", code, errOut)
	}

	st.mu.Lock()
	wantLocations := map[string]string{"ams": "Amsterdam", "fra": "Frankfurt", "lyon": "Lyon"}
	if len(st.locations) != 3 {
		t.Errorf("demo: got locations %v; want 3", st.locations)
	}
	for id, name := range wantLocations {
		if st.locations[id] != name {
			t.Errorf("demo: location %s: got name %q; want %q", id, st.locations[id], name)
		}
	}
	wantChannels := map[string]*stockdv1.Channel{
		"web":  {Id: "web", Locations: []string{"ams", "fra", "lyon"}, DefaultBufferBaseUnits: 2},
		"reps": {Id: "reps", Locations: []string{"fra", "ams"}, DefaultBufferBaseUnits: 0},
	}
	if len(st.channels) != 2 {
		t.Errorf("demo: got %d channels; want 2", len(st.channels))
	}
	for id, want := range wantChannels {
		if got := st.channels[id]; !proto.Equal(got, want) {
			t.Errorf("demo: channel %s: got %v; want %v", id, got, want)
		}
	}
	total := 0
	for i, n := range st.setStockBatches {
		if n < 1 || n > 1000 {
			t.Errorf("demo: SetStock call %d: got %d rows; want 1 to 1000", i, n)
		}
		total += n
	}
	if total != 3000 {
		t.Errorf("demo: got %d SetStock rows in %v; want 3000 (1000 SKUs x 3 locations)", total, st.setStockBatches)
	}
	zeros := 0
	for i := range 1000 {
		for loc := range wantLocations {
			c, ok := st.counters[counterKey{fmt.Sprintf("SKU-%04d", i), loc}]
			if !ok {
				t.Fatalf("demo: no count for SKU-%04d@%s", i, loc)
			}
			if c.onHand == 0 {
				zeros++
			}
		}
	}
	if len(st.counters) != 3000 {
		t.Errorf("demo: got %d counters; want 3000", len(st.counters))
	}
	if zeros == 0 || zeros > 1500 {
		t.Errorf("demo: got %d zero counts of 3000; want some, not most", zeros)
	}
	if len(st.reserves) != 1 {
		t.Fatalf("demo: got %d Reserve calls; want 1", len(st.reserves))
	}
	r := st.reserves[0]
	if r.GetChannel() != "web" || len(r.GetLines()) != 1 || r.GetLines()[0].GetQuantity() != 2 ||
		!strings.HasPrefix(r.GetReservationId(), "demo-") {
		t.Errorf("demo: got Reserve %v; want 2 units of one SKU on web with a demo- id", r)
	}
	firstID := r.GetReservationId()
	target := r.GetLines()[0].GetSku()
	st.mu.Unlock()

	for _, want := range []string{"availability on web", "availability on reps", "RESERVED", "reservation " + firstID, "HELD",
		"avail --channel web " + target, "confirm --channel web --id " + firstID, "release --channel web --id " + firstID} {
		if !strings.Contains(out, want) {
			t.Errorf("demo: stdout lacks %q; got:\n%s", want, out)
		}
	}

	// Re-running works: every count is newer, on-hand is the same, and the
	// hold gets a new id.
	before := snapshotCounters(st)
	code, _, errOut = runCLI(t, addr, "demo")
	if code != 0 {
		t.Fatalf("demo again: got exit %d, stderr %q; want 0", code, errOut)
	}
	after := snapshotCounters(st)
	for k, v := range before.versions {
		if after.versions[k] <= v {
			t.Fatalf("demo again: %v version: got %d; want > %d", k, after.versions[k], v)
		}
		if after.onHand[k] != before.onHand[k] {
			t.Fatalf("demo again: %v on-hand: got %d; want %d (fixed seed)", k, after.onHand[k], before.onHand[k])
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.reserves) != 2 || st.reserves[1].GetReservationId() == firstID {
		t.Errorf("demo again: got reserves %v; want a second one with an id other than %q", st.reserves, firstID)
	}
}

func TestDemoShowsTheDropOnWeb(t *testing.T) {
	_, addr := startFake(t)
	code, out, errOut := runCLI(t, addr, "--json", "demo", "--skus", "10")
	if code != 0 {
		t.Fatalf("demo --json: got exit %d, stderr %q; want 0", code, errOut)
	}
	// Stdout is JSON lines only; the prose goes to stderr.
	var avails []*stockdv1.GetAvailabilityResponse
	var reserve *stockdv1.ReserveResponse
	for i, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if !json.Valid([]byte(line)) {
			t.Fatalf("demo --json: line %d: got %q; want a JSON object", i, line)
		}
		a := &stockdv1.GetAvailabilityResponse{}
		if strings.Contains(line, `"skus"`) && protojson.Unmarshal([]byte(line), a) == nil {
			avails = append(avails, a)
		}
		r := &stockdv1.ReserveResponse{}
		if strings.Contains(line, `"reservation"`) && protojson.Unmarshal([]byte(line), r) == nil {
			reserve = r
		}
	}
	if !strings.Contains(errOut, "next, try") {
		t.Errorf("demo --json: stderr lacks the next commands; got %q", errOut)
	}
	// web and reps before the hold, web and reps after it.
	if len(avails) != 4 || reserve == nil {
		t.Fatalf("demo --json: got %d availability answers and reserve %v; want 4 and one", len(avails), reserve)
	}
	target := reserve.GetReservation().GetLines()[0].GetSku()
	if avails[0].GetSkus()[0].GetSku() != target || avails[2].GetSkus()[0].GetSku() != target {
		t.Fatalf("demo --json: got SKUs %v then %v; want %s first in both", avails[0].GetSkus(), avails[2].GetSkus(), target)
	}
	beforeWeb, afterWeb := avails[0].GetSkus()[0].GetAvailableSkuUnits(), avails[2].GetSkus()[0].GetAvailableSkuUnits()
	if afterWeb != beforeWeb-2 {
		t.Errorf("demo --json: web availability of %s: got %d after the hold; want %d - 2", target, afterWeb, beforeWeb)
	}
}

func TestAvailJSONPrintsOneObjectPerLine(t *testing.T) {
	_, addr := startFake(t)
	if code, _, errOut := runCLI(t, addr, "demo", "--skus", "5"); code != 0 {
		t.Fatalf("demo: got exit %d, stderr %q; want 0", code, errOut)
	}
	// Global flags may follow the subcommand, and flags may follow arguments.
	for _, args := range [][]string{
		{"--json", "avail", "--channel", "web", "SKU-0000", "SKU-0004"},
		{"avail", "SKU-0000", "SKU-0004", "--channel", "web", "--json"},
	} {
		code, out, errOut := runCLI(t, addr, args...)
		if code != 0 {
			t.Fatalf("%v: got exit %d, stderr %q; want 0", args, code, errOut)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != 1 {
			t.Fatalf("%v: got %d lines %q; want 1", args, len(lines), out)
		}
		var resp stockdv1.GetAvailabilityResponse
		if err := protojson.Unmarshal([]byte(lines[0]), &resp); err != nil {
			t.Fatalf("%v: got %q, unparseable: %v; want a GetAvailabilityResponse", args, lines[0], err)
		}
		if len(resp.GetSkus()) != 2 || resp.GetSkus()[0].GetSku() != "SKU-0000" || resp.GetSkus()[1].GetSku() != "SKU-0004" ||
			len(resp.GetSkus()[0].GetLocations()) != 3 || resp.GetRevision() == 0 {
			t.Errorf("%v: got %v; want SKU-0000 and SKU-0004 at 3 locations with a revision", args, &resp)
		}
		var raw map[string]any
		if err := json.Unmarshal([]byte(lines[0]), &raw); err != nil {
			t.Fatalf("%v: got %q, not JSON: %v", args, lines[0], err)
		}
	}
}

func TestAvailTablePrintsLocationsAndRevision(t *testing.T) {
	_, addr := startFake(t)
	if code, _, errOut := runCLI(t, addr, "demo", "--skus", "3"); code != 0 {
		t.Fatalf("demo: got exit %d, stderr %q; want 0", code, errOut)
	}
	code, out, errOut := runCLI(t, addr, "avail", "--channel", "reps", "SKU-0001", "NOPE")
	if code != 0 {
		t.Fatalf("avail: got exit %d, stderr %q; want 0", code, errOut)
	}
	for _, want := range []string{"SKU ", "AVAILABLE", "ON_HAND", "RESERVED", "COMMITTED", "BUFFER", "SKU-0001", "fra", "ams",
		"NOPE", "(no ERP count)", "channel reps, revision "} {
		if !strings.Contains(out, want) {
			t.Errorf("avail: stdout lacks %q; got:\n%s", want, out)
		}
	}
	if strings.Contains(out, "lyon") {
		t.Errorf("avail --channel reps: got lyon in:\n%s\nwant only fra and ams", out)
	}
}

func TestReserveSendsLines(t *testing.T) {
	st, addr := startFake(t)
	if code, _, errOut := runCLI(t, addr, "demo", "--skus", "50"); code != 0 {
		t.Fatalf("demo: got exit %d, stderr %q; want 0", code, errOut)
	}
	// Find a SKU reps can take one unit of at fra.
	snap := snapshotCounters(st)
	sku := ""
	for i := range 50 {
		if snap.onHand[counterKey{fmt.Sprintf("SKU-%04d", i), "fra"}] > 2 {
			sku = fmt.Sprintf("SKU-%04d", i)
			break
		}
	}
	if sku == "" {
		t.Fatal("demo --skus 50: no SKU with more than 2 units at fra")
	}
	code, out, errOut := runCLI(t, addr, "reserve", "--channel", "reps", "--id", "rep-1", "--ttl", "90s", sku+"=1@fra", sku+"=1")
	if code != 0 {
		t.Fatalf("reserve: got exit %d, stderr %q; want 0", code, errOut)
	}
	st.mu.Lock()
	got := st.reserves[len(st.reserves)-1]
	st.mu.Unlock()
	want := &stockdv1.ReserveRequest{Channel: "reps", ReservationId: "rep-1", Lines: []*stockdv1.ReserveLine{
		{Sku: sku, Quantity: 1, Location: "fra"}, {Sku: sku, Quantity: 1},
	}}
	if got.GetTtl().AsDuration().Seconds() != 90 {
		t.Errorf("reserve --ttl 90s: got ttl %v; want 90s", got.GetTtl().AsDuration())
	}
	got = proto.CloneOf(got)
	got.Ttl = nil
	if !proto.Equal(got, want) {
		t.Errorf("reserve: got request %v; want %v", got, want)
	}
	for _, want := range []string{"reservation rep-1 on channel reps: HELD", "expires ", sku, "fra", "revision "} {
		if !strings.Contains(out, want) {
			t.Errorf("reserve: stdout lacks %q; got:\n%s", want, out)
		}
	}
}

func TestStockCommandsPrintRowsAndCounts(t *testing.T) {
	st, addr := startFake(t)
	if code, _, errOut := runCLI(t, addr, "location", "add", "ams", "--name", "Amsterdam"); code != 0 {
		t.Fatalf("location add: got exit %d, stderr %q; want 0", code, errOut)
	}
	code, out, errOut := runCLI(t, addr, "stock", "set", "ROSE@ams=40:5", "ROSE@ams=41:5", "ROSE@mars=3")
	if code != 1 {
		t.Fatalf("stock set with an unknown location: got exit %d; want 1", code)
	}
	for _, want := range []string{"APPLIED", "IGNORED_STALE", "REJECTED", `unknown location "mars"`, "applied 1, ignored stale 1, rejected 1, revision "} {
		if !strings.Contains(out, want) {
			t.Errorf("stock set: stdout lacks %q; got:\n%s", want, out)
		}
	}
	if want := "stockctl: 1 of 3 rows rejected\n"; errOut != want {
		t.Errorf("stock set: got stderr %q; want %q", errOut, want)
	}

	// Without a version, a person's count is newer than the ERP's.
	if code, _, errOut := runCLI(t, addr, "stock", "set", "ROSE@ams=12"); code != 0 {
		t.Fatalf("stock set without version: got exit %d, stderr %q; want 0", code, errOut)
	}
	if got := snapshotCounters(st).onHand[counterKey{"ROSE", "ams"}]; got != 12 {
		t.Errorf("stock set ROSE@ams=12: got on-hand %d; want 12", got)
	}

	code, out, errOut = runCLI(t, addr, "stock", "adjust", "--id", "d7", "--reason", "recount", "ROSE@ams=+3", "ROSE@ams=-1")
	if code != 0 {
		t.Fatalf("stock adjust: got exit %d, stderr %q; want 0", code, errOut)
	}
	st.mu.Lock()
	var ids, reasons []string
	for _, a := range st.adjustments {
		ids, reasons = append(ids, a.GetDeltaId()), append(reasons, a.GetReason())
	}
	st.mu.Unlock()
	if strings.Join(ids, ",") != "d7-1,d7-2" || strings.Join(reasons, ",") != "recount,recount" {
		t.Errorf("stock adjust --id d7: got delta ids %v, reasons %v; want d7-1,d7-2 with reason recount", ids, reasons)
	}
	if !strings.Contains(out, "+3") || !strings.Contains(out, "applied 2, ignored stale 0, rejected 0") {
		t.Errorf("stock adjust: got stdout:\n%s\nwant the rows and counts", out)
	}
	if got := snapshotCounters(st).onHand[counterKey{"ROSE", "ams"}]; got != 14 {
		t.Errorf("stock adjust +3 -1 from 12: got on-hand %d; want 14", got)
	}
}

func TestAdminCommands(t *testing.T) {
	st, addr := startFake(t)
	for _, args := range [][]string{
		{"location", "add", "ams", "--name", "Amsterdam"},
		{"location", "add", "--name", "Frankfurt", "fra"},
		{"channel", "put", "web", "--locations", "fra, ams", "--buffer", "3"},
	} {
		if code, _, errOut := runCLI(t, addr, args...); code != 0 {
			t.Fatalf("%v: got exit %d, stderr %q; want 0", args, code, errOut)
		}
	}
	st.mu.Lock()
	gotChannel := st.channels["web"]
	st.mu.Unlock()
	if want := (&stockdv1.Channel{Id: "web", Locations: []string{"fra", "ams"}, DefaultBufferBaseUnits: 3}); !proto.Equal(gotChannel, want) {
		t.Errorf("channel put: got %v; want %v", gotChannel, want)
	}
	_, out, _ := runCLI(t, addr, "location", "list")
	if !strings.Contains(out, "ams  Amsterdam") || !strings.Contains(out, "fra  Frankfurt") {
		t.Errorf("location list: got:\n%s\nwant ams Amsterdam and fra Frankfurt", out)
	}
	_, out, _ = runCLI(t, addr, "channel", "list")
	if !strings.Contains(out, "web") || !strings.Contains(out, "fra,ams") {
		t.Errorf("channel list: got:\n%s\nwant web with fra,ams", out)
	}
}

func TestErrorsAndExitCodes(t *testing.T) {
	_, addr := startFake(t)
	if code, _, errOut := runCLI(t, addr, "demo", "--skus", "2"); code != 0 {
		t.Fatalf("demo: got exit %d, stderr %q; want 0", code, errOut)
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string // substring of stderr
	}{
		{"help succeeds", []string{"help"}, 0, ""},
		{"no command is a usage error", nil, 2, "usage: stockctl"},
		{"an unknown command is a usage error", []string{"frobnicate"}, 2, `stockctl: unknown command "frobnicate"`},
		{"an unknown flag is a usage error", []string{"avail", "--bogus"}, 2, "flag provided but not defined: -bogus"},
		{"a missing channel is a usage error", []string{"avail", "SKU-0000"}, 2, "stockctl: avail: --channel is required"},
		{"avail without SKUs is a usage error", []string{"avail", "--channel", "web"}, 2, "at least one SKU"},
		{"a bad reserve line is a usage error", []string{"reserve", "--channel", "web", "--id", "r1", "SKU-0000=0"}, 2,
			`stockctl: reserve: line "SKU-0000=0": quantity must be > 0`},
		{"a bad stock row is a usage error", []string{"stock", "set", "ROSE=4"}, 2, `want ITEM@LOCATION before =`},
		{"an unsigned delta is a usage error", []string{"stock", "adjust", "ROSE@ams=4"}, 2, "needs a sign"},
		{"a noun without verb is a usage error", []string{"stock"}, 2, "stock: missing subcommand (one of: adjust, set)"},
		{"an unknown verb is a usage error", []string{"channel", "rename"}, 2, `channel: unknown subcommand "rename" (one of: delete, list, put)`},
		{"a word as buffer is a usage error", []string{"buffer", "set", "--item", "X", "lots"}, 2, `buffer "lots" must be a whole number >= 0`},
		{"a negative buffer is a usage error", []string{"buffer", "set", "--item", "X", "--", "-1"}, 2, `buffer "-1" must be a whole number >= 0`},
		{"a negative number reads as a flag", []string{"buffer", "set", "--item", "X", "-1"}, 2, "flag provided but not defined: -1"},
		{"confirm needs an order", []string{"confirm", "--channel", "web", "--id", "r1"}, 2, "--order is required"},
		{"an unknown channel is the server's NOT_FOUND", []string{"avail", "--channel", "nosuch", "SKU-0000"}, 1,
			"stockctl: NOT_FOUND: channel: unknown channel \"nosuch\"\n"},
		{"a short cart is the server's FAILED_PRECONDITION", []string{"reserve", "--channel", "web", "--id", "r9", "SKU-0000=100000"}, 1,
			"stockctl: FAILED_PRECONDITION: lines[0]: insufficient stock for SKU-0000\n"},
		{"a method the server lacks is UNIMPLEMENTED", []string{"confirm", "--channel", "web", "--id", "r1", "--order", "O-1"}, 1, "stockctl: UNIMPLEMENTED: "},
		{"a slow server hits --timeout", []string{"--timeout", "50ms", "reservation", "--channel", "web", "--id", "r1"}, 1,
			"stockctl: DEADLINE_EXCEEDED: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, addr, tt.args...)
			if code != tt.wantCode || !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("%v: got exit %d, stderr %q; want %d and %q", tt.args, code, errOut, tt.wantCode, tt.wantErr)
			}
		})
	}
}

func TestDownServerIsUnavailable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := lis.Addr().String()
	if err := lis.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	code, _, errOut := runCLI(t, addr, "location", "list")
	if code != 1 || !strings.HasPrefix(errOut, "stockctl: UNAVAILABLE: ") {
		t.Errorf("location list against closed %s: got exit %d, stderr %q; want 1 and UNAVAILABLE", addr, code, errOut)
	}
}
