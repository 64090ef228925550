package store

import (
	"testing"
	"unsafe"
)

// TestSnapshotRecordSizes: the sizes Snapshot.Footprint counts with are the
// records' real sizes.
func TestSnapshotRecordSizes(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"counter", unsafe.Sizeof(counter{}), counterBytes},
		{"bufferRule", unsafe.Sizeof(bufferRule{}), bufferRuleBytes},
		{"snapItem", unsafe.Sizeof(snapItem{}), snapItemBytes},
		{"reservation", unsafe.Sizeof(reservation{}), reservationBytes},
		{"refusal", unsafe.Sizeof(refusal{}), refusalBytes},
		{"order", unsafe.Sizeof(order{}), orderBytes},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d bytes, Footprint counts %d", c.name, c.got, c.want)
		}
	}
}
