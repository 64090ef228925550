package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stockd/stockd/api/logv1"
	"github.com/stockd/stockd/api/stockdv1"
	"github.com/stockd/stockd/store"
)

// maxPushInflight is the most batches one PushStock stream holds: received
// and not yet answered. Past it the stream stops reading, so a client that
// stops taking answers is held back by HTTP/2 flow control.
const maxPushInflight = 64

// PushStock serves a stream of SetStock batches, each tagged with the
// caller's batch_id, and answers each exactly once, tagged, in the order
// sent. Each batch is the same command SetStock proposes (setStockCommand),
// so its rows are judged as SetStock judges them.
//
// Order: batches are applied in the order sent, because versions (an older
// row is IGNORED_STALE, an equal one with another count REJECTED) and the
// absorbed mark depend on it. The Proposer gives no ordering between
// concurrent Propose calls (the cluster's queue is FIFO, but a follower
// forwards each call separately to the leader), so one goroutine per stream
// proposes the batches one after the other, each once the previous one is
// applied. The stream is pipelined around that: the receive loop reads,
// checks and converts up to maxPushInflight (64) batches ahead while one is
// in flight, and a separate sender hands answers to gRPC while the next
// batch is proposed. Throughput per stream is thus one batch per commit;
// batches of 1,000 rows or more keep that far above 100,000 rows/s on a
// single node (see cmd/stockd BenchmarkPushStock).
//
// A batch with a bad batch_id, no batch, too many rows or anything else
// refused before proposing, and a batch whose proposal fails (not leader,
// queue full), is answered with error_code and error_message; the stream
// goes on with the next batch. A batch answered with an error may or may not
// have been applied when its proposal failed (UNAVAILABLE and the like); the
// ERP re-sends it, and its versions make a late re-send harmless.
//
// It returns nil once the client has closed its send side and every answer
// has been sent, or an error when the stream's context ends or a receive or
// send fails. Every goroutine it starts has exited by then, and a panic in
// one of them costs only the batch it was on (answered INTERNAL).
func (e *erp) PushStock(stream stockdv1.Erp_PushStockServer) error {
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	ps := &pushStream{
		s:       e.s,
		stream:  stream,
		ctx:     ctx,
		cancel:  cancel,
		slots:   make(chan struct{}, maxPushInflight),
		batches: make(chan *pushBatch, maxPushInflight),
		answers: make(chan *stockdv1.PushStockResponse, maxPushInflight),
		sent:    make(chan struct{}),
	}
	var applier sync.WaitGroup
	applier.Add(1)
	go func() {
		defer applier.Done()
		defer close(ps.answers)
		ps.apply()
	}()
	go ps.send()
	err := ps.receive()
	if err != nil {
		cancel(err)
	}
	// The applier answers what is queued (promptly once ctx is cancelled),
	// closes answers and exits; the sender sends what is left (or drops it
	// once the stream is broken) and exits.
	close(ps.batches)
	applier.Wait()
	<-ps.sent
	if err == nil {
		err = ps.sendErr
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return e.s.status(ctx, err)
}

// pushStream is one PushStock call's state; nothing in it is shared with
// another stream.
type pushStream struct {
	s      *Server
	stream stockdv1.Erp_PushStockServer
	// ctx is the stream's context, also cancelled, with the error as cause,
	// when a receive or a send fails; batches are proposed under it.
	ctx    context.Context
	cancel context.CancelCauseFunc

	// slots holds one token per batch in flight: taken before a receive,
	// given back once its answer is sent.
	slots chan struct{}
	// batches carries received batches to the applier in the order sent;
	// answers carries their answers to the sender in the same order. Both
	// have room for every batch in flight, so neither send ever blocks.
	batches chan *pushBatch
	answers chan *stockdv1.PushStockResponse
	// sent is closed when the sender exits; sendErr is then its error.
	sent    chan struct{}
	sendErr error
}

// pushBatch is one received batch: its command, or, when it was refused
// before proposing, its answer already filled in (cmd nil).
type pushBatch struct {
	cmd *logv1.Command
	ans *stockdv1.PushStockResponse
}

// receive reads batches while a slot is free and queues them for the
// applier in order. It returns nil when the client closes its send side, or
// the error that ended the stream.
func (ps *pushStream) receive() error {
	for {
		select {
		case ps.slots <- struct{}{}:
		case <-ps.ctx.Done():
			return context.Cause(ps.ctx)
		}
		req, err := ps.stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		b := &pushBatch{ans: &stockdv1.PushStockResponse{BatchId: req.GetBatchId()}}
		ps.guard(b.ans, func() {
			cmd, err := ps.check(req)
			if err != nil {
				ps.fail(b.ans, err)
				return
			}
			b.cmd = cmd
		})
		ps.batches <- b
	}
}

// check returns the command for req, or why req is refused before
// proposing; fields are named from the PushStockRequest.
func (ps *pushStream) check(req *stockdv1.PushStockRequest) (*logv1.Command, error) {
	if err := checkID("batch_id", req.GetBatchId()); err != nil {
		return nil, err
	}
	if req.GetBatch() == nil {
		return nil, invalid("batch", "required")
	}
	cmd, err := setStockCommand(req.GetBatch())
	if err == nil {
		err = store.Validate(cmd)
	}
	if err != nil {
		return nil, inBatch(err)
	}
	return cmd, nil
}

// inBatch names a refusal's field from the PushStockRequest: "rows" becomes
// "batch.rows".
func inBatch(err error) error {
	var rej *store.Rejection
	if !errors.As(err, &rej) || rej.Field == "" {
		return err
	}
	r := *rej
	r.Field = "batch." + rej.Field
	return &r
}

// apply proposes the queued batches one at a time, in the order received,
// and queues each answer. It returns when batches is closed; once ctx ends,
// every proposal returns at once with ctx's error.
func (ps *pushStream) apply() {
	for b := range ps.batches {
		if b.cmd != nil {
			ps.guard(b.ans, func() {
				res, err := ps.s.propose(ps.ctx, b.cmd)
				if err != nil {
					ps.fail(b.ans, err)
					return
				}
				b.ans.Result = setStockResponse(res)
			})
		}
		ps.answers <- b.ans
	}
}

// fail makes ans an error answer: the code and message the unary SetStock
// would have returned.
func (ps *pushStream) fail(ans *stockdv1.PushStockResponse, err error) {
	st := status.Convert(ps.s.status(ps.ctx, err))
	ans.Result = nil
	ans.ErrorCode = uint32(st.Code())
	ans.ErrorMessage = st.Message()
}

// guard runs f; a panic in it is logged and ans becomes an INTERNAL answer,
// so one batch's panic costs only that batch.
func (ps *pushStream) guard(ans *stockdv1.PushStockResponse, f func()) {
	defer func() {
		if p := recover(); p != nil {
			ps.logPanic("panic in push stock batch", p)
			ans.Result = nil
			ans.ErrorCode = uint32(codes.Internal)
			ans.ErrorMessage = internalMessage
		}
	}()
	f()
}

// send hands answers to gRPC one at a time and frees a slot after each. It
// exits when answers is closed. After a failed send it drops what is left:
// the stream is broken and ctx is cancelled, so nothing more is read.
func (ps *pushStream) send() {
	defer close(ps.sent)
	for ans := range ps.answers {
		if ps.sendErr != nil {
			continue
		}
		if err := ps.sendOne(ans); err != nil {
			ps.sendErr = err
			ps.cancel(err)
			continue
		}
		<-ps.slots
	}
}

// sendOne sends ans. A panic while sending is logged and the batch is
// answered INTERNAL instead; if that panics too, the stream is given up as
// INTERNAL.
func (ps *pushStream) sendOne(ans *stockdv1.PushStockResponse) error {
	panicked, err := ps.trySend(ans)
	if !panicked {
		return err
	}
	panicked, err = ps.trySend(&stockdv1.PushStockResponse{BatchId: ans.GetBatchId(),
		ErrorCode: uint32(codes.Internal), ErrorMessage: internalMessage})
	if panicked {
		return status.Error(codes.Internal, internalMessage)
	}
	return err
}

func (ps *pushStream) trySend(ans *stockdv1.PushStockResponse) (panicked bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			ps.logPanic("panic sending a push stock answer", p)
			panicked, err = true, nil
		}
	}()
	return false, ps.stream.Send(ans)
}

// logPanic logs a recovered panic with its stack, as reserveStream does.
func (ps *pushStream) logPanic(msg string, p any) {
	ps.s.log.LogAttrs(ps.ctx, slog.LevelError, msg,
		methodAttr(ps.ctx),
		slog.String("panic", fmt.Sprint(p)),
		slog.String("stack", string(debug.Stack())))
}
