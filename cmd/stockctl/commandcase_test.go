package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/stockd/stockd/api/stockdv1"
)

// commandCase is one stockctl invocation against a freshly seeded fake: the
// request the fake must get last, the table rows and text it must print, and
// what its --json answer must hold.
type commandCase struct {
	name string
	// seed, if set, adds to seedCommerce's catalog (st.mu is held).
	seed func(st *fakeState)
	args []string
	// want is the last request the fake gets; nil skips the check.
	want proto.Message
	// wantRows are lines of the table output, split into fields.
	wantRows [][]string
	// wantOut are substrings of the table output.
	wantOut []string
	// resp makes the --json answer's message; jsonLines is how many lines
	// it prints (0 means 1), each a resp; jsonOK judges the last of them.
	resp      func() proto.Message
	jsonLines int
	jsonOK    func(proto.Message) bool
	// jsonWant says what jsonOK checks, for the failure message.
	jsonWant string
}

// May 1st 2026, the ETA of the seeded incoming line.
var seedETA = time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)

// seedCommerce gives the fake a small wholesale catalog: locations ams, fra
// and lyon; channel web over ams and fra; group eu; ROSE on hand at ams (30)
// and fra (24), sold as ROSE-CASE12 (12 per case, mod_revision 41) with
// 120 more on PO-7/1 at ams; two buffer rules; and three reservations on web:
// r-held (2 cases), r-conf (confirmed, ORD-1) and r-old (released).
func seedCommerce(st *fakeState) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, l := range []string{"ams", "fra", "lyon"} {
		st.locations[l] = strings.ToUpper(l)
		st.locOrder = append(st.locOrder, l)
	}
	st.channels["web"] = &stockdv1.Channel{Id: "web", Locations: []string{"ams", "fra"}}
	st.groups["eu"] = []string{"fra", "ams"}
	st.counters[counterKey{"ROSE", "ams"}] = &fakeCounter{onHand: 30, version: 1}
	st.counters[counterKey{"ROSE", "fra"}] = &fakeCounter{onHand: 24, version: 1}
	st.skus["ROSE-CASE12"] = &stockdv1.Sku{Sku: "ROSE-CASE12", Item: "ROSE", Factor: 12}
	st.modRevisions["ROSE-CASE12"] = 41
	st.incoming["PO-7/1"] = &stockdv1.IncomingLine{PoLineId: "PO-7/1", Item: "ROSE", Location: "ams",
		QuantityBaseUnits: 120, Eta: timestamppb.New(seedETA), Version: 1}
	st.buffers[bufferKey{"ROSE", "web", "ams"}] = 6
	st.buffers[bufferKey{"ROSE", "", ""}] = 2
	now := time.Now()
	line := func() []*stockdv1.ReservationLine {
		return []*stockdv1.ReservationLine{{Sku: "ROSE-CASE12", Item: "ROSE", QuantitySkuUnits: 2, Factor: 12,
			Allocations: []*stockdv1.Allocation{{Location: "ams", QuantitySkuUnits: 2, QuantityBaseUnits: 24}}}}
	}
	st.reservations = []*stockdv1.Reservation{
		{Channel: "web", ReservationId: "r-held", State: stockdv1.ReservationState_RESERVATION_STATE_HELD, Lines: line(),
			CreatedAt: timestamppb.New(now), ExpiresAt: timestamppb.New(now.Add(10 * time.Minute))},
		{Channel: "web", ReservationId: "r-old", State: stockdv1.ReservationState_RESERVATION_STATE_RELEASED, Lines: line(),
			CreatedAt: timestamppb.New(now)},
		{Channel: "web", ReservationId: "r-conf", State: stockdv1.ReservationState_RESERVATION_STATE_CONFIRMED, Lines: line(),
			CreatedAt: timestamppb.New(now), OrderRef: "ORD-1", OrderSeq: 9},
	}
	st.revision = 50
}

// runCommandCases runs each case twice, as a table and with --json, each
// time against a fresh seeded fake.
func runCommandCases(t *testing.T, cases []commandCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, addr := startSeededFake(t, tc.seed)
			code, out, errOut := runCLI(t, addr, tc.args...)
			if code != 0 {
				t.Fatalf("%v: got exit %d, stderr %q; want 0", tc.args, code, errOut)
			}
			if tc.want != nil {
				st.mu.Lock()
				got := lastCall(st)
				st.mu.Unlock()
				if !proto.Equal(got, tc.want) {
					t.Errorf("%v: got request %v; want %v", tc.args, got, tc.want)
				}
			}
			for _, row := range tc.wantRows {
				if !hasRow(out, row...) {
					t.Errorf("%v: stdout lacks the row %q; got:\n%s", tc.args, row, out)
				}
			}
			for _, want := range tc.wantOut {
				if !strings.Contains(out, want) {
					t.Errorf("%v: stdout lacks %q; got:\n%s", tc.args, want, out)
				}
			}

			_, addr = startSeededFake(t, tc.seed)
			args := append([]string{"--json"}, tc.args...)
			code, out, errOut = runCLI(t, addr, args...)
			if code != 0 {
				t.Fatalf("%v: got exit %d, stderr %q; want 0", args, code, errOut)
			}
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if want := max(tc.jsonLines, 1); len(lines) != want {
				t.Fatalf("%v: got %d lines %q; want %d", args, len(lines), out, want)
			}
			var m proto.Message
			for _, line := range lines {
				m = tc.resp()
				if err := protojson.Unmarshal([]byte(line), m); err != nil {
					t.Fatalf("%v: got %q, not a %s: %v", args, line, m.ProtoReflect().Descriptor().FullName(), err)
				}
			}
			if tc.jsonOK != nil && !tc.jsonOK(m) {
				t.Errorf("%v: got %v; want %s", args, m, tc.jsonWant)
			}
		})
	}
}

// startSeededFake starts a fake with seedCommerce's catalog and seed's
// additions.
func startSeededFake(t *testing.T, seed func(st *fakeState)) (*fakeState, string) {
	t.Helper()
	st, addr := startFake(t)
	seedCommerce(st)
	if seed != nil {
		st.mu.Lock()
		seed(st)
		st.mu.Unlock()
	}
	return st, addr
}

// lastCall is the last request the fake recorded; st.mu must be held.
func lastCall(st *fakeState) proto.Message {
	if len(st.calls) == 0 {
		return nil
	}
	return st.calls[len(st.calls)-1]
}

// hasRow reports whether some line of out has exactly these fields; a "*"
// field matches any one field (a time stamp).
func hasRow(out string, fields ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		if slices.EqualFunc(strings.Fields(line), fields, func(got, want string) bool { return want == "*" || got == want }) {
			return true
		}
	}
	return false
}

// usageCase is a command line that must fail with an exit status and a
// message on stderr.
type usageCase struct {
	name     string
	args     []string
	wantCode int
	wantErr  string // substring of stderr
}

// runUsageCases runs each case against one seeded fake.
func runUsageCases(t *testing.T, cases []usageCase) {
	t.Helper()
	st, addr := startFake(t)
	seedCommerce(st)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, addr, tc.args...)
			if code != tc.wantCode || !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("%v: got exit %d, stderr %q; want %d and %q", tc.args, code, errOut, tc.wantCode, tc.wantErr)
			}
			if tc.wantCode == 2 && out != "" {
				t.Errorf("%v: got stdout %q on a usage error; want none", tc.args, out)
			}
		})
	}
}
