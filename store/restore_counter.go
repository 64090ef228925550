package store

import (
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// A million counters are most of a large snapshot's records, and decoding
// each into a logv1.SnapshotRecord took 40% of a restore (two messages and
// two strings a record). Counter records are decoded here instead, straight
// from their bytes; any record this does not recognise exactly, proto.Unmarshal
// decodes as before.

// counterFields is one decoded CounterRecord; item and location alias the
// record's bytes.
type counterFields struct {
	item, location              []byte
	onHand, reserved, committed int64
	version, modRev             uint64
}

// Field numbers of SnapshotRecord.counter and of CounterRecord (log.proto).
const (
	snapshotRecordCounter = 5
	counterItem           = 1
	counterLocation       = 2
	counterOnHand         = 3
	counterReserved       = 4
	counterCommitted      = 5
	counterVersion        = 6
	counterModRevision    = 7
)

// decodeCounterRecord decodes b if it is a SnapshotRecord holding only a
// CounterRecord of known fields with valid UTF-8 strings, as WriteRecords
// writes them; ok is false for anything else. A field given twice keeps its
// last value, as proto.Unmarshal does.
func decodeCounterRecord(b []byte) (f counterFields, ok bool) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || num != snapshotRecordCounter || typ != protowire.BytesType {
		return f, false
	}
	msg, m := protowire.ConsumeBytes(b[n:])
	if m < 0 || n+m != len(b) {
		return f, false
	}
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return f, false
		}
		msg = msg[n:]
		switch {
		case (num == counterItem || num == counterLocation) && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(msg)
			if n < 0 || !utf8.Valid(v) {
				return f, false
			}
			if num == counterItem {
				f.item = v
			} else {
				f.location = v
			}
			msg = msg[n:]
		case num >= counterOnHand && num <= counterModRevision && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(msg)
			if n < 0 {
				return f, false
			}
			switch num {
			case counterOnHand:
				f.onHand = int64(v)
			case counterReserved:
				f.reserved = int64(v)
			case counterCommitted:
				f.committed = int64(v)
			case counterVersion:
				f.version = v
			case counterModRevision:
				f.modRev = v
			}
			msg = msg[n:]
		default:
			return f, false
		}
	}
	return f, true
}
