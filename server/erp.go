package server

import (
	"context"
	"strconv"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

// erp serves stockdv1.Erp: the ERP adapter's stock updates (DESIGN.md I6).
// A batch answers row by row; a rejected row never sinks its neighbours.
type erp struct {
	stockdv1.UnimplementedErpServer
	s *Server
}

// SetStock sets absolute on-hand counts, each row judged on its own.
func (e *erp) SetStock(ctx context.Context, req *stockdv1.SetStockRequest) (*stockdv1.SetStockResponse, error) {
	s := e.s
	cmd, err := setStockCommand(req)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	res, err := s.propose(ctx, cmd)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return setStockResponse(res), nil
}

// setStockCommand is the log command for req, or the refusal of a batch
// with too many rows. SetStock and PushStock share it.
func setStockCommand(req *stockdv1.SetStockRequest) (*logv1.Command, error) {
	rows := req.GetRows()
	if len(rows) > store.MaxRows {
		return nil, invalid("rows", "at most "+strconv.Itoa(store.MaxRows)+" rows")
	}
	cmd := &logv1.SetStock{
		Rows:         make([]*logv1.StockCount, len(rows)),
		AbsorbedMark: req.GetAbsorbedMark(),
		// A retried row whose version is held is stale whatever the count
		// now (server.propose falls back while a voter lacks feature 3).
		SameVersionStale: true,
	}
	for i, r := range rows {
		cmd.Rows[i] = &logv1.StockCount{
			Item:            r.GetItem(),
			Location:        r.GetLocation(),
			OnHandBaseUnits: r.GetOnHandBaseUnits(),
			Version:         r.GetVersion(),
		}
	}
	return &logv1.Command{Kind: &logv1.Command_SetStock{SetStock: cmd}}, nil
}

// setStockResponse is a SetStock command's answer.
func setStockResponse(res store.Result) *stockdv1.SetStockResponse {
	out, n := rowsToProto(res.Rows)
	return &stockdv1.SetStockResponse{Rows: out, Revision: uint64(res.Revision),
		Applied: n.applied, IgnoredStale: n.ignoredStale, Rejected: n.rejected}
}

// AdjustStock applies signed deltas, each once by its delta id.
func (e *erp) AdjustStock(ctx context.Context, req *stockdv1.AdjustStockRequest) (*stockdv1.AdjustStockResponse, error) {
	s := e.s
	rows := req.GetRows()
	if len(rows) > store.MaxRows {
		return nil, s.status(ctx, invalid("rows", "at most "+strconv.Itoa(store.MaxRows)+" rows"))
	}
	cmd := &logv1.AdjustStock{Rows: make([]*logv1.StockAdjustment, len(rows))}
	for i, r := range rows {
		cmd.Rows[i] = &logv1.StockAdjustment{
			DeltaId:        r.GetDeltaId(),
			Item:           r.GetItem(),
			Location:       r.GetLocation(),
			DeltaBaseUnits: r.GetDeltaBaseUnits(),
			Version:        r.GetVersion(),
			Reason:         r.GetReason(),
		}
	}
	res, err := s.propose(ctx, &logv1.Command{Kind: &logv1.Command_AdjustStock{AdjustStock: cmd}})
	if err != nil {
		return nil, s.status(ctx, err)
	}
	out, n := rowsToProto(res.Rows)
	return &stockdv1.AdjustStockResponse{Rows: out, Revision: uint64(res.Revision),
		Applied: n.applied, IgnoredStale: n.ignoredStale, Rejected: n.rejected}, nil
}

// SetIncoming records purchase-order lines on their way, each row judged on its own.
func (e *erp) SetIncoming(ctx context.Context, req *stockdv1.SetIncomingRequest) (*stockdv1.SetIncomingResponse, error) {
	s := e.s
	lines := req.GetLines()
	if len(lines) > store.MaxRows {
		return nil, s.status(ctx, invalid("lines", "at most "+strconv.Itoa(store.MaxRows)+" lines"))
	}
	cmd := &logv1.SetIncoming{Lines: make([]*logv1.IncomingLine, len(lines))}
	for i, l := range lines {
		eta, err := timeNanos(indexed("lines", i)+".eta", l.GetEta())
		if err != nil {
			return nil, s.status(ctx, err)
		}
		cmd.Lines[i] = &logv1.IncomingLine{
			PoLineId:          l.GetPoLineId(),
			Item:              l.GetItem(),
			Location:          l.GetLocation(),
			QuantityBaseUnits: l.GetQuantityBaseUnits(),
			ReceivedBaseUnits: l.GetReceivedBaseUnits(),
			EtaUnixNanos:      eta,
			Version:           l.GetVersion(),
		}
	}
	res, err := s.propose(ctx, &logv1.Command{Kind: &logv1.Command_SetIncoming{SetIncoming: cmd}})
	if err != nil {
		return nil, s.status(ctx, err)
	}
	out, n := rowsToProto(res.Rows)
	return &stockdv1.SetIncomingResponse{Rows: out, Revision: uint64(res.Revision),
		Applied: n.applied, IgnoredStale: n.ignoredStale, Rejected: n.rejected}, nil
}

// ListIncoming lists incoming lines of one item or all, with what backorders hold on them.
func (e *erp) ListIncoming(ctx context.Context, req *stockdv1.ListIncomingRequest) (*stockdv1.ListIncomingResponse, error) {
	s := e.s
	if err := checkFilter("item", req.GetItem()); err != nil {
		return nil, s.status(ctx, err)
	}
	if err := s.awaitCaughtUp(ctx); err != nil {
		return nil, s.status(ctx, err)
	}
	resp := &stockdv1.ListIncomingResponse{Revision: uint64(s.reader.AppliedIndex())}
	for _, l := range s.reader.Incoming(store.ItemID(req.GetItem())) {
		resp.Lines = append(resp.Lines, &stockdv1.IncomingStatus{
			Line: &stockdv1.IncomingLine{
				PoLineId:          l.POLine,
				Item:              string(l.Item),
				Location:          string(l.Location),
				QuantityBaseUnits: int64(l.Quantity),
				ReceivedBaseUnits: int64(l.Received),
				Eta:               timestamp(l.ETA),
				Version:           l.Version,
			},
			BackorderedBaseUnits: int64(l.Backordered),
		})
	}
	return resp, nil
}
