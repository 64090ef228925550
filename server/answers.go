package server

import (
	"sync"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"

	"github.com/stockd/stockd/api/stockdv1"
)

// GetAvailability answers of many SKUs take their SkuAvailability messages
// from a pool and give them back once gRPC has marshalled the answer
// (answerCodec): a read of 100 SKUs allocated 15 KB of them per call, most of
// what a storefront read allocates, and the collector's work with them was a
// tenth of the server's CPU. gRPC marshals every answer a handler returns
// without error before it looks at the connection, and nothing in the chain
// keeps an answer past that, so every lent answer comes back.

// minPooledSKUs is the smallest read whose messages are pooled: below it the
// lending costs more than the allocation it saves.
const minPooledSKUs = 16

// answerSlab is the messages of one answer.
type answerSlab struct {
	msgs []stockdv1.SkuAvailability
	ptrs []*stockdv1.SkuAvailability
}

var (
	answerSlabs sync.Pool // *answerSlab
	lentAnswers sync.Map  // *stockdv1.GetAvailabilityResponse -> *answerSlab
)

// lendAnswer returns resp's n messages (zero or as a previous answer left
// them: the caller sets every field) and their pointers, lent to resp until
// returnAnswer.
func lendAnswer(resp *stockdv1.GetAvailabilityResponse, n int) ([]stockdv1.SkuAvailability, []*stockdv1.SkuAvailability) {
	sl, _ := answerSlabs.Get().(*answerSlab)
	if sl == nil || cap(sl.msgs) < n {
		sl = &answerSlab{msgs: make([]stockdv1.SkuAvailability, n), ptrs: make([]*stockdv1.SkuAvailability, n)}
	}
	lentAnswers.Store(resp, sl)
	return sl.msgs[:n], sl.ptrs[:n]
}

// returnAnswer gives resp's messages back to the pool, if they were lent.
func returnAnswer(resp *stockdv1.GetAvailabilityResponse) {
	v, ok := lentAnswers.LoadAndDelete(resp)
	if !ok {
		return
	}
	resp.Skus = nil
	answerSlabs.Put(v.(*answerSlab))
}

// answerCodec is gRPC's proto codec, returning a GetAvailability answer's
// lent messages once the answer is marshalled.
type answerCodec struct {
	encoding.CodecV2
}

func newAnswerCodec() answerCodec {
	return answerCodec{encoding.GetCodecV2(proto.Name)}
}

func (c answerCodec) Marshal(v any) (mem.BufferSlice, error) {
	out, err := c.CodecV2.Marshal(v)
	if resp, ok := v.(*stockdv1.GetAvailabilityResponse); ok {
		returnAnswer(resp)
	}
	return out, err
}
