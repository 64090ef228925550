package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/stockd/stockd/api/client"
	"github.com/stockd/stockd/api/stockdv1"
)

// credentialFlags are how stockbench reaches a cluster that runs with an
// auth file and TLS. A scenario calls Inventory as a seller, Erp as the ERP
// and Admin and Cluster as an admin, so each service gets its own token.
type credentialFlags struct {
	token, erpToken, adminToken string
	tlsCA, tlsCert, tlsKey      string
}

func (f *credentialFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.token, "token", os.Getenv("STOCKBENCH_TOKEN"), "bearer token for Inventory calls: a seller principal of the scenarios' channel (default $STOCKBENCH_TOKEN)")
	fs.StringVar(&f.erpToken, "erp-token", os.Getenv("STOCKBENCH_ERP_TOKEN"), "bearer token for Erp calls (default $STOCKBENCH_ERP_TOKEN)")
	fs.StringVar(&f.adminToken, "admin-token", os.Getenv("STOCKBENCH_ADMIN_TOKEN"), "bearer token for Admin and Cluster calls (default $STOCKBENCH_ADMIN_TOKEN)")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "PEM CA to check the nodes' certificates with; turns TLS on")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM client certificate for nodes that want mTLS (with --tls-key)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
}

// dialOptions are the transport credentials and, when any token is set, an
// interceptor that sends each call's token by its service.
func (f *credentialFlags) dialOptions() ([]grpc.DialOption, error) {
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	var opts []grpc.DialOption
	if f.tlsCA == "" && f.tlsCert == "" {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	} else {
		cfg, err := client.LoadTLS(f.tlsCA, f.tlsCert, f.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca/--tls-cert/--tls-key: %w", err)
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	}
	if f.token == "" && f.erpToken == "" && f.adminToken == "" {
		return opts, nil
	}
	return append(opts,
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, o ...grpc.CallOption) error {
			return invoker(f.withToken(ctx, method), method, req, reply, cc, o...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, o ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(f.withToken(ctx, method), desc, cc, method, o...)
		})), nil
}

// withToken adds the token of method's service to ctx.
func (f *credentialFlags) withToken(ctx context.Context, method string) context.Context {
	tok := f.adminToken
	switch {
	case strings.HasPrefix(method, "/"+stockdv1.Inventory_ServiceDesc.ServiceName+"/"):
		tok = f.token
	case strings.HasPrefix(method, "/"+stockdv1.Erp_ServiceDesc.ServiceName+"/"):
		tok = f.erpToken
	}
	if tok == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}
