package main

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/stockd/stockd/api/stockdv1"
)

func TestParseStockCount(t *testing.T) {
	const def = 1_700_000_000_000_000_000
	tests := []struct {
		name    string
		spec    string
		want    *stockdv1.StockCount
		wantErr string
	}{
		{"a count without version gets the default", "ROSE@ams=40",
			&stockdv1.StockCount{Item: "ROSE", Location: "ams", OnHandBaseUnits: 40, Version: def}, ""},
		{"a count with version keeps it", "ROSE@ams=40:7",
			&stockdv1.StockCount{Item: "ROSE", Location: "ams", OnHandBaseUnits: 40, Version: 7}, ""},
		{"a negative count is accepted", "ROSE@ams=-3:8",
			&stockdv1.StockCount{Item: "ROSE", Location: "ams", OnHandBaseUnits: -3, Version: 8}, ""},
		{"zero is a count", "ROSE@ams=0",
			&stockdv1.StockCount{Item: "ROSE", Location: "ams", OnHandBaseUnits: 0, Version: def}, ""},
		{"an item may contain @", "a@b@fra=1:2",
			&stockdv1.StockCount{Item: "a@b", Location: "fra", OnHandBaseUnits: 1, Version: 2}, ""},
		{"no = is refused", "ROSE@ams", nil, "want ITEM@LOCATION=ON_HAND"},
		{"no location is refused", "ROSE=4", nil, "want ITEM@LOCATION"},
		{"an empty item is refused", "@ams=4", nil, "empty item"},
		{"an empty location is refused", "ROSE@=4", nil, "empty location"},
		{"a missing count is refused", "ROSE@ams=", nil, "missing on-hand count"},
		{"a missing count before a version is refused", "ROSE@ams=:4", nil, "missing on-hand count"},
		{"a word as count is refused", "ROSE@ams=lots", nil, `on-hand count "lots" is not a whole number`},
		{"trailing letters after a count are refused", "ROSE@ams=4x", nil, "not a whole number"},
		{"version zero is refused", "ROSE@ams=4:0", nil, "version must be > 0"},
		{"an empty version is refused", "ROSE@ams=4:", nil, `version "" is not a whole number`},
		{"a negative version is refused", "ROSE@ams=4:-1", nil, "not a whole number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStockCount(tt.spec, def)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseStockCount(%q): got %v, %v; want error containing %q", tt.spec, got, err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.spec) {
					t.Errorf("parseStockCount(%q): error %q does not quote the input", tt.spec, err)
				}
				return
			}
			if err != nil || !proto.Equal(got, tt.want) {
				t.Fatalf("parseStockCount(%q): got %v, %v; want %v", tt.spec, got, err, tt.want)
			}
		})
	}
}

func TestParseStockAdjustment(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		want    *stockdv1.StockAdjustment
		wantErr string
	}{
		{"a positive delta", "ROSE@ams=+5",
			&stockdv1.StockAdjustment{Item: "ROSE", Location: "ams", DeltaBaseUnits: 5}, ""},
		{"a negative delta", "ROSE@lyon=-2",
			&stockdv1.StockAdjustment{Item: "ROSE", Location: "lyon", DeltaBaseUnits: -2}, ""},
		{"a delta with the version it produces", "ROSE@ams=-2:99",
			&stockdv1.StockAdjustment{Item: "ROSE", Location: "ams", DeltaBaseUnits: -2, Version: 99}, ""},
		{"an unsigned delta is refused", "ROSE@ams=5", nil, "needs a sign"},
		{"a zero delta is refused", "ROSE@ams=+0", nil, "delta must be non-zero"},
		{"a missing delta is refused", "ROSE@ams=", nil, "missing delta"},
		{"a bare sign is refused", "ROSE@ams=-", nil, `delta "-" is not a whole number`},
		{"no location is refused", "ROSE=+1", nil, "want ITEM@LOCATION"},
		{"no = is refused", "ROSE@ams", nil, "want ITEM@LOCATION=+DELTA"},
		{"version zero is refused", "ROSE@ams=+1:0", nil, "version must be > 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStockAdjustment(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseStockAdjustment(%q): got %v, %v; want error containing %q", tt.spec, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !proto.Equal(got, tt.want) {
				t.Fatalf("parseStockAdjustment(%q): got %v, %v; want %v", tt.spec, got, err, tt.want)
			}
		})
	}
}
