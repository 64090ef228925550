package store

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	"github.com/stockd/stockd/api/logv1"
)

// TestDecodeCounterRecordAgreesWithProto: the restore's own decoder of
// counter records takes every record WriteRecords writes, and whatever it
// takes, it reads as proto.Unmarshal does; anything else (unknown fields,
// wrong wire types, bad UTF-8, other kinds, trailing bytes) it leaves to
// proto.Unmarshal.
func TestDecodeCounterRecordAgreesWithProto(t *testing.T) {
	same := func(t *rapid.T, f counterFields, c *logv1.CounterRecord) {
		if string(f.item) != c.GetItem() || string(f.location) != c.GetLocation() || f.onHand != c.GetOnHandBaseUnits() ||
			f.reserved != c.GetReservedBaseUnits() || f.committed != c.GetCommittedBaseUnits() ||
			f.version != c.GetVersion() || f.modRev != c.GetModRevision() {
			t.Fatalf("decoded %+v, proto.Unmarshal %v", f, c)
		}
	}
	t.Run("what WriteRecords writes", rapid.MakeCheck(func(t *rapid.T) {
		c := &logv1.CounterRecord{Item: rapid.String().Draw(t, "item"), Location: rapid.String().Draw(t, "location"),
			OnHandBaseUnits: rapid.Int64().Draw(t, "on_hand"), ReservedBaseUnits: rapid.Int64().Draw(t, "reserved"),
			CommittedBaseUnits: rapid.Int64().Draw(t, "committed"), Version: rapid.Uint64().Draw(t, "version"),
			ModRevision: rapid.Uint64().Draw(t, "mod_revision")}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&logv1.SnapshotRecord{Kind: &logv1.SnapshotRecord_Counter{Counter: c}})
		if err != nil {
			t.Fatal(err)
		}
		f, ok := decodeCounterRecord(b)
		if !ok {
			t.Fatalf("record %x of %v: not decoded", b, c)
		}
		same(t, f, c)
	}))
	t.Run("any bytes", rapid.MakeCheck(func(t *rapid.T) {
		// Mostly a counter record's own fields (strings of any bytes, so
		// often not UTF-8), sometimes fields of other numbers or wire types
		// or junk, in any order, repeated or not; mostly wrapped as
		// SnapshotRecord.counter, sometimes as another kind or with bytes after.
		var inner []byte
		for range rapid.IntRange(0, 10).Draw(t, "fields") {
			num := protowire.Number(rapid.IntRange(1, 7).Draw(t, "number"))
			typ := protowire.VarintType
			if num <= counterLocation {
				typ = protowire.BytesType
			}
			if rapid.IntRange(0, 3).Draw(t, "odd") == 0 {
				num = protowire.Number(rapid.IntRange(1, 9).Draw(t, "odd number"))
				typ = []protowire.Type{protowire.VarintType, protowire.BytesType, protowire.Fixed64Type, protowire.Fixed32Type}[rapid.IntRange(0, 3).Draw(t, "odd type")]
			}
			inner = protowire.AppendTag(inner, num, typ)
			switch typ {
			case protowire.VarintType:
				inner = protowire.AppendVarint(inner, rapid.Uint64().Draw(t, "varint"))
			case protowire.BytesType:
				inner = protowire.AppendBytes(inner, rapid.SliceOfN(rapid.Byte(), 0, 4).Draw(t, "bytes"))
			case protowire.Fixed64Type:
				inner = protowire.AppendFixed64(inner, rapid.Uint64().Draw(t, "fixed64"))
			default:
				inner = append(inner, rapid.SliceOfN(rapid.Byte(), 0, 3).Draw(t, "junk")...)
			}
		}
		b := inner
		if rapid.IntRange(0, 7).Draw(t, "wrapped") > 0 {
			kind := protowire.Number(snapshotRecordCounter)
			if rapid.IntRange(0, 5).Draw(t, "other kind") == 0 {
				kind = protowire.Number(rapid.IntRange(1, 17).Draw(t, "kind"))
			}
			b = protowire.AppendBytes(protowire.AppendTag(nil, kind, protowire.BytesType), inner)
			if rapid.IntRange(0, 5).Draw(t, "trailing") == 0 {
				b = append(b, rapid.SliceOfN(rapid.Byte(), 1, 4).Draw(t, "trailer")...)
			}
		}
		f, ok := decodeCounterRecord(b)
		if !ok {
			return // proto.Unmarshal decides
		}
		var rec logv1.SnapshotRecord
		if err := proto.Unmarshal(b, &rec); err != nil || rec.GetCounter() == nil {
			t.Fatalf("record %x: decoded %+v, proto.Unmarshal %v (%v)", b, f, &rec, err)
		}
		same(t, f, rec.GetCounter())
	}))
}
