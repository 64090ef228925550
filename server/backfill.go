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
const maxBackfillRejected = store.MaxBackfillRejected

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
	var keys rowKeys
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
			msgs := make([]logv1.StockCount, len(req.GetRows())) // one allocation for the chunk's rows
			for i, r := range req.GetRows() {
				m := &msgs[i]
				m.Item, m.Location, m.OnHandBaseUnits, m.Version = r.GetItem(), r.GetLocation(), r.GetOnHandBaseUnits(), r.GetVersion()
				cmd.Rows[i] = m
				keys.add(r.GetItem(), r.GetLocation())
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
		out, err := backfillResponse(gen, rows, &keys, res)
		if err != nil {
			return s.status(ctx, err)
		}
		return stream.SendAndClose(out)
	}
}

// backfillResponse turns a commit's summary into the answer, naming the
// rejected rows it lists by their keys.
func backfillResponse(gen string, rows uint64, keys *rowKeys, res store.Result) (*stockdv1.BackfillResponse, error) {
	out := &stockdv1.BackfillResponse{GenerationId: gen, Rows: rows, Revision: uint64(res.Revision)}
	sum, ok := store.BackfillSummaryOf(res)
	if !ok {
		// A commit that applied always answers with a summary (a refusal
		// came back as res.Err): this is a bug, answered INTERNAL.
		return nil, errors.New("backfill commit: the answer holds no summary")
	}
	out.Applied, out.IgnoredStale, out.Pruned = uint32(sum.Applied), uint32(sum.IgnoredStale), sum.Pruned
	out.Rejected = uint32(sum.Rejected)
	for _, r := range sum.RejectedRows[:min(len(sum.RejectedRows), maxBackfillRejected)] {
		out.RejectedRows = append(out.RejectedRows, &stockdv1.RejectedRow{Revision: uint64(res.Revision),
			Source: "backfill", Row: uint32(r.Row), Key: keys.key(r.Row), Reason: r.Reason})
	}
	return out, nil
}

// rowKeys holds every row's "ITEM@LOCATION" of a generation in one buffer,
// to name the rejected rows of the answer: ~25 bytes a row at a million
// rows, instead of two strings per row kept alive with their messages.
type rowKeys struct {
	buf  []byte
	ends []int // row i's key is buf[ends[i-1]:ends[i]]
}

func (k *rowKeys) add(item, loc string) {
	k.buf = append(k.buf, item...)
	k.buf = append(k.buf, '@')
	k.buf = append(k.buf, loc...)
	k.ends = append(k.ends, len(k.buf))
}

// key is row i's "ITEM@LOCATION", or "" past the last row.
func (k *rowKeys) key(i uint64) string {
	if i >= uint64(len(k.ends)) {
		return ""
	}
	start := 0
	if i > 0 {
		start = k.ends[i-1]
	}
	return string(k.buf[start:k.ends[i]])
}
