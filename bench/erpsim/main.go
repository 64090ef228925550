// Command erpsim plays the ERP against a live stockd, over its public gRPC
// API only: it keeps its own book of sellable on_hand per item and location
// with a version per counter, follows the order outbox (Erp.PullOrders with
// follow), books each order after a random delay and so out of order,
// refuses some, fulfils some lines from another location than the one stockd
// allocated, processes cancellations, and sends the counts it changed
// (SetStock, new versions) before the absorbed mark that covers them. It
// also sends receipts and damages (AdjustStock with delta ids and versions)
// and replays stale and reordered messages (an old count, an adjustment
// with its delta id, two counts in swapped order), checking every answer
// against its book.
//
// It runs for --duration (or until SIGINT/SIGTERM), then drains: it decides
// everything outstanding, sends the final counts and mark, waits until
// stockd's outbox has nothing pending and the mark covers the last entry,
// checks every counter against stockd, writes its book (--book-out) and
// exits 0, or 1 if any answer contradicted the book (or an oversell was
// found: a booking short at a counter stockd had no reason to think fuller),
// 2 on a usage error.
//
// The selling load is not its business: run channels against the node at the
// same time (cmd/stockd's TestERPSimLongRun does) and stop them before the
// drain.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func main() {
	ctx := context.Background()
	err := run(ctx, os.Args[1:], os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "erpsim:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "erpsim:", err)
		os.Exit(1)
	}
}

// errUsage marks a bad command line.
var errUsage = errors.New("usage")

// config is the command line.
type config struct {
	addr              string
	seed              uint64
	duration          time.Duration
	drainTimeout      time.Duration
	seedCatalog       bool
	items             int
	itemPrefix        string
	locations         []string
	channel           string
	minStock          int64
	maxStock          int64
	refuseRate        float64
	otherLocationRate float64
	maxDelay          time.Duration
	tick              time.Duration
	receiptRate       float64
	receiptMax        int64
	damageRate        float64
	replayRate        float64
	swapRate          float64
	sellRate          float64
	bookOut           string
	logLevel          string
}

// itemIDs lists the simulated items: the prefix and a 4-digit number.
func (c config) itemIDs() []string {
	out := make([]string, c.items)
	for i := range out {
		out[i] = fmt.Sprintf("%s%04d", c.itemPrefix, i)
	}
	return out
}

func parse(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("erpsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:7400", "stockd gRPC address")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of every random choice (delays, refusals, moves, adjustments, replays)")
	fs.DurationVar(&c.duration, "duration", 30*time.Second, "how long to run before draining (SIGINT or SIGTERM drains at once)")
	fs.DurationVar(&c.drainTimeout, "drain-timeout", time.Minute, "longest drain: deciding what is outstanding until stockd's outbox is empty and its mark covers the last entry")
	fs.BoolVar(&c.seedCatalog, "seed-catalog", false, "declare --locations and --channel and send seeded counts; without it, adopt the on_hand stockd shows")
	fs.IntVar(&c.items, "items", 50, "number of items, named PREFIX0000 on")
	fs.StringVar(&c.itemPrefix, "item-prefix", "SIM-", "item id prefix")
	locations := fs.String("locations", "ams,fra,lyon", "comma-separated locations: every item is counted at each")
	fs.StringVar(&c.channel, "channel", "erpsim", "channel that sees every location (declared with --seed-catalog; used to read figures)")
	fs.Int64Var(&c.minStock, "min-stock", 5, "smallest seeded on_hand")
	fs.Int64Var(&c.maxStock, "max-stock", 60, "largest seeded on_hand")
	fs.Float64Var(&c.refuseRate, "refuse-rate", 0.01, "share of orders refused at random")
	fs.Float64Var(&c.otherLocationRate, "other-location-rate", 0.05, "share of order lines fulfilled from another location than stockd allocated")
	fs.DurationVar(&c.maxDelay, "max-delay", 400*time.Millisecond, "longest random delay before an entry is decided")
	fs.DurationVar(&c.tick, "tick", 20*time.Millisecond, "how often due entries are decided and counts sent")
	fs.Float64Var(&c.receiptRate, "receipt-rate", 20, "receipts per second (to the emptiest of a few random counters)")
	fs.Int64Var(&c.receiptMax, "receipt-max", 30, "largest receipt in base units")
	fs.Float64Var(&c.damageRate, "damage-rate", 1, "damages per second (1-3 units, never more than stockd shows free)")
	fs.Float64Var(&c.replayRate, "replay-rate", 5, "replays per second of each kind: an old count, an adjustment's delta id, an ack")
	fs.Float64Var(&c.swapRate, "swap-rate", 0.05, "share of count changes sent as two counts in swapped order")
	fs.Float64Var(&c.sellRate, "sell-rate", 0, "carts per second reserved (and mostly confirmed) on --channel while the run lasts, for a demo without another client; 0: none")
	fs.StringVar(&c.bookOut, "book-out", "", "write the book (counters and totals) as JSON to this file at the end")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	for l := range strings.SplitSeq(*locations, ",") {
		if l = strings.TrimSpace(l); l != "" {
			c.locations = append(c.locations, l)
		}
	}
	switch {
	case len(c.locations) == 0:
		return c, fmt.Errorf("%w: --locations: at least one", errUsage)
	case c.items < 1:
		return c, fmt.Errorf("%w: --items: at least 1", errUsage)
	case c.minStock < 0 || c.maxStock < c.minStock:
		return c, fmt.Errorf("%w: --min-stock and --max-stock: 0 <= min <= max", errUsage)
	case c.tick <= 0 || c.maxDelay < 0 || c.duration < 0 || c.drainTimeout <= 0:
		return c, fmt.Errorf("%w: --tick and --drain-timeout must be > 0, --max-delay and --duration >= 0", errUsage)
	case c.receiptMax < 1:
		return c, fmt.Errorf("%w: --receipt-max: at least 1", errUsage)
	}
	for _, r := range []float64{c.refuseRate, c.otherLocationRate, c.swapRate} {
		if r < 0 || r > 1 {
			return c, fmt.Errorf("%w: rates must be within [0, 1]", errUsage)
		}
	}
	return c, nil
}

// run is the command: set up, loop until the duration or a signal, drain,
// check, write the book. It fails if any answer contradicted the book.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, err := parse(args, stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		return fmt.Errorf("%w: --log-level: %v", errUsage, err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	conn, err := grpc.NewClient(cfg.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()

	s := newSim(cfg, conn, log, time.Now())
	// rpcCtx lives until the end; runCtx ends the loop (then the drain).
	rpcCtx, cancelRPC := context.WithCancel(ctx)
	defer cancelRPC()
	if err := s.setUp(rpcCtx); err != nil {
		return err
	}
	followCtx, stopFollow := context.WithCancel(rpcCtx)
	followed := make(chan struct{})
	floor := s.book.floor
	go func() {
		defer close(followed)
		s.follow(followCtx, floor)
	}()
	defer func() { stopFollow(); <-followed }()

	sigCtx, stopSignals := signal.NotifyContext(rpcCtx, syscall.SIGINT, syscall.SIGTERM)
	// The seller (--sell-rate) stops first; the loop drains once it has.
	sellCtx, stopSelling := context.WithTimeout(sigCtx, cfg.duration)
	defer stopSelling()
	runCtx, cancelRun := context.WithCancel(rpcCtx)
	defer cancelRun()
	go func() {
		s.sell(sellCtx, cfg.sellRate, cfg.seed)
		cancelRun()
	}()
	log.Info("following orders", "addr", cfg.addr, "seed", cfg.seed, "duration", cfg.duration)
	err = s.loop(runCtx, rpcCtx)
	stopSignals() // a second signal ends the process
	if err == nil {
		err = s.finalCheck(rpcCtx)
	}
	out := s.book.Out(cfg.seed)
	if cfg.bookOut != "" {
		if werr := WriteFile(cfg.bookOut, out); werr != nil && err == nil {
			err = fmt.Errorf("--book-out: %w", werr)
		}
	}
	tt := out.Totals
	log.Info("done", "entries", tt.EntriesSeen, "booked", tt.OrdersBooked, "refused", tt.OrdersRefused,
		"refused_short", tt.RefusedShort, "cancellations", tt.CancellationsDone, "moved_lines", tt.LinesMoved,
		"out_of_order", tt.OutOfOrderOutcomes, "net_booked_units", tt.NetBookedUnits, "receipts", tt.Receipts,
		"damages", tt.Damages, "stale_replays", tt.StaleCountReplays, "swapped", tt.SwappedCounts,
		"adjust_replays", tt.AdjustReplays, "ack_replays", tt.AckReplays, "shortages_explained", tt.ShortagesExplained,
		"final_mark", tt.FinalMark, "surprises", tt.Surprises, "contradictions", tt.Contradictions)
	if err != nil {
		return err
	}
	if tt.Contradictions > 0 {
		return fmt.Errorf("%d answers contradicted the book (see the log)", tt.Contradictions)
	}
	return nil
}
