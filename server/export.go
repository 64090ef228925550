package server

import (
	"strconv"

	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

// maxExportPage bounds the counters of one ExportStock message, and is the
// size of a page when the request names none.
const maxExportPage = 10000

// ExportStock streams the counters of one item and/or one location, or every
// counter, sorted by (item, location), page_size per message. The node
// copies them in one cut (store.Machine.Counters, under the apply lock), so
// every page reflects the revision it carries, and then sends from the copy
// without holding any lock: a slow client holds up nobody but keeps its copy
// in memory until it is done. An export with nothing to send answers one
// message with no counters, so the caller still learns the revision.
// min_revision and linearizable wait as GetAvailability's do.
func (e *erp) ExportStock(req *stockdv1.ExportStockRequest, stream stockdv1.Erp_ExportStockServer) error {
	s := e.s
	ctx := stream.Context()
	page, err := checkExportRequest(req)
	if err != nil {
		return s.status(ctx, err)
	}
	if err := s.awaitRead(ctx, store.Revision(req.GetMinRevision()), req.GetLinearizable()); err != nil {
		return s.status(ctx, err)
	}
	counters, rev := s.reader.Counters(store.ItemID(req.GetItem()), store.LocationID(req.GetLocation()))
	for start := 0; start == 0 || start < len(counters); start += page {
		end := min(start+page, len(counters))
		if err := stream.Send(exportPageToProto(counters[start:end], rev)); err != nil {
			return s.streamStatus(ctx, err)
		}
	}
	return nil
}

// checkExportRequest validates the filters and returns the page size.
func checkExportRequest(req *stockdv1.ExportStockRequest) (int, error) {
	if err := checkFilter("item", req.GetItem()); err != nil {
		return 0, err
	}
	if err := checkFilter("location", req.GetLocation()); err != nil {
		return 0, err
	}
	switch n := req.GetPageSize(); {
	case n == 0:
		return maxExportPage, nil
	case n > maxExportPage:
		return 0, invalid("page_size", "at most "+strconv.Itoa(maxExportPage)+", got "+strconv.FormatUint(uint64(n), 10))
	default:
		return int(n), nil
	}
}

// exportPageToProto is one ExportStock message.
func exportPageToProto(cs []store.CounterCopy, rev store.Revision) *stockdv1.ExportStockResponse {
	msgs := make([]stockdv1.StockCounter, len(cs))
	out := &stockdv1.ExportStockResponse{Counters: make([]*stockdv1.StockCounter, len(cs)), Revision: uint64(rev)}
	for i := range cs {
		c := &cs[i]
		m := &msgs[i]
		m.Item, m.Location = string(c.Item), string(c.Location)
		m.OnHandBaseUnits, m.Version = int64(c.OnHand), c.Version
		m.ReservedBaseUnits, m.CommittedBaseUnits = int64(c.Reserved), int64(c.Committed)
		m.OversoldBaseUnits = int64(c.Oversold())
		out.Counters[i] = m
	}
	return out
}
