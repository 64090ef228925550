package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/stockd/stockd/api/stockdv1"
)

const (
	demoSynopsis = "[--skus 1000]"
	// demoBatchRows is the most rows the demo puts in one SetStock call.
	demoBatchRows = 1000
	// demoMaxSKUs keeps SKU names four digits wide.
	demoMaxSKUs = 10000
	// demoHoldUnits is how many units of one SKU the demo reserves on web.
	demoHoldUnits = 2
	// demoSeed fixes the on-hand figures: every run loads the same counts.
	demoSeed1, demoSeed2 = 0x570CD, 0xDE30
)

// demoLocations are the demo's warehouses.
func demoLocations() []*stockdv1.Location {
	return []*stockdv1.Location{
		{Id: "ams", Name: "Amsterdam"},
		{Id: "fra", Name: "Frankfurt"},
		{Id: "lyon", Name: "Lyon"},
	}
}

// demoChannels are the demo's channels: a web shop that sees every
// warehouse behind a safety buffer, and sales reps who see two of them.
func demoChannels() []*stockdv1.Channel {
	return []*stockdv1.Channel{
		{Id: "web", Locations: []string{"ams", "fra", "lyon"}, DefaultBufferBaseUnits: 2},
		{Id: "reps", Locations: []string{"fra", "ams"}, DefaultBufferBaseUnits: 0},
	}
}

// demoSKU names the i-th demo SKU; each is its own item (factor 1).
func demoSKU(i int) string { return fmt.Sprintf("SKU-%04d", i) }

// demoStock returns the demo's counts: one row per SKU and location, with
// pseudo-random on-hand (about one in five zero) that is the same on every
// run, and versions from baseVersion upward so that a re-run is newer.
func demoStock(skus int, locations []*stockdv1.Location, baseVersion uint64) []*stockdv1.StockCount {
	r := rand.New(rand.NewPCG(demoSeed1, demoSeed2))
	rows := make([]*stockdv1.StockCount, 0, skus*len(locations))
	for i := range skus {
		for _, l := range locations {
			var onHand int64
			if r.IntN(5) != 0 {
				onHand = 1 + r.Int64N(60)
			}
			rows = append(rows, &stockdv1.StockCount{
				Item:            demoSKU(i),
				Location:        l.GetId(),
				OnHandBaseUnits: onHand,
				Version:         baseVersion + uint64(len(rows)),
			})
		}
	}
	return rows
}

// demo loads a small catalog into a running node, shows availability,
// holds two units on web and shows the drop. Re-running it works: the counts
// get newer versions and the hold a new id.
func (s *session) demo(ctx context.Context, args []string) error {
	fs := s.newFlags("demo", demoSynopsis)
	skus := fs.Int("skus", 1000, fmt.Sprintf("how many SKUs to load, SKU-0000 upward (1 to %d)", demoMaxSKUs))
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef(fs, demoSynopsis, "unexpected argument %q", rest[0])
	}
	if *skus < 1 || *skus > demoMaxSKUs {
		return usagef(fs, demoSynopsis, "--skus must be in [1, %d], got %d", demoMaxSKUs, *skus)
	}
	admin, err := s.admin()
	if err != nil {
		return err
	}
	erp, err := s.erp()
	if err != nil {
		return err
	}
	inv, err := s.inventory()
	if err != nil {
		return err
	}

	s.notef("loading the stockd demo into %s\n", s.opts.addr)
	locations := demoLocations()
	for _, l := range locations {
		resp, err := admin.PutLocation(ctx, &stockdv1.PutLocationRequest{Location: l})
		if err != nil {
			return &stepError{step: "demo: put location " + l.GetId(), err: err}
		}
		if err := s.demoJSON(resp); err != nil {
			return err
		}
		s.notef("location %-5s %s\n", l.GetId(), l.GetName())
	}
	channels := demoChannels()
	for _, ch := range channels {
		resp, err := admin.PutChannel(ctx, &stockdv1.PutChannelRequest{Channel: ch})
		if err != nil {
			return &stepError{step: "demo: put channel " + ch.GetId(), err: err}
		}
		if err := s.demoJSON(resp); err != nil {
			return err
		}
		s.notef("channel  %-5s sees %s, buffer %d per item and location\n",
			ch.GetId(), strings.Join(ch.GetLocations(), " > "), ch.GetDefaultBufferBaseUnits())
	}

	rows := demoStock(*skus, locations, uint64(time.Now().UnixNano()))
	var applied, stale, batches uint32
	var revision uint64
	for start := 0; start < len(rows); start += demoBatchRows {
		batch := rows[start:min(start+demoBatchRows, len(rows))]
		resp, err := erp.SetStock(ctx, &stockdv1.SetStockRequest{Rows: batch})
		if err != nil {
			return &stepError{step: fmt.Sprintf("demo: set stock rows %d-%d", start, start+len(batch)-1), err: err}
		}
		if err := s.demoJSON(resp); err != nil {
			return err
		}
		for i, res := range resp.GetRows() {
			if res.GetStatus() == stockdv1.RowStatus_ROW_STATUS_REJECTED {
				return fmt.Errorf("demo: set stock row %s@%s rejected: %s",
					batch[i].GetItem(), batch[i].GetLocation(), res.GetReason())
			}
		}
		applied += resp.GetApplied()
		stale += resp.GetIgnoredStale()
		batches++
		revision = max(revision, resp.GetRevision())
	}
	s.notef("stock    %d SKUs x %d locations in %d SetStock calls: applied %d, ignored stale %d, revision %d\n",
		*skus, len(locations), batches, applied, stale, revision)

	target, err := s.demoTarget(ctx, inv, *skus, revision)
	if err != nil {
		return err
	}
	shown := []string{target}
	for i := range min(*skus, 3) {
		if demoSKU(i) != target {
			shown = append(shown, demoSKU(i))
		}
	}
	for _, ch := range channels {
		if err := s.demoAvail(ctx, inv, ch.GetId(), shown, revision); err != nil {
			return err
		}
	}

	id := "demo-" + time.Now().UTC().Format("20060102T150405.000000000Z")
	s.notef("\nreserving %d x %s on web as %s\n", demoHoldUnits, target, id)
	held, err := inv.Reserve(ctx, &stockdv1.ReserveRequest{
		Channel:       "web",
		ReservationId: id,
		Lines:         []*stockdv1.ReserveLine{{Sku: target, Quantity: demoHoldUnits}},
		Ttl:           durationpb.New(15 * time.Minute),
	})
	if err != nil {
		return &stepError{step: "demo: reserve " + target, err: err}
	}
	if s.opts.json {
		if err := printJSON(s.stdout, held); err != nil {
			return err
		}
	} else if err := printReservation(s.stdout, held.GetReservation(), held.GetRevision()); err != nil {
		return err
	}

	s.notef("\nafter the hold, web promises %d fewer units of %s (see RESERVED):\n", demoHoldUnits, target)
	for _, ch := range channels {
		if err := s.demoAvail(ctx, inv, ch.GetId(), []string{target}, held.GetRevision()); err != nil {
			return err
		}
	}

	prefix := "stockctl"
	if s.opts.addr != defaultAddr {
		prefix += " --addr " + s.opts.addr
	}
	s.notef("\nnext, try:\n")
	s.notef("  %s avail --channel web %s\n", prefix, strings.Join(shown, " "))
	s.notef("  %s reservation --channel web --id %s\n", prefix, id)
	s.notef("  %s confirm --channel web --id %s --order ORDER-1\n", prefix, id)
	s.notef("  %s release --channel web --id %s\n", prefix, id)
	s.notef("  %s reserve --channel reps --id rep-1 %s=1@fra\n", prefix, target)
	return nil
}

// demoTarget picks the first SKU web can promise demoHoldUnits of. Earlier
// demo holds may have used some up, so it looks further if it must.
func (s *session) demoTarget(ctx context.Context, inv stockdv1.InventoryClient, skus int, revision uint64) (string, error) {
	const chunk = 1000
	for start := 0; start < skus; start += chunk {
		names := make([]string, 0, chunk)
		for i := start; i < min(start+chunk, skus); i++ {
			names = append(names, demoSKU(i))
		}
		resp, err := inv.GetAvailability(ctx, &stockdv1.GetAvailabilityRequest{Channel: "web", Skus: names, MinRevision: revision})
		if err != nil {
			return "", &stepError{step: "demo: availability on web", err: err}
		}
		for _, a := range resp.GetSkus() {
			if a.GetAvailableSkuUnits() >= demoHoldUnits {
				return a.GetSku(), nil
			}
		}
	}
	return "", fmt.Errorf("demo: no SKU has %d units available on web; earlier demo holds expire after 15 minutes", demoHoldUnits)
}

// demoAvail prints one channel's availability of skus.
func (s *session) demoAvail(ctx context.Context, inv stockdv1.InventoryClient, channel string, skus []string, revision uint64) error {
	resp, err := inv.GetAvailability(ctx, &stockdv1.GetAvailabilityRequest{Channel: channel, Skus: skus, MinRevision: revision})
	if err != nil {
		return &stepError{step: "demo: availability on " + channel, err: err}
	}
	if s.opts.json {
		return printJSON(s.stdout, resp)
	}
	fmt.Fprintf(s.stdout, "\navailability on %s:\n", channel)
	return printAvailability(s.stdout, channel, resp)
}

// demoJSON prints a configuration or stock response in JSON mode only; in
// table mode a one-line note says the same.
func (s *session) demoJSON(m proto.Message) error {
	if !s.opts.json {
		return nil
	}
	return printJSON(s.stdout, m)
}
