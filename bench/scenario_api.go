package bench

// Helpers the marketplace, erp-storm, backfill and watch scenarios share on
// top of setup.go's: locations of their own (so each scenario's counters can
// be exported apart), versions above any earlier run's, a connection of the
// scenario's own, and a walk over the counters at one location.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stockd/stockd/api/stockdv1"
)

// scenarioLocations names a scenario's own n locations: "<scenario>-l1"…
// (at least one).
func scenarioLocations(scenario string, n int) []string {
	locs := make([]string, max(n, 1))
	for i := range locs {
		locs[i] = scenario + "-l" + strconv.Itoa(i+1)
	}
	return locs
}

// scenarioVersionBase returns an ERP version above any an earlier run
// against the same cluster sent: the wall clock in ns. A run adds at most a
// few million to it, far less than the nanoseconds between two runs.
func scenarioVersionBase() uint64 { return uint64(time.Now().UnixNano()) }

// scenarioDialOwn opens a connection of its own to the node conn talks to:
// an ERP adapter's stream does not share HTTP/2 flow control with the
// storefront's reads. The caller closes it.
func scenarioDialOwn(env *Env, conn *grpc.ClientConn) (*grpc.ClientConn, error) {
	opts := env.DialOptions
	if opts == nil {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	c, err := grpc.NewClient(conn.Target(), opts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", conn.Target(), err)
	}
	return c, nil
}

// scenarioExport streams every counter at location through Erp.ExportStock,
// linearizable (it reflects every write acknowledged before the call), and
// calls f on each in item order.
func scenarioExport(ctx context.Context, conn *grpc.ClientConn, location string, f func(*stockdv1.StockCounter)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := stockdv1.NewErpClient(conn).ExportStock(ctx, &stockdv1.ExportStockRequest{Location: location, Linearizable: true})
	if err != nil {
		return fmt.Errorf("export stock at %s: %w", location, err)
	}
	for {
		msg, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("export stock at %s: %w", location, err)
		}
		for _, c := range msg.GetCounters() {
			f(c)
		}
	}
}
