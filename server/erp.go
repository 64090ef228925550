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
	rows := req.GetRows()
	if len(rows) > store.MaxRows {
		return nil, s.status(ctx, invalid("rows", "at most "+strconv.Itoa(store.MaxRows)+" rows"))
	}
	cmd := &logv1.SetStock{
		Rows:         make([]*logv1.StockCount, len(rows)),
		AbsorbedMark: req.GetAbsorbedMark(),
	}
	for i, r := range rows {
		cmd.Rows[i] = &logv1.StockCount{
			Item:            r.GetItem(),
			Location:        r.GetLocation(),
			OnHandBaseUnits: r.GetOnHandBaseUnits(),
			Version:         r.GetVersion(),
		}
	}
	res, err := s.propose(ctx, &logv1.Command{Kind: &logv1.Command_SetStock{SetStock: cmd}})
	if err != nil {
		return nil, s.status(ctx, err)
	}
	out, n := rowsToProto(res.Rows)
	return &stockdv1.SetStockResponse{
		Rows:         out,
		Revision:     uint64(res.Revision),
		Applied:      n.applied,
		IgnoredStale: n.ignoredStale,
		Rejected:     n.rejected,
	}, nil
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
	return &stockdv1.AdjustStockResponse{
		Rows:         out,
		Revision:     uint64(res.Revision),
		Applied:      n.applied,
		IgnoredStale: n.ignoredStale,
		Rejected:     n.rejected,
	}, nil
}
