package bench

import (
	"fmt"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// storefront's GetAvailability answers are checked on the wire instead of
// decoded into messages: decoding 100 SKUs of 3 locations each (400 messages
// and 500 strings per call) cost the load client as much CPU as the server
// spent answering, on the same cores, so it hid the server's speed. The
// check is stricter than counting decoded messages: each SKU of the answer
// must be the one asked at its position.

// Field numbers of stockd.v1.GetAvailabilityResponse.skus and
// SkuAvailability.sku; a test checks them against the generated descriptors.
const (
	availabilitySKUsField   protowire.Number = 2
	skuAvailabilitySKU      protowire.Number = 1
	skuAvailabilityLocation protowire.Number = 4
)

// availabilityCodec is the gRPC codec of storefront's calls: requests are
// marshalled as proto messages, answers are read into an availabilityReply.
// Its name is "proto", so the call goes on the wire exactly as the generated
// client's does. It is stateless and safe for concurrent use.
type availabilityCodec struct{}

func (availabilityCodec) Name() string { return "proto" }

func (availabilityCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("marshal %T: not a proto message", v)
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (availabilityCodec) Unmarshal(data mem.BufferSlice, v any) error {
	r, ok := v.(*availabilityReply)
	if !ok {
		return fmt.Errorf("unmarshal into %T: want *availabilityReply", v)
	}
	if len(data) == 1 {
		return r.read(data[0].ReadOnlyData())
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return r.read(buf.ReadOnlyData())
}

// availabilityReply is a GetAvailabilityResponse as storefront checks it:
// how many SKUs it carries and the first that is not the one asked at its
// position. It keeps nothing of the wire bytes.
type availabilityReply struct {
	want     []string // the request's SKUs, in order
	full     bool     // the FULL view was asked: every SKU carries locations
	got      int
	located  int // SKUs carrying locations
	mismatch error
}

// reset prepares r for the answer to a request of want, in the FULL view
// or the BASIC one.
func (r *availabilityReply) reset(want []string, full bool) {
	*r = availabilityReply{want: want, full: full}
}

// check returns what is wrong with the answer read: a count other than the
// SKUs asked, the first SKU that is not the one asked, or a view other than
// the one asked (FULL: locations on every SKU; BASIC: on none); nil when
// right.
func (r *availabilityReply) check() error {
	switch {
	case r.got != len(r.want):
		return fmt.Errorf("asked %d skus, got %d", len(r.want), r.got)
	case r.mismatch != nil:
		return r.mismatch
	case r.full && r.located != r.got:
		return fmt.Errorf("asked the FULL view: %d of %d skus without locations", r.got-r.located, r.got)
	case !r.full && r.located > 0:
		return fmt.Errorf("asked the BASIC view: %d of %d skus with locations", r.located, r.got)
	}
	return nil
}

// read walks a marshalled GetAvailabilityResponse. Bytes that are not a
// well-formed message give an error; an answer that is well-formed but not
// what was asked is noted in r.mismatch.
func (r *availabilityReply) read(b []byte) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("get availability answer: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if num != availabilitySKUsField || typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("get availability answer: %w", protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		msg, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return fmt.Errorf("get availability answer: %w", protowire.ParseError(n))
		}
		b = b[n:]
		sku, located, err := skuOf(msg)
		if located {
			r.located++
		}
		if err != nil {
			return fmt.Errorf("get availability answer: skus[%d]: %w", r.got, err)
		}
		if r.mismatch == nil && r.got < len(r.want) && string(sku) != r.want[r.got] {
			r.mismatch = fmt.Errorf("skus[%d]: asked %q, got %q", r.got, r.want[r.got], sku)
		}
		r.got++
	}
	return nil
}

// skuOf returns the sku field of a marshalled SkuAvailability (the last one,
// as a proto decoder would; empty when absent) and whether it carries
// locations.
func skuOf(b []byte) (sku []byte, located bool, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, located, protowire.ParseError(n)
		}
		b = b[n:]
		if num == skuAvailabilitySKU && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, located, protowire.ParseError(n)
			}
			sku, b = v, b[n:]
			continue
		}
		located = located || num == skuAvailabilityLocation
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return nil, located, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return sku, located, nil
}
