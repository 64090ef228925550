package store_test

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/store"
)

func TestCountersAreSortedFilteredAndStamped(t *testing.T) {
	m := store.New(store.DefaultConfig())
	var idx store.Revision
	apply := func(c *logv1.Command) {
		t.Helper()
		idx++
		if res := m.Apply(idx, store.Timestamp(t0), c); res.Err != nil {
			t.Fatalf("apply %d: %v", idx, res.Err)
		}
	}
	apply(loc("ams"))
	apply(loc("fra"))
	apply(channel("web", 0, "ams", "fra"))
	// Items in an order that is neither sorted nor shard order; ZED@fra is
	// sent before ZED@ams.
	apply(setStock(row("ZED", "fra", 4, 2), row("ZED", "ams", -3, 9), row("APPLE", "fra", 10, 1),
		row("M1", "ams", 7, 5), row("APPLE", "ams", 6, 1)))
	apply(reserve("web", "h1", 0, lineAt("APPLE", 4, "ams")))
	apply(reserve("web", "h2", 0, lineAt("APPLE", 1, "ams")))
	apply(confirm("web", "h2", "PO-1"))

	got, rev := m.Counters("", "")
	if rev != idx || rev != m.AppliedIndex() {
		t.Errorf("revision: got %d, want %d", rev, idx)
	}
	want := []store.CounterCopy{
		{Item: "APPLE", Location: "ams", OnHand: 6, Version: 1, Reserved: 4, Committed: 1},
		{Item: "APPLE", Location: "fra", OnHand: 10, Version: 1},
		{Item: "M1", Location: "ams", OnHand: 7, Version: 5},
		{Item: "ZED", Location: "ams", OnHand: -3, Version: 9},
		{Item: "ZED", Location: "fra", OnHand: 4, Version: 2},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Counters(all): got %+v, want %+v", got, want)
	}
	cases := []struct {
		item store.ItemID
		loc  store.LocationID
		want []store.CounterCopy
	}{
		{"APPLE", "", want[:2]},
		{"", "ams", []store.CounterCopy{want[0], want[2], want[3]}},
		{"ZED", "fra", want[4:]},
		{"M1", "fra", nil},
		{"NOPE", "", nil},
		{"", "lyon", nil},
	}
	for _, c := range cases {
		got, rev := m.Counters(c.item, c.loc)
		if fmt.Sprint(got) != fmt.Sprint(c.want) || rev != idx {
			t.Errorf("Counters(%q, %q): got %+v at %d, want %+v at %d", c.item, c.loc, got, rev, c.want, idx)
		}
	}
}

func TestCounterCopyOversold(t *testing.T) {
	cases := []struct {
		c    store.CounterCopy
		want store.Units
	}{
		{store.CounterCopy{OnHand: 10, Reserved: 4, Committed: 6}, 0},
		{store.CounterCopy{OnHand: 3, Reserved: 4, Committed: 1}, 2},
		{store.CounterCopy{OnHand: -5, Reserved: 1, Committed: 1}, 2},
	}
	for _, c := range cases {
		if got := c.c.Oversold(); got != c.want {
			t.Errorf("%+v.Oversold(): got %d, want %d", c.c, got, c.want)
		}
	}
}

// TestCountersAreOneCut copies every counter while another goroutine applies
// entries that each set every counter to the entry's index: a copy that
// mixed two entries would show two values, or a value other than its
// revision (run with -race).
func TestCountersAreOneCut(t *testing.T) {
	const items, entries = 300, 200
	m := store.New(store.DefaultConfig())
	m.Apply(1, store.Timestamp(t0), loc("ams"))
	m.Apply(2, store.Timestamp(t0), loc("fra"))
	rowsAt := func(v int64) *logv1.Command {
		rows := make([]*logv1.StockCount, 0, 2*items)
		for i := range items {
			it := "I" + strconv.Itoa(i)
			rows = append(rows, row(it, "ams", v, uint64(v)), row(it, "fra", v, uint64(v)))
		}
		return setStock(rows...)
	}
	m.Apply(3, store.Timestamp(t0), rowsAt(3))
	done := make(chan struct{})
	errs := make(chan error, 1)
	go func() {
		defer close(errs)
		for copies := 0; ; copies++ {
			select {
			case <-done:
				if copies == 0 {
					errs <- fmt.Errorf("no copy was taken")
				}
				return
			default:
			}
			got, rev := m.Counters("", "")
			if len(got) != 2*items {
				errs <- fmt.Errorf("copy at revision %d: got %d counters, want %d", rev, len(got), 2*items)
				return
			}
			for _, c := range got {
				if c.OnHand != store.Units(rev) || c.Version != uint64(rev) {
					errs <- fmt.Errorf("copy at revision %d: got %+v, want on_hand and version %d", rev, c, rev)
					return
				}
			}
		}
	}()
	for i := int64(4); i < 4+entries; i++ {
		if res := m.Apply(store.Revision(i), store.Timestamp(t0), rowsAt(i)); res.Err != nil {
			t.Fatalf("apply %d: %v", i, res.Err)
		}
	}
	close(done)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}

func BenchmarkCountersAll(b *testing.B) {
	const items = 100_000
	m := store.New(store.DefaultConfig())
	var idx store.Revision
	for _, l := range []string{"ams", "fra", "lyon"} {
		idx++
		m.Apply(idx, store.Timestamp(t0), loc(l))
	}
	rows := make([]*logv1.StockCount, 0, store.MaxRows)
	for i := range items {
		it := "I" + strconv.Itoa(i)
		rows = append(rows, row(it, "ams", 1, 1), row(it, "fra", 2, 1), row(it, "lyon", 3, 1))
		if len(rows) >= store.MaxRows-3 || i == items-1 {
			idx++
			m.Apply(idx, store.Timestamp(t0), setStock(rows...))
			rows = rows[:0]
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if got, _ := m.Counters("", ""); len(got) != 3*items {
			b.Fatalf("got %d counters, want %d", len(got), 3*items)
		}
	}
}
