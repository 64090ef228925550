package main

import (
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
)

func TestStatusDetail(t *testing.T) {
	tests := []struct {
		name    string
		code    codes.Code
		details []protoadapt.MessageV1
		want    string
	}{
		{"no detail adds nothing", codes.Aborted, nil, ""},
		{"a lost compare-and-reserve shows the current figure", codes.Aborted, []protoadapt.MessageV1{&errdetails.ErrorInfo{
			Reason: "REVISION_CHANGED", Metadata: map[string]string{"field": "lines[0]", "mod_revision": "42", "available_sku_units": "3"},
		}}, " (current mod_revision 42, available 3 SKU units)"},
		{"a figure with only the revision", codes.Aborted, []protoadapt.MessageV1{&errdetails.ErrorInfo{
			Metadata: map[string]string{"mod_revision": "42"},
		}}, " (current mod_revision 42)"},
		{"a figure with only the units", codes.Aborted, []protoadapt.MessageV1{&errdetails.ErrorInfo{
			Metadata: map[string]string{"available_sku_units": "0"},
		}}, " (available 0 SKU units)"},
		{"an ErrorInfo of another kind adds nothing", codes.Aborted, []protoadapt.MessageV1{&errdetails.ErrorInfo{
			Reason: "OTHER", Metadata: map[string]string{"field": "x"},
		}}, ""},
		{"a short line shows what it asked and could have", codes.FailedPrecondition, []protoadapt.MessageV1{&errdetails.PreconditionFailure{
			Violations: []*errdetails.PreconditionFailure_Violation{{Type: "STOCK", Subject: "lines[1]",
				Description: "requested 36 base units, available 30 base units"}},
		}}, " (requested 36 base units, available 30 base units)"},
		{"a BadRequest adds nothing (the message names the field)", codes.InvalidArgument, []protoadapt.MessageV1{&errdetails.BadRequest{
			FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "lines[0].quantity", Description: "must be > 0"}},
		}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := status.New(tt.code, "message")
			if len(tt.details) > 0 {
				var err error
				if st, err = st.WithDetails(tt.details...); err != nil {
					t.Fatalf("WithDetails(%v): %v", tt.details, err)
				}
			}
			if got := statusDetail(st); got != tt.want {
				t.Errorf("statusDetail(%v): got %q; want %q", tt.details, got, tt.want)
			}
		})
	}
}
