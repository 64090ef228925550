package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stockd/stockd/cluster"
	"github.com/stockd/stockd/server"
)

// httpConfig is what the HTTP port serves.
type httpConfig struct {
	// Gatherer is what /metrics exposes.
	Gatherer prometheus.Gatherer
	// Ready is asked on every /readyz: nil means ready, an error says why not.
	Ready func() error
	// Logger receives errors of the metrics handler.
	Logger *slog.Logger
}

// newHTTPMux returns the HTTP port's routes: /metrics (Prometheus text),
// /healthz (200 while the process serves HTTP at all) and /readyz (200 when
// cfg.Ready says so, else 503 with the reason in plain text). Callers add
// their own routes to it (a grpc-gateway handler under "/v1/") before
// serving it.
func newHTTPMux(cfg httpConfig) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := cfg.Ready(); err != nil {
			writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
			return
		}
		writeText(w, http.StatusOK, "ready")
	})
	return mux
}

// readiness is /readyz's check: the server has finished its start-up
// catch-up (it answers reads), and the node is ready (cluster.Node.Readiness:
// log replayed, a leader known and heard from within maxContact, applied
// index within maxLag of the commit index).
func readiness(srv *server.Server, node *cluster.Node, maxLag uint64, maxContact time.Duration) func() error {
	return func() error {
		if !srv.CaughtUp() {
			return errors.New("catching up with the cluster after the start")
		}
		return node.Readiness(maxLag, maxContact)
	}
}

func writeText(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg+"\n") // the client left: nothing to do
}

// serveHTTP serves h on addr (over TLS when tlsCfg is set) until stop is called; stop waits up to its
// context for requests in flight, then closes what is left. It returns the
// bound address (port 0 picks a free one).
func serveHTTP(addr string, h http.Handler, tlsCfg *tls.Config, logger *slog.Logger) (bound string, stop func(context.Context), err error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("http listen: %w", err)
	}
	bound = lis.Addr().String()
	if tlsCfg != nil {
		lis = tls.NewListener(lis, tlsCfg)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("http server", "err", err)
		}
	}()
	stop = func(ctx context.Context) {
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close() // past the deadline: drop what is left
		}
		<-done
	}
	return bound, stop, nil
}
