package server

import (
	"errors"
	"io"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

// maxBackfillRejected bounds BackfillResponse.rejected_rows.
const maxBackfillRejected = 100

// Backfill loads a full count as one generation (issue 5 item 3). Each
// message with rows is proposed as the next BackfillChunk, and read only once
// the previous one is applied; the message with commit proposes the
// BackfillCommit, which applies every staged row in one log command. A stream
// that ends without commit, or breaks, proposes nothing more: the staging
// stays unapplied until the next generation's first chunk replaces it.
//
// Errors: INVALID_ARGUMENT "generation_id" (missing on the first message, or
// changed later), "rows" (more than store.MaxRows in one message, or a commit
// of a generation without rows), "chunk" (the store refused the chunk: another
// backfill started meanwhile); FAILED_PRECONDITION "commit" for a stream that
// ends without commit.
func (e *erp) Backfill(stream grpc.ClientStreamingServer[stockdv1.BackfillRequest, stockdv1.BackfillResponse]) error {
	s := e.s
	ctx := stream.Context()
	var gen string
	var chunks uint32
	var rows uint64
	// keys holds every row's item and location (the request's own strings)
	// to name rejected rows in the answer.
	var keys [][2]string
	for first := true; ; first = false {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return status.Error(codes.FailedPrecondition, "commit: the stream ended without a commit; nothing was applied")
		}
		if err != nil {
			return err // the stream broke: the client is gone
		}
		switch id := req.GetGenerationId(); {
		case first && id == "":
			return s.status(ctx, invalid("generation_id", "required on the first message"))
		case first:
			gen = id
		case id != "" && id != gen:
			return s.status(ctx, invalid("generation_id", "changed from "+strconv.Quote(gen)+" to "+strconv.Quote(id)))
		}
		if n := len(req.GetRows()); n > store.MaxRows {
			return s.status(ctx, invalid("rows", "at most "+strconv.Itoa(store.MaxRows)+" rows per message, got "+strconv.Itoa(n)))
		}
		if len(req.GetRows()) > 0 {
			cmd := &logv1.BackfillChunk{GenerationId: gen, Chunk: chunks, Rows: make([]*logv1.StockCount, len(req.GetRows()))}
			for i, r := range req.GetRows() {
				cmd.Rows[i] = &logv1.StockCount{Item: r.GetItem(), Location: r.GetLocation(),
					OnHandBaseUnits: r.GetOnHandBaseUnits(), Version: r.GetVersion()}
				keys = append(keys, [2]string{r.GetItem(), r.GetLocation()})
			}
			if _, err := s.propose(ctx, &logv1.Command{Kind: &logv1.Command_BackfillChunk{BackfillChunk: cmd}}); err != nil {
				return s.status(ctx, err)
			}
			chunks++
			rows += uint64(len(cmd.Rows))
		}
		if !req.GetCommit() {
			continue
		}
		if chunks == 0 {
			return s.status(ctx, invalid("rows", "a generation needs at least one row"))
		}
		res, err := s.propose(ctx, &logv1.Command{Kind: &logv1.Command_BackfillCommit{BackfillCommit: &logv1.BackfillCommit{
			GenerationId: gen, Chunks: chunks, Prune: req.GetPrune(), AbsorbedMark: req.GetAbsorbedMark()}}})
		if err != nil {
			return s.status(ctx, err)
		}
		return stream.SendAndClose(backfillResponse(gen, rows, keys, res))
	}
}

// backfillResponse counts a commit's row answers and keeps the first rejected rows.
func backfillResponse(gen string, rows uint64, keys [][2]string, res store.Result) *stockdv1.BackfillResponse {
	out := &stockdv1.BackfillResponse{GenerationId: gen, Rows: rows, Pruned: res.Count, Revision: uint64(res.Revision)}
	for i, r := range res.Rows {
		switch r.Status {
		case store.RowApplied:
			out.Applied++
		case store.RowIgnoredStale:
			out.IgnoredStale++
		case store.RowRejected:
			out.Rejected++
			if len(out.RejectedRows) < maxBackfillRejected {
				out.RejectedRows = append(out.RejectedRows, &stockdv1.RejectedRow{Revision: uint64(res.Revision),
					Source: "backfill", Row: uint32(i), Key: keyOf(keys, i), Reason: r.Reason})
			}
		}
	}
	return out
}

// keyOf is row i's "ITEM@LOCATION".
func keyOf(keys [][2]string, i int) string {
	if i >= len(keys) {
		return ""
	}
	return keys[i][0] + "@" + keys[i][1]
}
