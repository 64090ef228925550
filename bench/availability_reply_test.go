package bench

import (
	"strings"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/stockd/stockd/api/stockdv1"
)

func TestAvailabilityFieldNumbersMatchTheProto(t *testing.T) {
	resp := (&stockdv1.GetAvailabilityResponse{}).ProtoReflect().Descriptor().Fields().ByName("skus")
	if resp == nil || resp.Number() != availabilitySKUsField {
		t.Fatalf("GetAvailabilityResponse.skus: got %v, want field %d", resp, availabilitySKUsField)
	}
	sku := (&stockdv1.SkuAvailability{}).ProtoReflect().Descriptor().Fields().ByName("sku")
	if sku == nil || sku.Number() != skuAvailabilitySKU {
		t.Fatalf("SkuAvailability.sku: got %v, want field %d", sku, skuAvailabilitySKU)
	}
	locs := (&stockdv1.SkuAvailability{}).ProtoReflect().Descriptor().Fields().ByName("locations")
	if locs == nil || locs.Number() != skuAvailabilityLocation {
		t.Fatalf("SkuAvailability.locations: got %v, want field %d", locs, skuAvailabilityLocation)
	}
}

// availabilityAnswer marshals a FULL answer for skus, every field filled so
// the reader has to skip each kind.
func availabilityAnswer(t *testing.T, skus ...string) []byte {
	t.Helper()
	return marshalAnswer(t, fullAnswer(skus...))
}

func marshalAnswer(t *testing.T, resp *stockdv1.GetAvailabilityResponse) []byte {
	t.Helper()
	b, err := proto.Marshal(resp)
	if err != nil {
		t.Fatalf("marshal %v: %v", resp, err)
	}
	return b
}

func fullAnswer(skus ...string) *stockdv1.GetAvailabilityResponse {
	resp := &stockdv1.GetAvailabilityResponse{Revision: 42}
	for _, s := range skus {
		resp.Skus = append(resp.Skus, &stockdv1.SkuAvailability{
			Sku: s, Item: "item-" + s, AvailableSkuUnits: 7, Known: true, Factor: 1, ModRevision: 9,
			Locations: []*stockdv1.LocationAvailability{
				{Location: "l1", AvailableSkuUnits: 3, OnHandBaseUnits: 5, ReservedBaseUnits: 2},
				{Location: "l2", AvailableSkuUnits: 4, OnHandBaseUnits: 4, BufferBaseUnits: 1},
			},
			Incoming: []*stockdv1.IncomingAvailability{
				{PoLineId: "po-1", Location: "l1", Eta: timestamppb.New(timestamppb.Now().AsTime()), AvailableSkuUnits: 2},
			},
		})
	}
	return resp
}

// A BASIC answer carries no locations, a FULL one carries them on every SKU;
// the reply is checked against the view asked.
func TestAvailabilityReplyChecksTheView(t *testing.T) {
	full := fullAnswer("a", "b")
	basic := fullAnswer("a", "b")
	for _, s := range basic.Skus {
		s.Item, s.Locations, s.Incoming = "", nil, nil
	}
	mixed := fullAnswer("a", "b")
	mixed.Skus[1].Locations = nil
	for _, tc := range []struct {
		name     string
		answer   *stockdv1.GetAvailabilityResponse
		fullView bool
		want     string
	}{
		{"BASIC asked, BASIC answered", basic, false, ""},
		{"FULL asked, FULL answered", full, true, ""},
		{"BASIC asked, FULL answered", full, false, "2 of 2 skus with locations"},
		{"FULL asked, BASIC answered", basic, true, "2 of 2 skus without locations"},
		{"FULL asked, one sku without locations", mixed, true, "1 of 2 skus without locations"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r availabilityReply
			r.reset([]string{"a", "b"}, tc.fullView)
			if err := r.read(marshalAnswer(t, tc.answer)); err != nil {
				t.Fatalf("read: %v", err)
			}
			err := r.check()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("got %v, want no error", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestAvailabilityReplyChecksTheAnswer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		asked  []string
		answer []string
		want   string // substring of check's error; empty for none
	}{
		{"the skus asked in order pass", []string{"a", "b", "c"}, []string{"a", "b", "c"}, ""},
		{"a missing sku fails", []string{"a", "b", "c"}, []string{"a", "b"}, "asked 3 skus, got 2"},
		{"an extra sku fails", []string{"a"}, []string{"a", "b"}, "asked 1 skus, got 2"},
		{"another sku at a position fails", []string{"a", "b"}, []string{"a", "x"}, `skus[1]: asked "b", got "x"`},
		{"an answer without its sku fails", []string{"a"}, []string{""}, `skus[0]: asked "a", got ""`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := availabilityAnswer(t, tc.answer...)
			var r availabilityReply
			r.reset(tc.asked, true)
			// Split the bytes in two buffers: the codec must read across them.
			data := mem.BufferSlice{mem.SliceBuffer(b[:len(b)/2]), mem.SliceBuffer(b[len(b)/2:])}
			if err := (availabilityCodec{}).Unmarshal(data, &r); err != nil {
				t.Fatalf("asked %q, answered %q: unmarshal: %v", tc.asked, tc.answer, err)
			}
			err := r.check()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("asked %q, answered %q: got %v, want no error", tc.asked, tc.answer, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("asked %q, answered %q: got %v, want an error with %q", tc.asked, tc.answer, err, tc.want)
			}
		})
	}
}

func TestAvailabilityReplyRefusesMalformedBytes(t *testing.T) {
	b := availabilityAnswer(t, "a", "b")
	for _, cut := range []int{1, len(b) / 2, len(b) - 1} {
		var r availabilityReply
		r.reset([]string{"a", "b"}, true)
		if err := (availabilityCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(b[:cut])}, &r); err == nil {
			t.Errorf("answer cut at %d of %d bytes: got no error, want one", cut, len(b))
		}
	}
}

func TestAvailabilityCodecMarshalsLikeProto(t *testing.T) {
	req := &stockdv1.GetAvailabilityRequest{Channel: "c", Skus: []string{"a", "b"}}
	data, err := (availabilityCodec{}).Marshal(req)
	if err != nil {
		t.Fatalf("marshal %v: %v", req, err)
	}
	want, err := proto.Marshal(req)
	if err != nil {
		t.Fatalf("proto.Marshal %v: %v", req, err)
	}
	if got := data.Materialize(); string(got) != string(want) {
		t.Errorf("marshal %v: got %x, want %x", req, got, want)
	}
}
