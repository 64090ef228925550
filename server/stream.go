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

	"github.com/stockd/stockd/api/stockdv1"
)

// maxStreamInflight is the most requests one ReserveStream holds: received
// and not yet answered (the answer not yet handed to gRPC). The proto
// promises 1,024 to clients; past it the stream stops reading, so a client
// that stops taking answers is held back by HTTP/2 flow control and costs the
// server a bounded amount of memory.
const maxStreamInflight = 1024

// ReserveStream serves pipelined reserve, confirm and release requests, each
// tagged with the caller's request_id, and answers each exactly once, tagged,
// in the order answers become ready. Every request runs concurrently through
// the same code as the unary Reserve, Confirm and Release (same command,
// same proposer, so retries by id are safe (DESIGN.md I3) and concurrent
// requests share log entries), and a failure becomes a StreamError with the
// code and message the unary call would have returned; the stream goes on. A
// request with a bad request_id or no op is answered INVALID_ARGUMENT without
// being proposed.
//
// At most maxStreamInflight (1,024) requests are in flight per stream: when
// the window is full the receive loop stops reading until an answer is sent.
// Each stream has its own goroutines, window and answer queue, and nothing is
// shared between streams but the proposer, so a stream whose client stops
// reading holds up nobody else.
//
// It returns nil once the client has closed its send side and every answer
// has been sent, or an error when the stream's context ends, a receive or a
// send fails. Every goroutine it starts has exited by then. A broken stream
// loses nothing acknowledged: an answered request was decided in the log, and
// an unanswered one may or may not have been; the client re-sends the
// unanswered ones (same reservation ids) on a new stream and gets the first
// answers.
func (v *inventory) ReserveStream(stream stockdv1.Inventory_ReserveStreamServer) error {
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	rs := &reserveStream{
		v:       v,
		stream:  stream,
		ctx:     ctx,
		cancel:  cancel,
		slots:   make(chan struct{}, maxStreamInflight),
		answers: make(chan *stockdv1.ReserveStreamResponse, maxStreamInflight),
		sent:    make(chan struct{}),
	}
	go rs.send()
	err := rs.receive()
	if err != nil {
		cancel(err)
	}
	// Every request still in flight answers, promptly once ctx is cancelled;
	// then the sender sends what is queued (or drops it once the stream is
	// broken) and exits.
	rs.workers.Wait()
	close(rs.answers)
	<-rs.sent
	if err == nil {
		err = rs.sendErr
	}
	if _, ok := status.FromError(err); ok {
		return err // nil, or gRPC's own status for a failed receive or send
	}
	return v.s.status(ctx, err)
}

// reserveStream is one ReserveStream call's state; nothing in it is shared
// with another stream.
type reserveStream struct {
	v      *inventory
	stream stockdv1.Inventory_ReserveStreamServer
	// ctx is the stream's context, also cancelled, with the error as cause,
	// when a receive or a send fails; requests are proposed under it.
	ctx    context.Context
	cancel context.CancelCauseFunc

	// slots holds one token per request in flight: taken before a receive,
	// given back once its answer is sent.
	slots chan struct{}
	// answers has room for every request in flight, so a request never
	// waits to queue its answer, whatever the client does.
	answers chan *stockdv1.ReserveStreamResponse
	// workers counts the request goroutines.
	workers sync.WaitGroup
	// sent is closed when the sender exits; sendErr is then its error.
	sent    chan struct{}
	sendErr error
}

// receive reads requests while a slot is free and starts one goroutine per
// request. It returns nil when the client closes its send side, or the error
// that ended the stream.
func (rs *reserveStream) receive() error {
	for {
		select {
		case rs.slots <- struct{}{}:
		case <-rs.ctx.Done():
			return context.Cause(rs.ctx)
		}
		req, err := rs.stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		// The request's answer; check fills it in when the request is bad.
		ans := &stockdv1.ReserveStreamResponse{RequestId: req.GetRequestId()}
		var ok bool
		rs.guard(ans, func() { ok = rs.check(req, ans) })
		if !ok {
			rs.answers <- ans
			continue
		}
		rs.workers.Add(1)
		go rs.serve(req, ans)
	}
}

// check reports whether req may be served; if not, ans says why (a bad
// request_id, no op, or an op for another channel than the caller's).
func (rs *reserveStream) check(req *stockdv1.ReserveStreamRequest, ans *stockdv1.ReserveStreamResponse) bool {
	err := checkID("request_id", req.GetRequestId())
	if err == nil && req.GetOp() == nil {
		err = invalid("op", "one of reserve, confirm or release is required")
	}
	if err != nil {
		ans.Result = streamError(rs.v.s.status(rs.ctx, err))
		return false
	}
	// A request for another channel than the caller's is refused on its
	// own; the stream goes on (permissions.go).
	if err := checkChannel(rs.ctx, req); err != nil {
		ans.Result = streamError(err)
		return false
	}
	// Each request takes a call from the caller's rate limit, as the unary
	// call it stands for would; one over it is answered RESOURCE_EXHAUSTED
	// on its own and the stream goes on.
	if err := allow(rs.ctx); err != nil {
		ans.Result = streamError(err)
		return false
	}
	return true
}

// serve answers one request and queues the answer. Its goroutine exits once
// the answer is queued, which never blocks; the proposal returns when ctx
// ends at the latest.
func (rs *reserveStream) serve(req *stockdv1.ReserveStreamRequest, ans *stockdv1.ReserveStreamResponse) {
	defer rs.workers.Done()
	rs.guard(ans, func() { rs.answer(req, ans) })
	rs.answers <- ans
}

// guard runs f; a panic in it is logged and ans becomes an INTERNAL answer,
// so one request's panic costs only that request.
func (rs *reserveStream) guard(ans *stockdv1.ReserveStreamResponse, f func()) {
	defer func() {
		if p := recover(); p != nil {
			rs.logPanic("panic in reserve stream request", p)
			ans.Result = streamError(status.Error(codes.Internal, internalMessage))
		}
	}()
	f()
}

// answer runs req through the unary handler of its kind and puts the
// outcome in ans.
func (rs *reserveStream) answer(req *stockdv1.ReserveStreamRequest, ans *stockdv1.ReserveStreamResponse) {
	v, ctx := rs.v, rs.ctx
	var err error
	switch op := req.GetOp().(type) {
	case *stockdv1.ReserveStreamRequest_Reserve:
		var resp *stockdv1.ReserveResponse
		if resp, err = v.Reserve(ctx, op.Reserve); err == nil {
			ans.Result = &stockdv1.ReserveStreamResponse_Reserve{Reserve: resp}
		}
	case *stockdv1.ReserveStreamRequest_Confirm:
		var resp *stockdv1.ConfirmResponse
		if resp, err = v.Confirm(ctx, op.Confirm); err == nil {
			ans.Result = &stockdv1.ReserveStreamResponse_Confirm{Confirm: resp}
		}
	case *stockdv1.ReserveStreamRequest_Release:
		var resp *stockdv1.ReleaseResponse
		if resp, err = v.Release(ctx, op.Release); err == nil {
			ans.Result = &stockdv1.ReserveStreamResponse_Release{Release: resp}
		}
	default:
		// check lets no other op through; a new op in the proto lands here
		// until it is served.
		panic(fmt.Sprintf("reserve stream: unhandled op %T", req.GetOp()))
	}
	if err != nil {
		ans.Result = streamError(err)
	}
}

// send hands answers to gRPC one at a time and frees a slot after each. It
// exits when answers is closed. After a failed send it drops what is left:
// the stream is broken (gRPC has ended it and cancelled its context) and
// ctx is cancelled, so nothing more is read.
func (rs *reserveStream) send() {
	defer close(rs.sent)
	for ans := range rs.answers {
		if rs.sendErr != nil {
			continue
		}
		if err := rs.sendOne(ans); err != nil {
			rs.sendErr = err
			rs.cancel(err)
			continue
		}
		<-rs.slots
	}
}

// sendOne sends ans. A panic while sending is logged and the request is
// answered INTERNAL instead; if that panics too, the stream is given up as
// INTERNAL (it then ends when the client next sends, closes or cancels: only
// gRPC can interrupt a receive).
func (rs *reserveStream) sendOne(ans *stockdv1.ReserveStreamResponse) error {
	panicked, err := rs.trySend(ans)
	if !panicked {
		return err
	}
	internal := status.Error(codes.Internal, internalMessage)
	panicked, err = rs.trySend(&stockdv1.ReserveStreamResponse{RequestId: ans.GetRequestId(), Result: streamError(internal)})
	if panicked {
		return internal
	}
	return err
}

func (rs *reserveStream) trySend(ans *stockdv1.ReserveStreamResponse) (panicked bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			rs.logPanic("panic sending a reserve stream answer", p)
			panicked, err = true, nil
		}
	}()
	return false, rs.stream.Send(ans)
}

// logPanic logs a recovered panic with its stack, as the recovery
// interceptor does for handlers; the client learns only "internal error".
func (rs *reserveStream) logPanic(msg string, p any) {
	rs.v.s.log.LogAttrs(rs.ctx, slog.LevelError, msg,
		methodAttr(rs.ctx),
		slog.String("panic", fmt.Sprint(p)),
		slog.String("stack", string(debug.Stack())))
}

// streamError is a handler's status error as a stream answer: the code and
// message the unary call would have returned, with its details (the field
// at fault, the current figure on ABORTED).
func streamError(err error) *stockdv1.ReserveStreamResponse_Error {
	st := status.Convert(err).Proto()
	return &stockdv1.ReserveStreamResponse_Error{Error: &stockdv1.StreamError{
		Code:    uint32(st.GetCode()),
		Message: st.GetMessage(),
		Details: st.GetDetails(),
	}}
}
