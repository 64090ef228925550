package main

import (
	"context"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/stockd/stockd/api/stockdv1"
)

// TestTokensGoByService: a scenario's Inventory calls carry the seller
// token, Erp calls the ERP's, Admin and Cluster calls the admin's.
func TestTokensGoByService(t *testing.T) {
	f := &credentialFlags{token: "seller", erpToken: "erp", adminToken: "admin"}
	for method, want := range map[string]string{
		stockdv1.Inventory_Reserve_FullMethodName:       "Bearer seller",
		stockdv1.Erp_SetStock_FullMethodName:            "Bearer erp",
		stockdv1.Admin_PutChannel_FullMethodName:        "Bearer admin",
		stockdv1.Cluster_Status_FullMethodName:          "Bearer admin",
		stockdv1.Inventory_ReserveStream_FullMethodName: "Bearer seller",
	} {
		md, _ := metadata.FromOutgoingContext(f.withToken(context.Background(), method))
		if got := md.Get("authorization"); len(got) != 1 || got[0] != want {
			t.Errorf("%s: authorization %v, want [%s]", method, got, want)
		}
	}
	if _, err := (&credentialFlags{tlsCert: "c.pem"}).dialOptions(); err == nil {
		t.Errorf("--tls-cert without --tls-key: no error, want one")
	}
}
