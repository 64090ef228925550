package client_test

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/stockd/stockd/api/client"
	"github.com/stockd/stockd/api/stockdv1"
)

// node stands in for a stockd node that has no leader for its first
// Reserve and answers the second.
type node struct {
	stockdv1.UnimplementedInventoryServer
	calls atomic.Int64
}

func (n *node) Reserve(_ context.Context, req *stockdv1.ReserveRequest) (*stockdv1.ReserveResponse, error) {
	if n.calls.Add(1) == 1 {
		return nil, status.Error(codes.Unavailable, "no leader")
	}
	return &stockdv1.ReserveResponse{
		Reservation: &stockdv1.Reservation{ReservationId: req.GetReservationId()},
		Revision:    42,
	}, nil
}

func Example() {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := grpc.NewServer()
	n := &node{}
	stockdv1.RegisterInventoryServer(srv, n)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	defer func() {
		srv.Stop()
		if err := <-served; err != nil {
			fmt.Println(err)
		}
	}()

	ctx := context.Background()
	c, err := client.New(ctx, client.Config{
		Addrs:         []string{lis.Addr().String()}, // list every node of the cluster
		Token:         "secret",
		InsecureToken: true, // plaintext to a local node; use TransportCredentials otherwise
		Timeout:       5 * time.Second,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() {
		if err := c.Close(); err != nil {
			fmt.Println(err)
		}
	}()

	// The reservation id makes the call safe to resend: the client retries
	// UNAVAILABLE with the same request, and a retry of a hold that was made
	// answers the first answer.
	resp, err := c.Inventory().Reserve(ctx, &stockdv1.ReserveRequest{
		Channel:       "web",
		ReservationId: "cart-7",
		Lines:         []*stockdv1.ReserveLine{{Sku: "ROSE", Quantity: 3}},
		Ttl:           durationpb.New(10 * time.Minute),
	})
	switch client.Classify(err) {
	case client.Final:
		if err != nil {
			fmt.Println("refused:", status.Code(err)) // e.g. FailedPrecondition: not enough stock
			return
		}
	case client.NewRequest:
		fmt.Println("re-read the figure and decide again with a new id:", status.Code(err))
		return
	case client.RetrySameID:
		fmt.Println("still unknown after every attempt; retry later with the same id:", status.Code(err))
		return
	}
	fmt.Printf("held %s at revision %d after %d attempts\n", resp.GetReservation().GetReservationId(), resp.GetRevision(), n.calls.Load())
	// Output: held cart-7 at revision 42 after 2 attempts
}
