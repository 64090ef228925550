package main

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/stockd/stockd/api/stockdv1"
)

func TestIncomingCommandsSendAndPrint(t *testing.T) {
	runCommandCases(t, []commandCase{
		{
			name: "incoming set sends each row with its ETA and version",
			args: []string{"incoming", "set", "PO-8/1=ROSE@fra:48/12,eta=2026-06-01,version=3", "PO-9/1=TULIP@ams:10,version=4,eta=2026-06-02T09:30:00+02:00"},
			want: &stockdv1.SetIncomingRequest{Lines: []*stockdv1.IncomingLine{
				{PoLineId: "PO-8/1", Item: "ROSE", Location: "fra", QuantityBaseUnits: 48, ReceivedBaseUnits: 12,
					Eta: timestamppb.New(time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)), Version: 3},
				{PoLineId: "PO-9/1", Item: "TULIP", Location: "ams", QuantityBaseUnits: 10,
					Eta: timestamppb.New(time.Date(2026, 6, 2, 7, 30, 0, 0, time.UTC)), Version: 4},
			}},
			wantRows: [][]string{
				{"ROW", "PO_LINE", "ITEM", "LOCATION", "QUANTITY", "RECEIVED", "ETA", "VERSION", "STATUS", "HELD_VERSION", "REASON"},
				{"0", "PO-8/1", "ROSE", "fra", "48", "12", "2026-06-01T00:00:00Z", "3", "APPLIED", "3"},
				{"1", "PO-9/1", "TULIP", "ams", "10", "0", "2026-06-02T07:30:00Z", "4", "APPLIED", "4"},
			},
			wantOut: []string{"applied 2, ignored stale 0, rejected 0, revision 51\n"},
			resp:    func() proto.Message { return &stockdv1.SetIncomingResponse{} },
			jsonOK: func(m proto.Message) bool {
				return m.(*stockdv1.SetIncomingResponse).GetApplied() == 2
			},
			jsonWant: "2 applied",
		},
		{
			name: "incoming list shows what backorders hold on each line",
			seed: func(st *fakeState) { st.backordered["PO-7/1"] = 36 },
			args: []string{"incoming", "list", "--item", "ROSE"},
			want: &stockdv1.ListIncomingRequest{Item: "ROSE"},
			wantRows: [][]string{
				{"PO_LINE", "ITEM", "LOCATION", "QUANTITY", "RECEIVED", "BACKORDERED", "ETA", "VERSION"},
				{"PO-7/1", "ROSE", "ams", "120", "0", "36", "2026-05-01T00:00:00Z", "1"},
			},
			wantOut: []string{"revision 50\n"},
			resp:    func() proto.Message { return &stockdv1.ListIncomingResponse{} },
			jsonOK: func(m proto.Message) bool {
				l := m.(*stockdv1.ListIncomingResponse).GetLines()
				return len(l) == 1 && l[0].GetBackorderedBaseUnits() == 36
			},
			jsonWant: "PO-7/1 with 36 backordered",
		},
	})
}

func TestIncomingSetWithoutVersionIsNewer(t *testing.T) {
	st, addr := startSeededFake(t, nil)
	before := uint64(time.Now().UnixNano())
	code, out, errOut := runCLI(t, addr, "incoming", "set", "PO-7/1=ROSE@ams:150/30", "PO-7/2=ROSE@ams:6")
	if code != 0 {
		t.Fatalf("incoming set without versions: got exit %d, stderr %q; want 0", code, errOut)
	}
	st.mu.Lock()
	lines := lastCall(st).(*stockdv1.SetIncomingRequest).GetLines()
	st.mu.Unlock()
	if len(lines) != 2 || lines[0].GetVersion() < before || lines[1].GetVersion() != lines[0].GetVersion()+1 || lines[0].GetEta() != nil {
		t.Errorf("incoming set without versions: got %v; want versions from %d up, one per row, and no ETA", lines, before)
	}
	if !strings.Contains(out, "applied 2, ignored stale 0, rejected 0") {
		t.Errorf("incoming set: got:\n%s\nwant both rows applied over version 1", out)
	}
}

func TestIncomingSetRejectedRowExits1(t *testing.T) {
	_, addr := startSeededFake(t, nil)
	code, out, errOut := runCLI(t, addr, "incoming", "set", "PO-1=ROSE@mars:5,version=2", "PO-7/1=ROSE@ams:150,version=1")
	if code != 1 {
		t.Fatalf("incoming set at an unknown location: got exit %d; want 1", code)
	}
	for _, want := range []string{"REJECTED", `lines[0].location: unknown location "mars"`, "IGNORED_STALE",
		"applied 0, ignored stale 1, rejected 1, revision 51\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("incoming set: stdout lacks %q; got:\n%s", want, out)
		}
	}
	if want := "stockctl: 1 of 2 rows rejected\n"; errOut != want {
		t.Errorf("incoming set: got stderr %q; want %q", errOut, want)
	}
}

func TestIncomingUsageErrors(t *testing.T) {
	runUsageCases(t, []usageCase{
		{"incoming set needs rows", []string{"incoming", "set"}, 2, "incoming set: at least one PO_LINE=ITEM@LOCATION:QTY row is required"},
		{"a bad row shows the synopsis", []string{"incoming", "set", "PO-1=ROSE@ams"}, 2,
			"usage: stockctl incoming set PO_LINE=ITEM@LOCATION:QTY[/RECEIVED][,eta=TIME][,version=N]...\n"},
		{"incoming list takes no arguments", []string{"incoming", "list", "ROSE"}, 2, `incoming list: unexpected argument "ROSE"`},
		{"incoming without verb", []string{"incoming"}, 2, "incoming: missing subcommand (one of: list, set)"},
	})
}

func TestParseIncomingLine(t *testing.T) {
	const def = 1_700_000_000_000_000_000
	may1 := timestamppb.New(time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC))
	tests := []struct {
		name    string
		spec    string
		want    *stockdv1.IncomingLine
		wantErr string
	}{
		{"a bare line gets the default version and no ETA", "PO-7/1=ROSE@ams:120",
			&stockdv1.IncomingLine{PoLineId: "PO-7/1", Item: "ROSE", Location: "ams", QuantityBaseUnits: 120, Version: def}, ""},
		{"received, a day ETA and a version", "PO-7/1=ROSE@ams:120/40,eta=2026-05-01,version=9",
			&stockdv1.IncomingLine{PoLineId: "PO-7/1", Item: "ROSE", Location: "ams", QuantityBaseUnits: 120, ReceivedBaseUnits: 40,
				Eta: may1, Version: 9}, ""},
		{"options in any order, an RFC 3339 ETA", "PO-7/1=ROSE@ams:120,version=9,eta=2026-05-01T02:00:00+02:00",
			&stockdv1.IncomingLine{PoLineId: "PO-7/1", Item: "ROSE", Location: "ams", QuantityBaseUnits: 120, Eta: may1, Version: 9}, ""},
		{"a PO line may contain = and @, an item @", "PO=1@x=a@b@fra:5",
			&stockdv1.IncomingLine{PoLineId: "PO=1@x", Item: "a@b", Location: "fra", QuantityBaseUnits: 5, Version: def}, ""},
		{"all received", "P=I@L:5/5", &stockdv1.IncomingLine{PoLineId: "P", Item: "I", Location: "L", QuantityBaseUnits: 5,
			ReceivedBaseUnits: 5, Version: def}, ""},
		{"a cancelled line has quantity 0", "P=I@L:0", &stockdv1.IncomingLine{PoLineId: "P", Item: "I", Location: "L", Version: def}, ""},
		{"no @ is refused", "PO-7/1=ROSE:120", nil, "want PO_LINE=ITEM@LOCATION:QTY"},
		{"no = is refused", "ROSE@ams:120", nil, "want PO_LINE=ITEM@LOCATION:QTY"},
		{"an empty PO line is refused", "=ROSE@ams:120", nil, "empty PO line"},
		{"an empty item is refused", "PO-7/1=@ams:120", nil, "empty item"},
		{"an empty location is refused", "PO-7/1=ROSE@:120", nil, "empty location"},
		{"no quantity is refused", "PO-7/1=ROSE@ams", nil, "want :QTY after the location"},
		{"an empty quantity is refused", "PO-7/1=ROSE@ams:/3", nil, "missing quantity"},
		{"a negative quantity is refused", "PO-7/1=ROSE@ams:-1", nil, `quantity "-1" must be a whole number >= 0`},
		{"a word as quantity is refused", "PO-7/1=ROSE@ams:many", nil, "must be a whole number >= 0"},
		{"received above quantity is refused", "PO-7/1=ROSE@ams:10/11", nil, `received "11" must be a whole number from 0 to the quantity 10`},
		{"a negative received is refused", "PO-7/1=ROSE@ams:10/-1", nil, "must be a whole number from 0"},
		{"an empty received is refused", "PO-7/1=ROSE@ams:10/", nil, `received ""`},
		{"a bad ETA is refused", "PO-7/1=ROSE@ams:10,eta=soon", nil, `eta "soon" is neither RFC 3339`},
		{"an ETA without zone is refused", "PO-7/1=ROSE@ams:10,eta=2026-05-01T08:00:00", nil, "is neither RFC 3339"},
		{"version 0 is refused", "PO-7/1=ROSE@ams:10,version=0", nil, "version must be > 0"},
		{"an unknown option is refused", "PO-7/1=ROSE@ams:10,due=2026-05-01", nil, `unknown option "due=2026-05-01"`},
		{"an option twice is refused", "PO-7/1=ROSE@ams:10,version=2,version=3", nil, "version given twice"},
		{"a trailing comma is refused", "PO-7/1=ROSE@ams:10,", nil, `unknown option ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseIncomingLine(tt.spec, def)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseIncomingLine(%q): got %v, %v; want error containing %q", tt.spec, got, err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.spec) {
					t.Errorf("parseIncomingLine(%q): error %q does not quote the input", tt.spec, err)
				}
				return
			}
			if err != nil || !proto.Equal(got, tt.want) {
				t.Fatalf("parseIncomingLine(%q): got %v, %v; want %v", tt.spec, got, err, tt.want)
			}
		})
	}
}
