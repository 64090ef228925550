package store_test

import (
	"slices"
	"testing"
	"time"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

// applyAll applies cmds at revisions 1, 2, … and fails on any refusal.
func applyAll(t *testing.T, m *store.Machine, cmds ...*logv1.Command) store.Revision {
	t.Helper()
	rev := m.AppliedIndex()
	for _, c := range cmds {
		rev++
		if res := m.Apply(rev, store.Timestamp(t0+int64(rev)*1e6), c); res.Err != nil {
			t.Fatalf("apply %v at %d: got %v, want no refusal", c, rev, res.Err)
		}
	}
	return rev
}

func changesAfter(t *testing.T, m *store.Machine, after store.Revision) []store.Change {
	t.Helper()
	got, through, complete := m.ChangesSince(after, 0, nil)
	if !complete {
		t.Fatalf("ChangesSince(%d): got incomplete, want complete", after)
	}
	if through != m.AppliedIndex() {
		t.Fatalf("ChangesSince(%d): through %d, want the applied index %d", after, through, m.AppliedIndex())
	}
	return got
}

func TestChangeLogRecordsEveryInputOfAFigure(t *testing.T) {
	m := store.New(store.Config{})
	base := applyAll(t, m, loc("ams"), loc("fra"), channel("web", 0, "ams"), channel("b2b", 0, "ams", "fra"),
		setStock(row("ROSE", "ams", 10, 1)))
	item := func(rev store.Revision, item, ch, location string) store.Change {
		return store.Change{Revision: rev, Kind: store.ChangeItem, Item: store.ItemID(item),
			Channel: store.ChannelID(ch), Location: store.LocationID(location)}
	}
	cases := []struct {
		name string
		cmd  *logv1.Command
		want func(rev store.Revision) []store.Change
	}{
		{"a stock count notes the counter's item and location", setStock(row("ROSE", "fra", 5, 1)),
			func(r store.Revision) []store.Change { return []store.Change{item(r, "ROSE", "", "fra")} }},
		{"a stale count notes nothing", setStock(row("ROSE", "fra", 5, 1)),
			func(store.Revision) []store.Change { return nil }},
		{"a hold notes where it is allocated", reserve("web", "r1", time.Minute, line("ROSE", 2)),
			func(r store.Revision) []store.Change { return []store.Change{item(r, "ROSE", "", "ams")} }},
		{"a release notes it again", release("web", "r1"),
			func(r store.Revision) []store.Change { return []store.Change{item(r, "ROSE", "", "ams")} }},
		{"a channel's buffer rule is scoped to it", buffer("ROSE", "web", "ams", 3),
			func(r store.Revision) []store.Change { return []store.Change{item(r, "ROSE", "web", "ams")} }},
		{"a wildcard rule is not scoped", buffer("ROSE", "", "", 1),
			func(r store.Revision) []store.Change { return []store.Change{item(r, "ROSE", "", "")} }},
		{"a mapping notes its SKU", putSku("ROSE-12", "ROSE", 12),
			func(r store.Revision) []store.Change {
				return []store.Change{{Revision: r, Kind: store.ChangeSKU, SKU: "ROSE-12"}}
			}},
		{"a channel change notes the channel", channel("web", 1, "ams"),
			func(r store.Revision) []store.Change {
				return []store.Change{{Revision: r, Kind: store.ChangeChannel, Channel: "web"}}
			}},
		{"putting the same channel again notes nothing", channel("web", 1, "ams"),
			func(store.Revision) []store.Change { return nil }},
	}
	rev := base
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := rev
			rev = applyAll(t, m, tc.cmd)
			got := changesAfter(t, m, before)
			if want := tc.want(rev); !slices.Equal(got, want) {
				t.Fatalf("input %v: got changes %+v, want %+v", tc.cmd, got, want)
			}
		})
	}
}

func TestChangeVisibleOnlyToChannelsInScope(t *testing.T) {
	web := &store.Channel{ID: "web", Locations: []store.LocationID{"ams"}}
	cases := []struct {
		c    store.Change
		want bool
	}{
		{store.Change{Kind: store.ChangeItem, Item: "ROSE", Location: "ams"}, true},
		{store.Change{Kind: store.ChangeItem, Item: "ROSE", Location: "fra"}, false},
		{store.Change{Kind: store.ChangeItem, Item: "ROSE", Channel: "b2b"}, false},
		{store.Change{Kind: store.ChangeItem, Item: "ROSE", Channel: "web", Location: "ams"}, true},
		{store.Change{Kind: store.ChangeChannel, Channel: "b2b"}, false},
		{store.Change{Kind: store.ChangeChannel, Channel: "web"}, true},
		{store.Change{Kind: store.ChangeSKU, SKU: "X"}, true},
		{store.Change{Kind: store.ChangeAll}, true},
	}
	for _, tc := range cases {
		if got := tc.c.Visible(web); got != tc.want {
			t.Errorf("change %+v visible to %v: got %v, want %v", tc.c, web.Locations, got, tc.want)
		}
	}
}

func TestChangeLogEvictsAndSaysIncomplete(t *testing.T) {
	m := store.New(store.Config{ChangeLogEntries: 4})
	base := applyAll(t, m, loc("ams"), channel("web", 0, "ams"))
	for i := range 6 {
		applyAll(t, m, setStock(row("ROSE", "ams", int64(10+i), uint64(i+1))))
	}
	last := m.AppliedIndex()
	if _, _, complete := m.ChangesSince(base, 0, nil); complete {
		t.Fatalf("ChangesSince(%d) after 6 changes into a log of 4: got complete, want incomplete", base)
	}
	got := changesAfter(t, m, last-4)
	if len(got) != 4 || got[0].Revision != last-3 || got[3].Revision != last {
		t.Fatalf("ChangesSince(%d): got %+v, want the last 4 changes", last-4, got)
	}
	if floor := m.ChangeLogFloor(); floor != last-4 {
		t.Fatalf("floor: got %d, want %d", floor, last-4)
	}
}

func TestChangesSinceLimitStopsAtWholeRevisions(t *testing.T) {
	m := store.New(store.Config{})
	base := applyAll(t, m, loc("ams"), loc("fra"), channel("web", 0, "ams"))
	r1 := applyAll(t, m, setStock(row("A", "ams", 1, 1), row("A", "fra", 1, 1), row("B", "ams", 1, 1)))
	applyAll(t, m, setStock(row("C", "ams", 1, 1)))
	got, through, complete := m.ChangesSince(base, 2, nil)
	if !complete || through != r1 || len(got) != 3 {
		t.Fatalf("ChangesSince(%d, limit 2): got %d changes through %d (complete %v), want the 3 of revision %d through it",
			base, len(got), through, complete, r1)
	}
	got, through, _ = m.ChangesSince(through, 2, nil)
	if through != m.AppliedIndex() || len(got) != 1 || got[0].Item != "C" {
		t.Fatalf("next page: got %+v through %d, want C through %d", got, through, m.AppliedIndex())
	}
}

func TestChangeLogCollapsesABulkCommand(t *testing.T) {
	m := store.New(store.Config{ChangeLogEntries: 16}) // 2 changes per command, then ChangeAll
	base := applyAll(t, m, loc("ams"), channel("web", 0, "ams"))
	rev := applyAll(t, m, setStock(row("A", "ams", 1, 1), row("B", "ams", 1, 1), row("C", "ams", 1, 1)))
	got := changesAfter(t, m, base)
	if want := []store.Change{{Revision: rev, Kind: store.ChangeAll}}; !slices.Equal(got, want) {
		t.Fatalf("3 rows with 2 allowed per command: got %+v, want %+v", got, want)
	}
}

func TestChangeLogStartsEmptyAfterRestore(t *testing.T) {
	m := store.New(store.Config{})
	applyAll(t, m, loc("ams"), channel("web", 0, "ams"), setStock(row("A", "ams", 1, 1)))
	recs, err := records(m)
	if err != nil {
		t.Fatal(err)
	}
	fresh := store.New(store.Config{})
	if err := fresh.Restore(unframe(frame(recs))); err != nil {
		t.Fatal(err)
	}
	at := fresh.AppliedIndex()
	if _, _, complete := fresh.ChangesSince(at-1, 0, nil); complete {
		t.Fatalf("restored at %d, ChangesSince(%d): got complete, want incomplete", at, at-1)
	}
	rev := applyAll(t, fresh, setStock(row("A", "ams", 2, 2)))
	if got := changesAfter(t, fresh, at); len(got) != 1 || got[0].Revision != rev {
		t.Fatalf("after restore at %d, one count at %d: got %+v", at, rev, got)
	}
}

func TestItemSKUsAndChannelSKUs(t *testing.T) {
	m := store.New(store.Config{})
	applyAll(t, m, loc("ams"), loc("fra"), channel("web", 0, "ams"),
		setStock(row("ROSE", "ams", 10, 1), row("TULIP", "fra", 10, 1), row("LILY", "ams", 1, 1)),
		putSku("ROSE-12", "ROSE", 12), putSku("LILY", "ROSE", 2))
	if got, want := m.ItemSKUs("web", "ROSE", nil), []store.SKU{"LILY", "ROSE", "ROSE-12"}; !slices.Equal(got, want) {
		t.Errorf("ItemSKUs(web, ROSE): got %v, want %v", got, want)
	}
	if got := m.ItemSKUs("web", "LILY", nil); len(got) != 0 {
		t.Errorf("ItemSKUs(web, LILY) with LILY mapped to ROSE: got %v, want none", got)
	}
	// TULIP has no counter at ams: web does not sell it.
	var all []store.SKU
	var after store.SKU
	for {
		page, more, err := m.ChannelSKUs("web", after, 2)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if !more {
			break
		}
		after = page[len(page)-1]
	}
	if want := []store.SKU{"LILY", "ROSE", "ROSE-12"}; !slices.Equal(all, want) {
		t.Errorf("ChannelSKUs(web) in pages of 2: got %v, want %v", all, want)
	}
}
