package main

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/stockdv1"
)

func TestParseReserveLine(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		want    *stockdv1.ReserveLine
		wantErr string // substring of the error; empty means success
	}{
		{"a line without location lets stockd allocate", "ROSE-CASE12=3",
			&stockdv1.ReserveLine{Sku: "ROSE-CASE12", Quantity: 3}, ""},
		{"a line with location pins it", "SKU-0001=2@ams",
			&stockdv1.ReserveLine{Sku: "SKU-0001", Quantity: 2, Location: "ams"}, ""},
		{"a SKU may contain = and @", "A=B@C=10@fra",
			&stockdv1.ReserveLine{Sku: "A=B@C", Quantity: 10, Location: "fra"}, ""},
		{"no = is refused", "SKU-0001", nil, "want SKU=QTY"},
		{"an empty SKU is refused", "=3", nil, "empty SKU"},
		{"a missing quantity is refused", "SKU-0001=", nil, "missing quantity"},
		{"a missing quantity before a location is refused", "SKU-0001=@ams", nil, "missing quantity"},
		{"a word as quantity is refused", "SKU-0001=two", nil, `quantity "two" is not a whole number`},
		{"a fraction is refused", "SKU-0001=1.5", nil, "not a whole number"},
		{"zero is refused", "SKU-0001=0", nil, "quantity must be > 0"},
		{"a negative quantity is refused", "SKU-0001=-2", nil, "quantity must be > 0"},
		{"an empty location is refused", "SKU-0001=2@", nil, "empty location"},
		{"an overflowing quantity is refused", "SKU-0001=99999999999999999999", nil, "not a whole number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseReserveLine(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseReserveLine(%q): got %v, %v; want error containing %q", tt.spec, got, err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.spec) {
					t.Errorf("parseReserveLine(%q): error %q does not quote the input", tt.spec, err)
				}
				return
			}
			if err != nil || !proto.Equal(got, tt.want) {
				t.Fatalf("parseReserveLine(%q): got %v, %v; want %v", tt.spec, got, err, tt.want)
			}
		})
	}
}
