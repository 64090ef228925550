package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/stockd/stockd/api/stockdv1"
)

func TestChannelCommandsSendAndPrint(t *testing.T) {
	const eta = "2026-05-01T00:00:00Z"
	held := stockdv1.ReservationState_RESERVATION_STATE_HELD
	runCommandCases(t, []commandCase{
		{
			name: "avail shows the pack factor, mod_revision and incoming supply",
			args: []string{"avail", "--channel", "web", "ROSE-CASE12"},
			want: &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: []string{"ROSE-CASE12"}},
			wantRows: [][]string{
				{"SKU", "ITEM", "FACTOR", "MOD_REVISION", "AVAILABLE", "LOCATION", "LOC_AVAILABLE", "ON_HAND", "RESERVED", "COMMITTED", "BUFFER", "OVERSOLD"},
				{"ROSE-CASE12", "ROSE", "12", "41", "4", "ams", "2", "30", "0", "0", "0", "0"},
				{"fra", "2", "24", "0", "0", "0", "0"},
				{"SKU", "PO_LINE", "LOCATION", "ETA", "AVAILABLE"},
				{"ROSE-CASE12", "PO-7/1", "ams", eta, "10"},
			},
			wantOut: []string{"incoming supply a backorder may take:\n", "channel web, revision 50\n"},
			resp:    func() proto.Message { return &stockdv1.GetAvailabilityResponse{} },
			jsonOK: func(m proto.Message) bool {
				a := m.(*stockdv1.GetAvailabilityResponse).GetSkus()[0]
				return a.GetFactor() == 12 && a.GetModRevision() == 41 && len(a.GetIncoming()) == 1 &&
					a.GetIncoming()[0].GetAvailableSkuUnits() == 10
			},
			jsonWant: "factor 12, mod_revision 41 and 10 cases incoming",
		},
		{
			name: "reserve sends --expect to the SKU's lines and --backorder to every line",
			args: []string{"reserve", "--channel", "web", "--id", "cart-1", "--expect", "ROSE-CASE12=41", "--backorder",
				"ROSE-CASE12=3", "ROSE=5@fra"},
			want: &stockdv1.ReserveRequest{Channel: "web", ReservationId: "cart-1", Ttl: durationpb.New(15 * time.Minute),
				Lines: []*stockdv1.ReserveLine{
					{Sku: "ROSE-CASE12", Quantity: 3, ExpectedModRevision: 41, AllowBackorder: true},
					{Sku: "ROSE", Quantity: 5, Location: "fra", AllowBackorder: true},
				}},
			wantRows: [][]string{
				{"LINE", "SKU", "ITEM", "QUANTITY", "FACTOR", "LOCATION", "SKU_UNITS", "BASE_UNITS", "PO_LINE", "PROMISED"},
				{"0", "ROSE-CASE12", "ROSE", "3", "12", "ams", "3", "36", "PO-7/1", eta},
				{"1", "ROSE", "ROSE", "5", "1", "fra", "5", "5"},
			},
			wantOut: []string{"reservation cart-1 on channel web: HELD\n"},
			resp:    func() proto.Message { return &stockdv1.ReserveResponse{} },
			jsonOK: func(m proto.Message) bool {
				l := m.(*stockdv1.ReserveResponse).GetReservation().GetLines()[0]
				return l.GetAllocations()[0].GetPoLineId() == "PO-7/1" && l.GetPromisedAt().AsTime().Equal(seedETA)
			},
			jsonWant: "line 0 backordered on PO-7/1, promised 2026-05-01",
		},
		{
			name: "release with LINE=QTY gives back part of a hold",
			args: []string{"release", "--channel", "web", "--id", "r-held", "--release-id", "rel-1", "0=1"},
			want: &stockdv1.ReleaseRequest{Channel: "web", ReservationId: "r-held", ReleaseId: "rel-1",
				Lines: []*stockdv1.ReleaseLine{{Line: 0, Quantity: 1}}},
			wantRows: [][]string{{"0", "ROSE-CASE12", "ROSE", "1", "12", "ams", "1", "12"}},
			wantOut:  []string{"reservation r-held on channel web: HELD\n", "revision 51\n"},
			resp:     func() proto.Message { return &stockdv1.ReleaseResponse{} },
			jsonOK: func(m proto.Message) bool {
				return m.(*stockdv1.ReleaseResponse).GetReservation().GetLines()[0].GetQuantitySkuUnits() == 1
			},
			jsonWant: "line 0 down to 1 case",
		},
		{
			name:    "release without lines gives back the whole hold",
			args:    []string{"release", "--channel", "web", "--id", "r-held"},
			want:    &stockdv1.ReleaseRequest{Channel: "web", ReservationId: "r-held"},
			wantOut: []string{"reservation r-held on channel web: RELEASED\n"},
			resp:    func() proto.Message { return &stockdv1.ReleaseResponse{} },
			jsonOK: func(m proto.Message) bool {
				return m.(*stockdv1.ReleaseResponse).GetReservation().GetState() == stockdv1.ReservationState_RESERVATION_STATE_RELEASED
			},
			jsonWant: "state RELEASED",
		},
		{
			name: "extend sends the ttl and extend id",
			args: []string{"extend", "--channel", "web", "--id", "r-held", "--ttl", "30m", "--extend-id", "ext-1"},
			want: &stockdv1.ExtendRequest{Channel: "web", ReservationId: "r-held", ExtendId: "ext-1",
				Ttl: durationpb.New(30 * time.Minute)},
			wantOut: []string{"extend id ext-1\n", "reservation r-held on channel web: HELD\n", "expires "},
			resp:    func() proto.Message { return &stockdv1.ExtendResponse{} },
			jsonOK: func(m proto.Message) bool {
				left := time.Until(m.(*stockdv1.ExtendResponse).GetReservation().GetExpiresAt().AsTime())
				return left > 20*time.Minute && left <= 30*time.Minute
			},
			jsonWant: "a deadline about 30 minutes away",
		},
		{
			name:    "cancel-order takes back a confirmed order",
			args:    []string{"cancel-order", "--channel", "web", "--id", "r-conf"},
			want:    &stockdv1.CancelOrderRequest{Channel: "web", ReservationId: "r-conf"},
			wantOut: []string{"reservation r-conf on channel web: CANCELLED\n", "order ORD-1 (outbox sequence 9)\n"},
			resp:    func() proto.Message { return &stockdv1.CancelOrderResponse{} },
			jsonOK: func(m proto.Message) bool {
				return m.(*stockdv1.CancelOrderResponse).GetReservation().GetState() == stockdv1.ReservationState_RESERVATION_STATE_CANCELLED
			},
			jsonWant: "state CANCELLED",
		},
		{
			name: "reservations lists one state",
			args: []string{"reservations", "--channel", "web", "--state", "HELD"},
			want: &stockdv1.ListReservationsRequest{Channel: "web", State: held},
			wantRows: [][]string{
				{"RESERVATION", "STATE", "LINES", "SKU_UNITS", "CREATED", "EXPIRES", "ORDER"},
				{"r-held", "HELD", "1", "2", "*", "*", "-"},
			},
			wantOut: []string{"listed 1 on channel web, revision 50\n"},
			resp:    func() proto.Message { return &stockdv1.ListReservationsResponse{} },
			jsonOK: func(m proto.Message) bool {
				r := m.(*stockdv1.ListReservationsResponse).GetReservations()
				return len(r) == 1 && r[0].GetReservationId() == "r-held"
			},
			jsonWant: "r-held alone",
		},
		{
			name: "reservations sends the expiring window and limit and prints the next page token",
			args: []string{"reservations", "--channel", "web", "--expiring-within", "1h", "--limit", "1", "--state", "held"},
			want: &stockdv1.ListReservationsRequest{Channel: "web", State: held, PageSize: 1,
				ExpiringWithin: durationpb.New(time.Hour)},
			wantOut: []string{"r-held", "listed 1 on channel web"},
			resp:    func() proto.Message { return &stockdv1.ListReservationsResponse{} },
		},
		{
			name:     "reservations without --all prints one page and the token of the next",
			args:     []string{"reservations", "--channel", "web", "--limit", "1"},
			want:     &stockdv1.ListReservationsRequest{Channel: "web", PageSize: 1},
			wantRows: [][]string{{"r-conf", "CONFIRMED", "1", "2", "*", "-", "ORD-1"}},
			wantOut:  []string{"listed 1 on channel web", "more: --page-token r-conf (or --all)\n"},
			resp:     func() proto.Message { return &stockdv1.ListReservationsResponse{} },
			jsonOK: func(m proto.Message) bool {
				return m.(*stockdv1.ListReservationsResponse).GetNextPageToken() == "r-conf"
			},
			jsonWant: "next page token r-conf",
		},
		{
			name:      "reservations --all follows the page tokens",
			args:      []string{"reservations", "--channel", "web", "--limit", "1", "--all"},
			want:      &stockdv1.ListReservationsRequest{Channel: "web", PageSize: 1, PageToken: "r-held"},
			wantOut:   []string{"r-conf", "r-held", "r-old", "listed 3 on channel web"},
			resp:      func() proto.Message { return &stockdv1.ListReservationsResponse{} },
			jsonLines: 3,
			jsonOK: func(m proto.Message) bool {
				r := m.(*stockdv1.ListReservationsResponse)
				return len(r.GetReservations()) == 1 && r.GetReservations()[0].GetReservationId() == "r-old" && r.GetNextPageToken() == ""
			},
			jsonWant: "a last page with r-old and no token",
		},
		{
			name:    "release-all releases the channel's live holds",
			args:    []string{"release-all", "--channel", "web", "--id", "incident-1"},
			want:    &stockdv1.ReleaseAllRequest{Channel: "web", ReleaseAllId: "incident-1"},
			wantOut: []string{"released 1 live holds on channel web (release-all id incident-1), revision 51\n"},
			resp:    func() proto.Message { return &stockdv1.ReleaseAllResponse{} },
			jsonOK: func(m proto.Message) bool {
				return m.(*stockdv1.ReleaseAllResponse).GetReleased() == 1
			},
			jsonWant: "released 1",
		},
	})
}

func TestReservationsTableRows(t *testing.T) {
	st, addr := startFake(t)
	seedCommerce(st)
	code, out, errOut := runCLI(t, addr, "reservations", "--channel", "web")
	if code != 0 {
		t.Fatalf("reservations: got exit %d, stderr %q; want 0", code, errOut)
	}
	// In id order; only a live hold has a deadline, only an order a reference.
	stamp := `\d{4}-\d\d-\d\dT[0-9:.]+Z`
	want := regexp.MustCompile(`(?m)^r-conf +CONFIRMED +1 +2 +` + stamp + ` +- +ORD-1\n` +
		`r-held +HELD +1 +2 +` + stamp + ` +` + stamp + ` +-\n` +
		`r-old +RELEASED +1 +2 +` + stamp + ` +- +-\n` +
		`listed 3 on channel web, revision 50\n$`)
	if !want.MatchString(out) {
		t.Errorf("reservations: got:\n%s\nwant rows matching %s", out, want)
	}
	if strings.Contains(out, "more:") {
		t.Errorf("reservations: got a next page token in:\n%s\nwant none on the last page", out)
	}
}

func TestGeneratedIDsAreSentAndShown(t *testing.T) {
	hex := regexp.MustCompile(`^[0-9a-f]{16}$`)
	st, addr := startFake(t)
	seedCommerce(st)

	code, out, errOut := runCLI(t, addr, "extend", "--channel", "web", "--id", "r-held", "--ttl", "5m")
	if code != 0 {
		t.Fatalf("extend without --extend-id: got exit %d, stderr %q; want 0", code, errOut)
	}
	st.mu.Lock()
	ext := lastCall(st).(*stockdv1.ExtendRequest)
	st.mu.Unlock()
	if !hex.MatchString(ext.GetExtendId()) || !strings.Contains(out, "extend id "+ext.GetExtendId()+"\n") {
		t.Errorf("extend without --extend-id: sent %q, printed:\n%s\nwant 16 hex digits, printed", ext.GetExtendId(), out)
	}

	code, out, errOut = runCLI(t, addr, "release-all", "--channel", "web")
	if code != 0 {
		t.Fatalf("release-all without --id: got exit %d, stderr %q; want 0", code, errOut)
	}
	st.mu.Lock()
	all := lastCall(st).(*stockdv1.ReleaseAllRequest)
	st.mu.Unlock()
	if !hex.MatchString(all.GetReleaseAllId()) || !strings.Contains(out, "(release-all id "+all.GetReleaseAllId()+")") {
		t.Errorf("release-all without --id: sent %q, printed:\n%s\nwant 16 hex digits, printed", all.GetReleaseAllId(), out)
	}
}

func TestCompareAndReserveLostShowsCurrentFigure(t *testing.T) {
	st, addr := startFake(t)
	seedCommerce(st)
	code, out, errOut := runCLI(t, addr, "reserve", "--channel", "web", "--id", "cart-2", "--expect", "ROSE-CASE12=40", "ROSE-CASE12=1")
	want := "stockctl: ABORTED: lines[0].expected_mod_revision: revision changed (current mod_revision 41, available 4 SKU units)\n"
	if code != 1 || errOut != want || out != "" {
		t.Errorf("reserve --expect ROSE-CASE12=40 at 41: got exit %d, stdout %q, stderr %q; want 1, nothing, %q", code, out, errOut, want)
	}
}

func TestChannelCommandUsageAndServerErrors(t *testing.T) {
	runUsageCases(t, []usageCase{
		{"--expect without =", []string{"reserve", "--channel", "web", "--id", "c", "--expect", "ROSE", "ROSE=1"}, 2,
			`invalid value "ROSE" for flag -expect: want SKU=MOD_REVISION`},
		{"--expect of a SKU no line reserves", []string{"reserve", "--channel", "web", "--id", "c", "--expect", "TULIP=3", "ROSE=1"}, 2,
			`stockctl: reserve: --expect names SKU "TULIP", which no line reserves`},
		{"--expect with revision 0", []string{"reserve", "--channel", "web", "--id", "c", "--expect", "ROSE=0", "ROSE=1"}, 2,
			"must be a whole number > 0"},
		{"--backorder takes no value", []string{"reserve", "--channel", "web", "--id", "c", "--backorder=maybe", "ROSE=1"}, 2,
			"invalid boolean value"},
		{"a partial release needs a release id", []string{"release", "--channel", "web", "--id", "r-held", "0=1"}, 2,
			"stockctl: release: --release-id is required to release part of a hold"},
		{"a release id needs lines", []string{"release", "--channel", "web", "--id", "r-held", "--release-id", "x"}, 2,
			"--release-id needs at least one LINE=QTY argument"},
		{"a bad release line", []string{"release", "--channel", "web", "--id", "r-held", "--release-id", "x", "first=1"}, 2,
			`release: line "first=1": line index "first" is not a whole number >= 0`},
		{"extend needs a ttl", []string{"extend", "--channel", "web", "--id", "r-held"}, 2, "extend: --ttl is required and must be > 0"},
		{"extend needs an id", []string{"extend", "--channel", "web", "--ttl", "1m"}, 2, "extend: --id is required"},
		{"extend takes no arguments", []string{"extend", "--channel", "web", "--id", "r", "--ttl", "1m", "more"}, 2, `unexpected argument "more"`},
		{"cancel-order needs a channel", []string{"cancel-order", "--id", "r-conf"}, 2, "cancel-order: --channel is required"},
		{"reservations needs a channel", []string{"reservations"}, 2, "reservations: --channel is required"},
		{"an unknown state", []string{"reservations", "--channel", "web", "--state", "lost"}, 2,
			`--state: unknown state "lost" (one of: held, confirmed, released, expired, cancelled)`},
		{"a negative window", []string{"reservations", "--channel", "web", "--expiring-within", "-1m"}, 2, "--expiring-within must be > 0"},
		{"too large a page", []string{"reservations", "--channel", "web", "--limit", "1001"}, 2, "--limit must be at most 1000, got 1001"},
		{"release-all needs a channel", []string{"release-all", "--id", "x"}, 2, "release-all: --channel is required"},
		{"usage shows the synopsis", []string{"release-all"}, 2, "usage: stockctl release-all --channel C [--id ID]\n"},
		{"cancelling a hold that is not an order", []string{"cancel-order", "--channel", "web", "--id", "r-held"}, 1,
			"stockctl: FAILED_PRECONDITION: reservation_id: reservation \"r-held\" is not confirmed\n"},
		{"extending an unknown hold", []string{"extend", "--channel", "web", "--id", "nope", "--ttl", "1m"}, 1,
			"stockctl: NOT_FOUND: reservation_id: unknown reservation \"nope\"\n"},
	})
}

func TestParseReleaseLine(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		want    *stockdv1.ReleaseLine
		wantErr string
	}{
		{"a line index and quantity", "0=2", &stockdv1.ReleaseLine{Line: 0, Quantity: 2}, ""},
		{"a later line", "12=1", &stockdv1.ReleaseLine{Line: 12, Quantity: 1}, ""},
		{"no = is refused", "2", nil, "want LINE=QTY"},
		{"a SKU instead of an index is refused", "ROSE=1", nil, `line index "ROSE" is not a whole number >= 0`},
		{"a negative index is refused", "-1=1", nil, "is not a whole number >= 0"},
		{"an index past uint32 is refused", "4294967296=1", nil, "is not a whole number >= 0"},
		{"a missing quantity is refused", "0=", nil, "missing quantity"},
		{"zero is refused", "0=0", nil, "quantity must be > 0"},
		{"a word as quantity is refused", "0=all", nil, `quantity "all" is not a whole number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseReleaseLine(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), tt.spec) {
					t.Fatalf("parseReleaseLine(%q): got %v, %v; want error quoting the input and containing %q", tt.spec, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !proto.Equal(got, tt.want) {
				t.Fatalf("parseReleaseLine(%q): got %v, %v; want %v", tt.spec, got, err, tt.want)
			}
		})
	}
}

func TestExpectFlag(t *testing.T) {
	tests := []struct {
		name    string
		values  []string
		want    string // String() after every Set succeeded
		wantErr string // error of the last Set
	}{
		{"one SKU", []string{"ROSE-CASE12=41"}, "ROSE-CASE12=41", ""},
		{"several SKUs, sorted", []string{"TULIP=7", "ROSE=41"}, "ROSE=41,TULIP=7", ""},
		{"a SKU with = in it", []string{"A=B=9"}, "A=B=9", ""},
		{"the same SKU and revision twice", []string{"ROSE=41", "ROSE=41"}, "ROSE=41", ""},
		{"the same SKU at two revisions", []string{"ROSE=41", "ROSE=42"}, "", "SKU ROSE expected at both 41 and 42"},
		{"no =", []string{"ROSE"}, "", `want SKU=MOD_REVISION, got "ROSE"`},
		{"an empty SKU", []string{"=4"}, "", "want SKU=MOD_REVISION"},
		{"a word as revision", []string{"ROSE=new"}, "", `mod revision "new" of ROSE must be a whole number > 0`},
		{"a negative revision", []string{"ROSE=-1"}, "", "must be a whole number > 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := expectFlag{}
			var err error
			for _, v := range tt.values {
				if err = e.Set(v); err != nil {
					break
				}
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Set(%q): got %v; want error containing %q", tt.values, err, tt.wantErr)
				}
				return
			}
			if err != nil || e.String() != tt.want {
				t.Fatalf("Set(%q): got %q, %v; want %q", tt.values, e.String(), err, tt.want)
			}
		})
	}
}
