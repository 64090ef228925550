package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/stockd/stockd/api/stockdv1"
)

func TestOutboxCommandsSendAndPrint(t *testing.T) {
	const created9 = "2026-05-01T09:09:00Z"
	runCommandCases(t, []commandCase{
		{
			name: "orders pull prints the pending entries in sequence order and ends",
			seed: seedOutbox,
			args: []string{"orders", "pull"},
			want: &stockdv1.PullOrdersRequest{},
			wantRows: [][]string{
				{"SEQ", "KIND", "CHANNEL", "ORDER_REF", "RESERVATION", "CANCELS_SEQ", "CREATED", "REVISION", "LINES"},
				{"9", "order", "web", "ORD-1", "r-conf", "-", created9, "50", "ROSE@ams=24"},
				{"10", "order", "web", "ORD-2", "r-two", "-", "2026-05-01T09:10:00Z", "50", "ROSE@fra=12,ROSE@ams=12/PO-7/1"},
				{"11", "cancellation", "web", "ORD-2", "r-two", "10", "2026-05-01T09:11:00Z", "50", "ROSE@fra=12,ROSE@ams=12/PO-7/1"},
			},
			wantOut:   []string{"3 entries, last seq 11 (next: --after 11)\n"},
			resp:      func() proto.Message { return &stockdv1.OutboxEntry{} },
			jsonLines: 3,
			jsonOK: func(m proto.Message) bool {
				e := m.(*stockdv1.OutboxEntry)
				return e.GetSeq() == 11 && e.GetCancelsSeq() == 10 && e.GetKind() == stockdv1.OutboxKind_OUTBOX_KIND_CANCELLATION
			},
			jsonWant: "the cancellation 11 of seq 10 last",
		},
		{
			name: "orders pull --after and --limit stop early",
			seed: seedOutbox,
			args: []string{"orders", "pull", "--after", "9", "--limit", "1"},
			want: &stockdv1.PullOrdersRequest{AfterSeq: 9},
			wantRows: [][]string{
				{"10", "order", "web", "ORD-2", "r-two", "-", "2026-05-01T09:10:00Z", "50", "ROSE@fra=12,ROSE@ams=12/PO-7/1"},
			},
			wantOut:  []string{"1 entry, last seq 10 (next: --after 10)\n"},
			resp:     func() proto.Message { return &stockdv1.OutboxEntry{} },
			jsonOK:   func(m proto.Message) bool { return m.(*stockdv1.OutboxEntry).GetSeq() == 10 },
			jsonWant: "only seq 10",
		},
		{
			name: "orders ack sends each outcome and prints each answer",
			seed: seedOutbox,
			args: []string{"orders", "ack", "9=booked", "10=REFUSED:no stock at fra: sorry", "11=done"},
			want: &stockdv1.AckOrdersRequest{Acks: []*stockdv1.OrderAck{
				{Seq: 9, Outcome: stockdv1.OrderOutcome_ORDER_OUTCOME_BOOKED},
				{Seq: 10, Outcome: stockdv1.OrderOutcome_ORDER_OUTCOME_REFUSED, Reason: "no stock at fra: sorry"},
				{Seq: 11, Outcome: stockdv1.OrderOutcome_ORDER_OUTCOME_DONE},
			}},
			wantRows: [][]string{
				{"ROW", "SEQ", "OUTCOME", "STATUS", "REASON"},
				{"0", "9", "BOOKED", "APPLIED"},
				{"1", "10", "REFUSED", "APPLIED"},
				{"2", "11", "DONE", "APPLIED"},
			},
			wantOut: []string{"applied 3, ignored stale 0, rejected 0, revision 51\n"},
			resp:    func() proto.Message { return &stockdv1.AckOrdersResponse{} },
			jsonOK: func(m proto.Message) bool {
				r := m.(*stockdv1.AckOrdersResponse)
				return len(r.GetRows()) == 3 && r.GetRevision() == 51
			},
			jsonWant: "3 rows at revision 51",
		},
		{
			name: "orders ack of an outcome already recorded is stale",
			seed: seedOutbox,
			args: []string{"orders", "ack", "8=booked"},
			wantRows: [][]string{
				{"0", "8", "BOOKED", "IGNORED_STALE"},
			},
			wantOut: []string{"applied 0, ignored stale 1, rejected 0, revision 51\n"},
			resp:    func() proto.Message { return &stockdv1.AckOrdersResponse{} },
			jsonOK: func(m proto.Message) bool {
				r := m.(*stockdv1.AckOrdersResponse).GetRows()
				return len(r) == 1 && r[0].GetStatus() == stockdv1.RowStatus_ROW_STATUS_IGNORED_STALE
			},
			jsonWant: "one IGNORED_STALE row",
		},
		{
			name: "orders status shows the backlog",
			seed: seedOutbox,
			args: []string{"orders", "status"},
			want: &stockdv1.GetOutboxRequest{},
			wantRows: [][]string{
				{"PENDING", "OLDEST_SEQ", "OLDEST_CREATED", "AGE", "NEXT_SEQ", "ABSORBED_MARK", "REVISION"},
				{"3", "9", created9, "*", "12", "8", "50"},
			},
			resp: func() proto.Message { return &stockdv1.GetOutboxResponse{} },
			jsonOK: func(m proto.Message) bool {
				r := m.(*stockdv1.GetOutboxResponse)
				return r.GetPending() == 3 && r.GetOldestPendingSeq() == 9 && r.GetNextSeq() == 12 && r.GetAbsorbedMark() == 8
			},
			jsonWant: "3 pending from seq 9, next 12, mark 8",
		},
		{
			name: "orders status of an empty outbox",
			args: []string{"orders", "status"},
			wantRows: [][]string{
				{"0", "-", "-", "-", "1", "0", "50"},
			},
			resp:     func() proto.Message { return &stockdv1.GetOutboxResponse{} },
			jsonOK:   func(m proto.Message) bool { return m.(*stockdv1.GetOutboxResponse).GetPending() == 0 },
			jsonWant: "nothing pending",
		},
		{
			name: "order shows a cancelled order with a backorder line",
			seed: seedOutbox,
			args: []string{"order", "--channel", "web", "--ref", "ORD-2", "--min-revision", "50", "--linearizable"},
			want: &stockdv1.GetOrderRequest{Channel: "web", OrderRef: "ORD-2", MinRevision: 50, Linearizable: true},
			wantRows: [][]string{
				{"LINE", "ITEM", "LOCATION", "BASE_UNITS", "PO_LINE"},
				{"0", "ROSE", "fra", "12", "-"},
				{"1", "ROSE", "ams", "12", "PO-7/1"},
			},
			wantOut: []string{"order ORD-2 on channel web: seq 10, reservation r-two\n", "created 2026-05-01T09:10:00Z\n",
				"outcome PENDING\n", "absorbed no, cancelled yes\n", "revision 50\n"},
			resp: func() proto.Message { return &stockdv1.GetOrderResponse{} },
			jsonOK: func(m proto.Message) bool {
				o := m.(*stockdv1.GetOrderResponse).GetOrder()
				return o.GetSeq() == 10 && o.GetCancelled() && len(o.GetLines()) == 2
			},
			jsonWant: "seq 10, cancelled, two lines",
		},
		{
			name:    "order shows why the ERP refused",
			seed:    seedOutbox,
			args:    []string{"order", "--channel", "web", "--ref", "ORD-R"},
			want:    &stockdv1.GetOrderRequest{Channel: "web", OrderRef: "ORD-R"},
			wantOut: []string{"outcome REFUSED: customer credit hold\n", "absorbed no, cancelled no\n"},
			resp:    func() proto.Message { return &stockdv1.GetOrderResponse{} },
			jsonOK: func(m proto.Message) bool {
				return m.(*stockdv1.GetOrderResponse).GetOrder().GetOutcomeReason() == "customer credit hold"
			},
			jsonWant: "the refusal's reason",
		},
		{
			name:    "order shows an absorbed booking",
			seed:    seedOutbox,
			args:    []string{"order", "--channel", "web", "--ref", "ORD-0"},
			wantOut: []string{"outcome BOOKED\n", "absorbed yes, cancelled no\n"},
			resp:    func() proto.Message { return &stockdv1.GetOrderResponse{} },
			jsonOK: func(m proto.Message) bool {
				return m.(*stockdv1.GetOrderResponse).GetOrder().GetAbsorbed()
			},
			jsonWant: "absorbed",
		},
		{
			name: "rejected lists the newest rows and every count",
			seed: seedOutbox,
			args: []string{"rejected", "--limit", "1"},
			want: &stockdv1.ListRejectedRequest{Limit: 1},
			wantRows: [][]string{
				{"REVISION", "AT", "SOURCE", "ROW", "KEY", "REASON"},
				{"48", "2026-05-01T10:00:00Z", "adjust_stock", "3", "d-17", "rows[3].location:", "unknown", "location", `"mars"`},
				{"REASON", "COUNT"},
				{"rows[].location", "5"},
				{"rows[].version", "2"},
			},
			wantOut: []string{"rejections by reason:\n", "revision 50\n"},
			resp:    func() proto.Message { return &stockdv1.ListRejectedResponse{} },
			jsonOK: func(m proto.Message) bool {
				r := m.(*stockdv1.ListRejectedResponse)
				return len(r.GetRows()) == 1 && r.GetRows()[0].GetKey() == "d-17" && len(r.GetCounts()) == 2
			},
			jsonWant: "the newest row (d-17) and two counts",
		},
		{
			name: "rejected without --limit leaves the server's default",
			seed: seedOutbox,
			args: []string{"rejected"},
			want: &stockdv1.ListRejectedRequest{},
			wantRows: [][]string{
				{"45", "2026-05-01T09:00:00Z", "set_stock", "0", "ROSE@ams", "rows[0].version:", "same", "version", "4", "with", "another", "count"},
			},
			resp:     func() proto.Message { return &stockdv1.ListRejectedResponse{} },
			jsonOK:   func(m proto.Message) bool { return len(m.(*stockdv1.ListRejectedResponse).GetRows()) == 2 },
			jsonWant: "both rows",
		},
	})
}

func TestOrdersPullSaysSoWhenNothingIsPending(t *testing.T) {
	for _, json := range []bool{false, true} {
		_, addr := startSeededFake(t, seedOutbox)
		args := []string{"orders", "pull", "--after", "11"}
		if json {
			args = append([]string{"--json"}, args...)
		}
		code, out, errOut := runCLI(t, addr, args...)
		if code != 0 {
			t.Fatalf("%v: got exit %d, stderr %q; want 0", args, code, errOut)
		}
		note, where, wantOut := out, "stdout", "SEQ"
		if json {
			note, where, wantOut = errOut, "stderr", ""
		}
		if want := "no entries after seq 11\n"; !strings.HasSuffix(note, want) {
			t.Errorf("%v: got %s %q; want it to end with %q", args, where, note, want)
		}
		if !strings.HasPrefix(out, wantOut) || (json && out != "") {
			t.Errorf("%v: got stdout %q; want the table's header alone, or nothing with --json", args, out)
		}
	}
}

func TestOrdersAckRejectedRowsExit1(t *testing.T) {
	_, addr := startSeededFake(t, seedOutbox)
	code, out, errOut := runCLI(t, addr, "orders", "ack", "9=done", "99=booked", "10=booked")
	if code != 1 {
		t.Fatalf("orders ack with two bad acks: got exit %d, stderr %q; want 1", code, errOut)
	}
	for _, row := range [][]string{
		{"0", "9", "DONE", "REJECTED", "acks[0].outcome:", "ORDER_OUTCOME_DONE", "does", "not", "fit", "a", "OUTBOX_KIND_ORDER", "entry"},
		{"1", "99", "BOOKED", "REJECTED", "acks[1].seq:", "unknown", "order", "99"},
		{"2", "10", "BOOKED", "APPLIED"},
	} {
		if !hasRow(out, row...) {
			t.Errorf("orders ack: stdout lacks the row %q; got:\n%s", row, out)
		}
	}
	if want := "applied 1, ignored stale 0, rejected 2, revision 51\n"; !strings.Contains(out, want) {
		t.Errorf("orders ack: stdout lacks %q; got:\n%s", want, out)
	}
	if want := "stockctl: 2 of 3 rows rejected\n"; errOut != want {
		t.Errorf("orders ack: got stderr %q; want %q", errOut, want)
	}
}

// syncBuffer is an output stockctl writes while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startPull runs stockctl against addr in the background under ctx; the
// returned channel gives its exit status.
func startPull(ctx context.Context, addr string, stdout, stderr *syncBuffer, args ...string) <-chan int {
	done := make(chan int, 1)
	go func() { done <- run(ctx, append([]string{"--addr", addr}, args...), stdout, stderr) }()
	return done
}

// waitOutput waits, with a deadline, until out holds want.
func waitOutput(t *testing.T, out *syncBuffer, want string) {
	t.Helper()
	waitLines(t, out, want, func(s string) bool { return strings.Contains(s, want) })
}

// waitLines waits, with a deadline, until cond holds for out's text; what
// names the condition.
func waitLines(t *testing.T, out *syncBuffer, what string, cond func(string) bool) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond(out.String()) {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("waiting for %s on stdout: got %q after 10s", what, out.String())
		}
	}
}

// waitExit waits, with a deadline, for a background stockctl to end.
func waitExit(t *testing.T, done <-chan int, what string) int {
	t.Helper()
	select {
	case code := <-done:
		return code
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: still running after 10s", what)
		return -1
	}
}

func TestOrdersPullFollowPrintsNewEntriesUntilTheLimit(t *testing.T) {
	st, addr := startSeededFake(t, seedOutbox)
	var out, errOut syncBuffer
	done := startPull(t.Context(), addr, &out, &errOut, "orders", "pull", "--follow", "--limit", "4")
	waitOutput(t, &out, "ORD-2")
	st.mu.Lock()
	st.addEntry(&stockdv1.OutboxEntry{Seq: 12, Kind: stockdv1.OutboxKind_OUTBOX_KIND_ORDER, Channel: "web", OrderRef: "ORD-3",
		ReservationId: "r-3", CreatedAt: timestamppb.New(outboxCreated),
		Lines: []*stockdv1.OutboxLine{{Item: "ROSE", Location: "ams", QuantityBaseUnits: 5}}})
	st.mu.Unlock()
	if code := waitExit(t, done, "orders pull --follow --limit 4"); code != 0 {
		t.Fatalf("orders pull --follow --limit 4: got exit %d, stderr %q; want 0", code, errOut.String())
	}
	got := out.String()
	if !hasRow(got, "12", "order", "web", "ORD-3", "r-3", "-", "2026-05-01T09:00:00Z", "50", "ROSE@ams=5") {
		t.Errorf("orders pull --follow: stdout lacks the entry added while it followed; got:\n%s", got)
	}
	if want := "4 entries, last seq 12 (next: --after 12)\n"; !strings.HasSuffix(got, want) {
		t.Errorf("orders pull --follow --limit 4: got stdout\n%s\nwant it to end with %q", got, want)
	}
	st.mu.Lock()
	req := lastCall(st)
	st.mu.Unlock()
	if want := (&stockdv1.PullOrdersRequest{Follow: true}); !proto.Equal(req, want) {
		t.Errorf("orders pull --follow: got request %v; want %v", req, want)
	}
}

func TestOrdersPullFollowEndsCleanlyOnInterrupt(t *testing.T) {
	for _, json := range []bool{false, true} {
		t.Run("json "+strconv.FormatBool(json), func(t *testing.T) {
			_, addr := startSeededFake(t, seedOutbox)
			ctx, interrupt := context.WithCancel(t.Context())
			defer interrupt()
			var out, errOut syncBuffer
			args := []string{"orders", "pull", "--follow", "--after", "9"}
			if json {
				args = append([]string{"--json"}, args...)
			}
			done := startPull(ctx, addr, &out, &errOut, args...)
			// Seq 10 and 11, a line each: a table header comes first.
			lines := 3
			if json {
				lines = 2
			}
			waitLines(t, &out, strconv.Itoa(lines)+" lines", func(s string) bool { return strings.Count(s, "\n") == lines })
			interrupt()
			if code := waitExit(t, done, "orders pull --follow"); code != 0 {
				t.Fatalf("orders pull --follow, interrupted: got exit %d, stderr %q; want 0", code, errOut.String())
			}
			summary, where := out.String(), "stdout"
			if json {
				summary, where = errOut.String(), "stderr"
			}
			if want := "2 entries, last seq 11 (next: --after 11)\n"; !strings.HasSuffix(summary, want) {
				t.Errorf("orders pull --follow, interrupted: got %s %q; want it to end with %q", where, summary, want)
			}
		})
	}
}

func TestOrdersPullReportsABrokenStream(t *testing.T) {
	st, addr := startSeededFake(t, seedOutbox)
	st.mu.Lock()
	st.outbox.pullErr = status.Error(codes.Unavailable, "server shutting down")
	st.mu.Unlock()
	code, out, errOut := runCLI(t, addr, "orders", "pull", "--follow")
	if code != 1 {
		t.Fatalf("orders pull on a stream the server ends: got exit %d; want 1", code)
	}
	if !hasRow(out, "11", "cancellation", "web", "ORD-2", "r-two", "10", "2026-05-01T09:11:00Z", "50", "ROSE@fra=12,ROSE@ams=12/PO-7/1") {
		t.Errorf("orders pull: the entries sent before the error are missing; got:\n%s", out)
	}
	if want := "stockctl: UNAVAILABLE: server shutting down\n"; errOut != want {
		t.Errorf("orders pull: got stderr %q; want %q", errOut, want)
	}
}

func TestOutboxUsageErrors(t *testing.T) {
	tooMany := []string{"orders", "ack"}
	for i := range maxAcks + 1 {
		tooMany = append(tooMany, strconv.Itoa(i+1)+"=booked")
	}
	runUsageCases(t, []usageCase{
		{"orders without verb", []string{"orders"}, 2, "orders: missing subcommand (one of: ack, pull, status)"},
		{"orders pull takes no arguments", []string{"orders", "pull", "9"}, 2, `orders pull: unexpected argument "9"`},
		{"orders pull --after needs a number", []string{"orders", "pull", "--after", "x"}, 2, `invalid value "x" for flag -after`},
		{"orders ack needs acks", []string{"orders", "ack"}, 2, "orders ack: at least one SEQ=OUTCOME ack is required"},
		{"a bad ack shows the synopsis", []string{"orders", "ack", "9=maybe"}, 2,
			`outcome "maybe" is not booked, refused or done` + "\nusage: stockctl orders ack SEQ=booked|refused[:REASON]|done...\n"},
		{"more than 10,000 acks", tooMany, 2, "orders ack: at most 10000 acks, got 10001"},
		{"orders status takes no arguments", []string{"orders", "status", "x"}, 2, `orders status: unexpected argument "x"`},
		{"order needs --channel", []string{"order", "--ref", "ORD-1"}, 2, "order: --channel is required"},
		{"order needs --ref", []string{"order", "--channel", "web"}, 2, "order: --ref is required"},
		{"order takes no arguments", []string{"order", "--channel", "web", "--ref", "ORD-1", "x"}, 2, `order: unexpected argument "x"`},
		{"an unknown order is the server's NOT_FOUND", []string{"order", "--channel", "web", "--ref", "ORD-404"}, 1,
			`stockctl: NOT_FOUND: order_ref: unknown order "ORD-404"`},
		{"rejected --limit over 10,000", []string{"rejected", "--limit", "10001"}, 2, "rejected: --limit must be at most 10000, got 10001"},
		{"rejected takes no arguments", []string{"rejected", "x"}, 2, `rejected: unexpected argument "x"`},
	})
}

func TestParseOrderAck(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		want    *stockdv1.OrderAck
		wantErr string
	}{
		{"booked", "12=booked", &stockdv1.OrderAck{Seq: 12, Outcome: stockdv1.OrderOutcome_ORDER_OUTCOME_BOOKED}, ""},
		{"done, in capitals", "13=DONE", &stockdv1.OrderAck{Seq: 13, Outcome: stockdv1.OrderOutcome_ORDER_OUTCOME_DONE}, ""},
		{"refused without reason", "14=refused", &stockdv1.OrderAck{Seq: 14, Outcome: stockdv1.OrderOutcome_ORDER_OUTCOME_REFUSED}, ""},
		{"refused with a reason that has colons and =", "14=refused:credit: hold=yes",
			&stockdv1.OrderAck{Seq: 14, Outcome: stockdv1.OrderOutcome_ORDER_OUTCOME_REFUSED, Reason: "credit: hold=yes"}, ""},
		{"the largest sequence", "18446744073709551615=booked",
			&stockdv1.OrderAck{Seq: 18446744073709551615, Outcome: stockdv1.OrderOutcome_ORDER_OUTCOME_BOOKED}, ""},
		{"no = is refused", "12", nil, "want SEQ=booked, SEQ=refused[:REASON] or SEQ=done"},
		{"sequence 0 is refused", "0=booked", nil, `sequence "0" must be a whole number > 0`},
		{"a word as sequence is refused", "ORD-1=booked", nil, `sequence "ORD-1" must be a whole number > 0`},
		{"a negative sequence is refused", "-1=booked", nil, "must be a whole number > 0"},
		{"an empty outcome is refused", "12=", nil, `outcome "" is not booked, refused or done`},
		{"an unknown outcome is refused", "12=shipped", nil, `outcome "shipped" is not booked, refused or done`},
		{"a reason on booked is refused", "12=booked:ok", nil, "only refused takes a reason"},
		{"a reason on done is refused", "12=done:", nil, "only refused takes a reason"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseOrderAck(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseOrderAck(%q): got %v, %v; want error containing %q", tt.spec, got, err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.spec) {
					t.Errorf("parseOrderAck(%q): error %q does not quote the input", tt.spec, err)
				}
				return
			}
			if err != nil || !proto.Equal(got, tt.want) {
				t.Fatalf("parseOrderAck(%q): got %v, %v; want %v", tt.spec, got, err, tt.want)
			}
		})
	}
}

// TestOrdersPullColumnsAlign: rows are written as they come, yet each field
// starts under its header (values no wider than the column).
func TestOrdersPullColumnsAlign(t *testing.T) {
	_, addr := startSeededFake(t, seedOutbox)
	code, out, errOut := runCLI(t, addr, "orders", "pull")
	if code != 0 {
		t.Fatalf("orders pull: got exit %d, stderr %q; want 0", code, errOut)
	}
	lines := strings.Split(out, "\n")
	header, row := lines[0], lines[3] // the cancellation: every column set
	for _, col := range []struct{ name, value string }{
		{"KIND", "cancellation"}, {"CHANNEL", "web"}, {"ORDER_REF", "ORD-2"}, {"RESERVATION", "r-two"},
		{"CANCELS_SEQ", "10"}, {"CREATED", "2026-05-01T09:11:00Z"}, {"REVISION", "50"}, {"LINES", "ROSE@fra=12"},
	} {
		if h, v := strings.Index(header, col.name), strings.Index(row, col.value); h != v {
			t.Errorf("orders pull: %s starts at column %d, its value %q at %d; want the same\n%s\n%s", col.name, h, col.value, v, header, row)
		}
	}
}
