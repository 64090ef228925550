// Command stockctl is the command-line client of stockd: it reads
// availability, holds, extends, releases and lists stock holds for a channel,
// shows confirmed orders, sends ERP counts, adjustments and incoming supply,
// pulls and acknowledges the order outbox, lists rejected ERP rows, exports
// the counters as CSV and reconciles them with the ERP's book, changes
// configuration (locations, channels, location groups, SKU mappings,
// buffers), manages cluster membership, saves snapshots, and loads a demo
// catalog.
//
// Global flags come before or after the subcommand; subcommand flags may be
// mixed with its arguments. Exit status: 0 on success, 1 when the server (or
// the connection) refused, 2 on a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/stockd/stockd/api/stockdv1"
)

const (
	defaultAddr    = "127.0.0.1:7400"
	defaultTimeout = 5 * time.Second
)

const mainUsage = `usage: stockctl [--addr HOST:PORT] [--json] [--timeout D] COMMAND [flags] [args]

channel commands:
  avail        --channel C [--min-revision N] [--linearizable] SKU...
  reserve      --channel C --id ID [--ttl 15m] [--expect SKU=MOD_REVISION]... [--backorder]
               SKU=QTY[@LOCATION]...
  confirm      --channel C --id ID --order REF
  release      --channel C --id ID [--release-id R LINE=QTY...]
  extend       --channel C --id ID --ttl D [--extend-id X]
  cancel-order --channel C --id ID
  reservation  --channel C --id ID [--min-revision N] [--linearizable]
  reservations --channel C [--state held|confirmed|released|expired|cancelled]
               [--expiring-within D] [--limit N] [--page-token T] [--all]
               [--min-revision N] [--linearizable]
  release-all  --channel C [--id ID]
  order        --channel C --ref REF [--min-revision N] [--linearizable]
               a confirmed order: its lines, the ERP's outcome, cancelled, absorbed
  watch        --channel C [--from-revision N] [--prefix P] [--limit N] [SKU...]
               print availability events live (the state first, unless
               resuming) until interrupted; the mark to resume from goes to stderr

ERP commands:
  stock set     [--mark N] ITEM@LOCATION=ON_HAND[:VERSION]...
  stock adjust  [--id DELTA_ID] [--reason R] ITEM@LOCATION=+DELTA|-DELTA[:VERSION]...
  incoming set  PO_LINE=ITEM@LOCATION:QTY[/RECEIVED][,eta=TIME][,version=N]...
                (TIME: RFC 3339 or YYYY-MM-DD, midnight UTC)
  incoming list [--item I]
  orders pull   [--after N] [--follow] [--limit N]
                the outbox entries (confirmed orders, cancellations) with
                sequence > N and no outcome yet; --follow keeps printing new
                ones until interrupted or --limit entries
  orders ack    SEQ=booked|refused[:REASON]|done...
  orders status the backlog: pending entries, the oldest and its age, the
                next sequence, the absorbed mark
  rejected      [--limit N]   the most recent rejected ERP rows (default 100,
                at most 10000) and the count of rejections by reason
  import        [--generation ID] [--prune] [--mark N] [--chunk 10000] FILE.csv
                a full count (item,location,on_hand[,version] per line; a
                header line is skipped; no version: now in Unix ns) streamed
                through Backfill and applied at once; --prune zeroes every
                counter the file does not name; exit 1 if a row was rejected
  export        [--item I] [--location L] [--all-columns] [--min-revision N]
                [--linearizable] [FILE.csv]
                the counters as import's CSV (item,location,on_hand,version),
                sorted, all at one revision (printed to stderr), to FILE.csv
                or stdout; --all-columns adds reserved,committed
  reconcile     [--item I] [--location L] [--min-revision N] [--linearizable] FILE.csv
                compare the ERP's book (import's CSV) with stockd: every
                counter whose on_hand differs (both figures and versions),
                counters only in the file or only in stockd, and a summary;
                exit 1 if any counter drifts

admin commands:
  location add    ID [--name NAME]
  location list
  location delete ID
  channel put     ID (--locations L1,L2,... | --group G) [--buffer N] [--require-sku-mapping]
  channel list
  channel delete  ID
  group put       ID --locations L1,L2,...
  group list
  group delete    ID
  sku put         SKU --item I [--factor 1]
  sku list        [--item I]
  sku delete      SKU
  buffer set      --item I [--channel C] [--location L] N
  buffer list     [--item I]
  buffer delete   --item I [--channel C] [--location L]

cluster commands:
  cluster status   members, roles, lag and state digests (exit 1 if digests
                   differ at one applied index)
  cluster join     --node-id ID --raft-addr HOST:PORT --grpc-addr HOST:PORT [--feature-version 1]
  cluster leave    --node-id ID
  snapshot save    FILE   stream a snapshot of the node's state into FILE (atomic)

auth:
  auth hash    [TOKEN]         print the token_sha256 of TOKEN (read from stdin if absent) for --auth-file
  auth new                     print a new random token and its token_sha256

other:
  demo         [--skus 1000]   load a demo catalog into a running node
  help         show this text

global flags:
  --addr HOST:PORT  server address (default 127.0.0.1:7400)
  --json            print each response as protojson, one object per line
  --timeout D       deadline of each call (default 5s; 0 means none); snapshot
                    save, orders pull, watch, import, export and reconcile are streams and
                    are not bounded by it
  --token T         bearer token to act as (default $STOCKD_TOKEN; prefer the variable:
                    a flag shows in ps)
  --tls-ca FILE     check the server's certificate against this PEM CA; turns TLS on
  --tls-cert FILE, --tls-key FILE
                    client certificate for a server that wants mTLS

Run 'stockctl COMMAND -h' for the flags of one command.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	exit := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exit)
}

// run executes one stockctl invocation and returns its exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	s := &session{
		opts:   options{addr: defaultAddr, timeout: defaultTimeout, token: os.Getenv("STOCKD_TOKEN")},
		stdout: stdout,
		stderr: stderr,
	}
	defer s.close()

	fs := flag.NewFlagSet("stockctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, mainUsage) }
	s.opts.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprint(stderr, mainUsage)
		return 2
	}
	return s.report(s.dispatch(ctx, fs.Arg(0), fs.Args()[1:]))
}

// options are the global flags. Every subcommand's flag set registers them
// too, so they may also follow the subcommand.
type options struct {
	addr    string
	json    bool
	timeout time.Duration
	// token is sent as "authorization: Bearer <token>"; tlsCA, tlsCert and
	// tlsKey turn on TLS (and mTLS) to the server.
	token                  string
	tlsCA, tlsCert, tlsKey string
}

// register binds the global flags to o, keeping the values o already holds
// as defaults so that a later flag set does not reset an earlier one.
func (o *options) register(fs *flag.FlagSet) {
	fs.StringVar(&o.addr, "addr", o.addr, "server address `HOST:PORT`")
	fs.BoolVar(&o.json, "json", o.json, "print each response as protojson, one object per line")
	fs.DurationVar(&o.timeout, "timeout", o.timeout, "deadline of each call (0: none)")
	fs.StringVar(&o.token, "token", o.token, "bearer token of the principal to act as (default $STOCKD_TOKEN)")
	fs.StringVar(&o.tlsCA, "tls-ca", o.tlsCA, "PEM CA bundle to check the server's certificate with; turns TLS on")
	fs.StringVar(&o.tlsCert, "tls-cert", o.tlsCert, "PEM client certificate for a server that wants mTLS (with --tls-key)")
	fs.StringVar(&o.tlsKey, "tls-key", o.tlsKey, "PEM private key of --tls-cert")
}

// session is one invocation: its options, its output and its connection,
// dialled on first use.
type session struct {
	opts   options
	stdout io.Writer
	stderr io.Writer
	conn   *grpc.ClientConn
}

func (s *session) dispatch(ctx context.Context, name string, args []string) error {
	switch name {
	case "avail":
		return s.avail(ctx, args)
	case "watch":
		return s.watch(ctx, args) // watch.go
	case "reserve":
		return s.reserve(ctx, args)
	case "confirm":
		return s.confirm(ctx, args)
	case "release":
		return s.release(ctx, args)
	case "reservation":
		return s.reservation(ctx, args)
	case "extend":
		return s.extend(ctx, args)
	case "cancel-order":
		return s.cancelOrder(ctx, args)
	case "reservations":
		return s.reservations(ctx, args)
	case "release-all":
		return s.releaseAll(ctx, args)
	case "stock":
		return s.dispatchVerb(ctx, name, args, map[string]func(context.Context, []string) error{
			"set":    s.stockSet,
			"adjust": s.stockAdjust,
		})
	case "incoming":
		return s.dispatchVerb(ctx, name, args, map[string]func(context.Context, []string) error{
			"set":  s.incomingSet,
			"list": s.incomingList,
		})
	case "orders":
		return s.dispatchVerb(ctx, name, args, map[string]func(context.Context, []string) error{
			"pull":   s.ordersPull,
			"ack":    s.ordersAck,
			"status": s.ordersStatus,
		})
	case "order":
		return s.order(ctx, args)
	case "rejected":
		return s.rejected(ctx, args)
	case "import":
		return s.importCSV(ctx, args) // import.go
	case "export":
		return s.exportCSV(ctx, args) // export.go
	case "reconcile":
		return s.reconcile(ctx, args) // reconcile.go
	case "location":
		return s.dispatchVerb(ctx, name, args, map[string]func(context.Context, []string) error{
			"add":    s.locationAdd,
			"list":   s.locationList,
			"delete": s.locationDelete,
		})
	case "channel":
		return s.dispatchVerb(ctx, name, args, map[string]func(context.Context, []string) error{
			"put":    s.channelPut,
			"list":   s.channelList,
			"delete": s.channelDelete,
		})
	case "group":
		return s.dispatchVerb(ctx, name, args, map[string]func(context.Context, []string) error{
			"put":    s.groupPut,
			"list":   s.groupList,
			"delete": s.groupDelete,
		})
	case "sku":
		return s.dispatchVerb(ctx, name, args, map[string]func(context.Context, []string) error{
			"put":    s.skuPut,
			"list":   s.skuList,
			"delete": s.skuDelete,
		})
	case "buffer":
		return s.dispatchVerb(ctx, name, args, map[string]func(context.Context, []string) error{
			"set":    s.bufferSet,
			"list":   s.bufferList,
			"delete": s.bufferDelete,
		})
	case "cluster":
		return s.dispatchVerb(ctx, name, args, map[string]func(context.Context, []string) error{
			"status": s.clusterStatus,
			"join":   s.clusterJoin,
			"leave":  s.clusterLeave,
		})
	case "snapshot":
		return s.dispatchVerb(ctx, name, args, map[string]func(context.Context, []string) error{
			"save": s.snapshotSave,
		})
	case "demo":
		return s.demo(ctx, args)
	case "auth":
		return s.dispatchVerb(ctx, name, args, map[string]func(context.Context, []string) error{
			"hash": s.authHash,
			"new":  s.authNew,
		})
	case "help":
		fmt.Fprint(s.stdout, mainUsage)
		return nil
	}
	return &usageError{msg: fmt.Sprintf("unknown command %q (run 'stockctl help')", name)}
}

func (s *session) dispatchVerb(ctx context.Context, noun string, args []string, verbs map[string]func(context.Context, []string) error) error {
	names := make([]string, 0, len(verbs))
	for v := range verbs {
		names = append(names, v)
	}
	slices.Sort(names)
	if len(args) == 0 {
		return &usageError{msg: fmt.Sprintf("%s: missing subcommand (one of: %s)", noun, strings.Join(names, ", "))}
	}
	f, ok := verbs[args[0]]
	if !ok {
		return &usageError{msg: fmt.Sprintf("%s: unknown subcommand %q (one of: %s)", noun, args[0], strings.Join(names, ", "))}
	}
	return f(ctx, args[1:])
}

// dial connects on first use. grpc.NewClient does not touch the network, so
// a down server shows up as UNAVAILABLE on the first call.
func (s *session) dial() (*grpc.ClientConn, error) {
	if s.conn != nil {
		return s.conn, nil
	}
	opts, err := s.opts.dialOptions()
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(s.opts.addr, append(opts,
		grpc.WithUnaryInterceptor(timeoutInterceptor(s.opts.timeout)))...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", s.opts.addr, err)
	}
	s.conn = conn
	return conn, nil
}

func (s *session) close() {
	if s.conn != nil {
		// Nothing useful can be done about a failed close of a client
		// connection at exit; the calls' own errors were already reported.
		if err := s.conn.Close(); err != nil {
			fmt.Fprintf(s.stderr, "stockctl: close connection: %v\n", err)
		}
	}
}

func (s *session) inventory() (stockdv1.InventoryClient, error) {
	conn, err := s.dial()
	if err != nil {
		return nil, err
	}
	return stockdv1.NewInventoryClient(conn), nil
}

func (s *session) erp() (stockdv1.ErpClient, error) {
	conn, err := s.dial()
	if err != nil {
		return nil, err
	}
	return stockdv1.NewErpClient(conn), nil
}

func (s *session) admin() (stockdv1.AdminClient, error) {
	conn, err := s.dial()
	if err != nil {
		return nil, err
	}
	return stockdv1.NewAdminClient(conn), nil
}

func (s *session) cluster() (stockdv1.ClusterClient, error) {
	conn, err := s.dial()
	if err != nil {
		return nil, err
	}
	return stockdv1.NewClusterClient(conn), nil
}

// timeoutInterceptor gives every unary call its own deadline, so a command
// that makes many calls (demo) is not bounded as a whole.
func timeoutInterceptor(d time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if d > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// usageError is a mistake in the command line: exit status 2.
type usageError struct {
	msg string
	// synopsis, when set, is printed after the message.
	synopsis string
	// printed is set when the flag package already told the user.
	printed bool
}

func (e *usageError) Error() string { return e.msg }

// stepError names the step of a multi-call command that failed.
type stepError struct {
	step string
	err  error
}

func (e *stepError) Error() string { return e.step + ": " + e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

// exitError is a failure already explained on stdout (a rejected ERP row):
// exit status 1 with a one-line summary.
type exitError struct{ msg string }

func (e *exitError) Error() string { return e.msg }

// report prints err and turns it into an exit status: gRPC errors as
// "stockctl: CODE: message", usage errors with exit status 2.
func (s *session) report(err error) int {
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ue *usageError
	if errors.As(err, &ue) {
		if !ue.printed {
			fmt.Fprintf(s.stderr, "stockctl: %s\n", ue.msg)
			if ue.synopsis != "" {
				fmt.Fprintf(s.stderr, "usage: %s\n", ue.synopsis)
			}
		}
		return 2
	}
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		st := se.GRPCStatus()
		msg := st.Message()
		var step *stepError
		if errors.As(err, &step) {
			msg = step.step + ": " + msg
		}
		fmt.Fprintf(s.stderr, "stockctl: %s: %s%s\n", codeName(st), msg, statusDetail(st))
		return 1
	}
	fmt.Fprintf(s.stderr, "stockctl: %v\n", err)
	return 1
}

// statusDetail is what the status's details add to its message: the
// current figure of a lost compare-and-reserve (ABORTED), what a short line
// asked and could have (FAILED_PRECONDITION); empty when none is attached.
func statusDetail(st *status.Status) string {
	var parts []string
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			md := d.GetMetadata()
			rev, hasRev := md["mod_revision"]
			avail, hasAvail := md["available_sku_units"]
			switch {
			case hasRev && hasAvail:
				parts = append(parts, fmt.Sprintf("current mod_revision %s, available %s SKU units", rev, avail))
			case hasRev:
				parts = append(parts, "current mod_revision "+rev)
			case hasAvail:
				parts = append(parts, fmt.Sprintf("available %s SKU units", avail))
			}
		case *errdetails.PreconditionFailure:
			for _, v := range d.GetViolations() {
				if v.GetDescription() != "" {
					parts = append(parts, v.GetDescription())
				}
			}
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, "; ") + ")"
}

// codeName spells a status code as the gRPC specification does
// (FAILED_PRECONDITION), the way the design and the server's docs name them.
func codeName(st *status.Status) string {
	return code.Code(st.Code()).String()
}
