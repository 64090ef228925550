package server

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

// Delta pulls (issue 6): ListChanges for scheduled syncs, ListAvailability
// for an initial load.

// Page sizes of ListChanges and ListAvailability.
const (
	defaultChangesPage = 1000
	maxChangesPage     = 10000
)

// ListChanges answers the current figures of the SKUs whose inputs visible
// to the channel changed after since_revision, sorted by SKU, in pages; a
// SKU of the set that no longer resolves for the channel goes to
// removed_skus instead, so a page of page_size SKUs is split between the
// two. The first page fixes the revision the answer covers changes through
// (carried in the page token), so later pages list the same set; their
// figures are read when each page is asked for. A since_revision older than
// the change log keeps, or a change of the channel itself (or a bulk load)
// after it, answers resync_required.
func (v *inventory) ListChanges(ctx context.Context, req *stockdv1.ListChangesRequest) (*stockdv1.ListChangesResponse, error) {
	s := v.s
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, s.status(ctx, err)
	}
	if err := checkID("channel", req.GetChannel()); err != nil {
		return nil, s.status(ctx, err)
	}
	through, after, err := parseChangesToken(req.GetPageToken())
	if err != nil {
		return nil, s.status(ctx, err)
	}
	if s.watch == nil {
		return nil, errWatchUnsupported
	}
	if err := s.awaitRead(ctx, store.Revision(req.GetMinRevision()), req.GetLinearizable()); err != nil {
		return nil, s.status(ctx, err)
	}
	// A since_revision this node has not applied yet (another node answered
	// it) is waited for as Watch waits for from_revision: answering from
	// here would hand the caller an older revision than it holds (I5).
	wctx, cancel := context.WithTimeout(ctx, s.readWait)
	err = s.waitRevision(ctx, wctx, "since_revision: revision", store.Revision(req.GetSinceRevision()))
	cancel()
	if err != nil {
		return nil, s.status(ctx, err)
	}
	ch := store.ChannelID(req.GetChannel())
	c, err := s.watch.channel(ch)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	since := store.Revision(req.GetSinceRevision())
	if through != 0 && through < since {
		return nil, s.status(ctx, invalid("page_token", "does not belong to this since_revision"))
	}
	changes, upTo, complete := s.watch.changes.ChangesSince(since, 0, nil)
	if through == 0 {
		through = upTo
	}
	resp := &stockdv1.ListChangesResponse{Revision: uint64(through)}
	if !complete {
		resp.ResyncRequired = true
		return resp, nil
	}
	set := make(map[store.SKU]struct{})
	var skus []store.SKU
	for _, chg := range changes {
		if chg.Revision > through {
			break
		}
		if !chg.Visible(c) {
			continue
		}
		switch chg.Kind {
		case store.ChangeAll, store.ChangeChannel:
			resp.ResyncRequired = true
			return resp, nil
		case store.ChangeSKU:
			skus = append(skus[:0], chg.SKU)
		case store.ChangeItem:
			skus = s.watch.changes.ItemSKUs(ch, chg.Item, skus[:0])
		}
		for _, sku := range skus {
			if sku > after {
				set[sku] = struct{}{}
			}
		}
	}
	page := make([]store.SKU, 0, len(set))
	for sku := range set {
		page = append(page, sku)
	}
	slices.Sort(page)
	if len(page) > size {
		page = page[:size]
		resp.NextPageToken = strconv.FormatUint(uint64(through), 10) + ":" + string(page[size-1])
	}
	resp.Skus, resp.RemovedSkus, err = s.figures(ch, page)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return resp, nil
}

// ListAvailability pages through every SKU the channel sells, sorted.
func (v *inventory) ListAvailability(ctx context.Context, req *stockdv1.ListAvailabilityRequest) (*stockdv1.ListAvailabilityResponse, error) {
	s := v.s
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, s.status(ctx, err)
	}
	if err := checkID("channel", req.GetChannel()); err != nil {
		return nil, s.status(ctx, err)
	}
	if len(req.GetPageToken()) > 256 {
		return nil, s.status(ctx, invalid("page_token", "not a token this server issued"))
	}
	if s.watch == nil {
		return nil, errWatchUnsupported
	}
	if err := s.awaitRead(ctx, store.Revision(req.GetMinRevision()), req.GetLinearizable()); err != nil {
		return nil, s.status(ctx, err)
	}
	ch := store.ChannelID(req.GetChannel())
	resp := &stockdv1.ListAvailabilityResponse{Revision: uint64(s.reader.AppliedIndex())}
	page, more, err := s.watch.changes.ChannelSKUs(ch, store.SKU(req.GetPageToken()), size)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	if more && len(page) > 0 {
		resp.NextPageToken = string(page[len(page)-1])
	}
	// A SKU whose mapping was deleted since ChannelSKUs listed it is left out.
	if resp.Skus, _, err = s.figures(ch, page); err != nil {
		return nil, s.status(ctx, err)
	}
	return resp, nil
}

// figures reads the channel's figure of each SKU, in the order given; a SKU
// that no longer resolves (its mapping was deleted and the channel requires
// one) goes to removed instead.
func (s *Server) figures(ch store.ChannelID, skus []store.SKU) (out []*stockdv1.SkuAvailability, removed []string, err error) {
	out = make([]*stockdv1.SkuAvailability, 0, len(skus))
	var a store.SKUAvailability
	for _, sku := range skus {
		err := s.reader.Availability(ch, sku, &a)
		switch {
		case err == nil:
		case isUnknownSKU(err):
			removed = append(removed, string(sku))
			continue
		default:
			return nil, nil, err
		}
		out = append(out, skuAvailabilityToProto(&stockdv1.SkuAvailability{}, &a))
	}
	return out, removed, nil
}

func isUnknownSKU(err error) bool { return errors.Is(err, store.ErrUnknownSKU) }

// pageSize validates page_size: 1-maxChangesPage, 0 for the default.
func pageSize(n uint32) (int, error) {
	switch {
	case n == 0:
		return defaultChangesPage, nil
	case n > maxChangesPage:
		return 0, invalid("page_size", "at most "+strconv.Itoa(maxChangesPage)+", got "+strconv.FormatUint(uint64(n), 10))
	}
	return int(n), nil
}

// parseChangesToken splits a ListChanges page token "through:lastSKU".
func parseChangesToken(tok string) (store.Revision, store.SKU, error) {
	if tok == "" {
		return 0, "", nil
	}
	rev, sku, ok := strings.Cut(tok, ":")
	n, err := strconv.ParseUint(rev, 10, 64)
	if !ok || err != nil || n == 0 || len(sku) > 256 {
		return 0, "", invalid("page_token", "not a token this server issued")
	}
	return store.Revision(n), store.SKU(sku), nil
}
