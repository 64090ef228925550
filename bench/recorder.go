package bench

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Latencies are kept in microseconds from 1 µs to 60 s with 3 significant
// digits (0.1% error); a longer one is counted as 60 s.
const (
	histMinMicros = 1
	histMaxMicros = 60_000_000
	histDigits    = 3
)

func newHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(histMinMicros, histMaxMicros, histDigits)
}

func recordMicros(h *hdrhistogram.Histogram, d time.Duration) {
	us := d.Microseconds()
	us = max(us, histMinMicros)
	us = min(us, histMaxMicros)
	_ = h.RecordValue(us) // in range by construction: it cannot fail
}

// Recording is the Recorder the driver hands to scenarios: per operation, an
// HDR histogram of the whole measured phase and one of the current interval
// (rolled into a Point by Roll), a count and errors by gRPC status code.
// Every call, errors included, counts in the latency histograms. It is safe
// for concurrent use; operations do not contend with each other.
type Recording struct {
	mu    sync.RWMutex // guards ops (the map, not the opRecs)
	ops   map[string]*opRec
	start time.Time
	gen   int // Resets so far
}

// opRec is one operation's figures.
type opRec struct {
	mu       sync.Mutex
	all      *hdrhistogram.Histogram
	interval *hdrhistogram.Histogram
	errs     map[codes.Code]int64
	ivErrs   int64
	series   []Point
}

// NewRecording returns an empty Recording whose clock starts now.
func NewRecording() *Recording {
	return &Recording{ops: map[string]*opRec{}, start: time.Now()}
}

// Record implements Recorder.
func (r *Recording) Record(op string, d time.Duration, err error) {
	r.mu.RLock()
	o := r.ops[op]
	r.mu.RUnlock()
	if o == nil {
		r.mu.Lock()
		if o = r.ops[op]; o == nil {
			o = &opRec{all: newHist(), interval: newHist(), errs: map[codes.Code]int64{}}
			r.ops[op] = o
		}
		r.mu.Unlock()
	}
	o.mu.Lock()
	recordMicros(o.all, d)
	recordMicros(o.interval, d)
	if err != nil {
		o.errs[errCode(err)]++
		o.ivErrs++
	}
	o.mu.Unlock()
}

// errCode is err's gRPC status code; a bare context error gets its own.
func errCode(err error) codes.Code {
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	}
	return codes.Unknown
}

// Reset forgets everything recorded so far and restarts the clock (the end
// of a warm-up).
func (r *Recording) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = map[string]*opRec{}
	r.start = time.Now()
	r.gen++
}

// Point is one interval of a time series: what completed in the interval
// that ended At seconds after the measured phase began.
type Point struct {
	At        float64 `json:"at_s"`
	Count     int64   `json:"count"`
	Errors    int64   `json:"errors"`
	OpsPerSec float64 `json:"ops_per_s"`
	P50Ms     float64 `json:"p50_ms"`
	P90Ms     float64 `json:"p90_ms"`
	P99Ms     float64 `json:"p99_ms"`
	MaxMs     float64 `json:"max_ms"`
}

func pointOf(h *hdrhistogram.Histogram, errs int64, at, span time.Duration) Point {
	p := Point{At: at.Seconds(), Count: h.TotalCount(), Errors: errs}
	if span > 0 {
		p.OpsPerSec = float64(p.Count) / span.Seconds()
	}
	if p.Count > 0 {
		p.P50Ms = ms(h.ValueAtQuantile(50))
		p.P90Ms = ms(h.ValueAtQuantile(90))
		p.P99Ms = ms(h.ValueAtQuantile(99))
		p.MaxMs = ms(h.Max())
	}
	return p
}

func ms(micros int64) float64 { return float64(micros) / 1000 }

// Roll closes the current interval at now, which lasted span: each
// operation's interval histogram becomes a Point of its series and starts
// afresh. It returns the Point of all operations together, and how many
// times Reset was called before (a series restarts after a Reset).
func (r *Recording) Roll(now time.Time, span time.Duration) (Point, int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	at := now.Sub(r.start)
	total := newHist()
	var errs int64
	for _, o := range r.ops {
		o.mu.Lock()
		o.series = append(o.series, pointOf(o.interval, o.ivErrs, at, span))
		total.Merge(o.interval)
		errs += o.ivErrs
		o.interval.Reset()
		o.ivErrs = 0
		o.mu.Unlock()
	}
	return pointOf(total, errs, at, span), r.gen
}

// OpResult is one operation's row of the final table.
type OpResult struct {
	Op        string  `json:"op"`
	Count     int64   `json:"count"`
	Errors    int64   `json:"errors"`
	OpsPerSec float64 `json:"ops_per_s"`
	// OKPerSec counts only calls that succeeded.
	OKPerSec float64 `json:"ok_per_s"`
	MeanMs   float64 `json:"mean_ms"`
	P50Ms    float64 `json:"p50_ms"`
	P90Ms    float64 `json:"p90_ms"`
	P99Ms    float64 `json:"p99_ms"`
	P999Ms   float64 `json:"p99_9_ms"`
	MaxMs    float64 `json:"max_ms"`
	// ErrorsByCode maps a gRPC code name ("FAILED_PRECONDITION") to a count.
	ErrorsByCode map[string]int64 `json:"errors_by_code,omitempty"`
	Series       []Point          `json:"series,omitempty"`
}

// Results returns every operation's figures over elapsed (the measured
// phase), sorted by operation name, and the figures of all of them together
// (Op "total", without a series).
func (r *Recording) Results(elapsed time.Duration) ([]OpResult, OpResult) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	all := newHist()
	total := OpResult{Op: "total"}
	var out []OpResult
	for name, o := range r.ops {
		o.mu.Lock()
		res := summarize(name, o.all, o.errs, elapsed)
		res.Series = slices.Clone(o.series)
		all.Merge(o.all)
		o.mu.Unlock()
		total.Errors += res.Errors
		out = append(out, res)
	}
	slices.SortFunc(out, func(a, b OpResult) int { return cmp.Compare(a.Op, b.Op) })
	t := summarize("total", all, nil, elapsed)
	t.Errors = total.Errors
	if elapsed > 0 {
		t.OKPerSec = float64(t.Count-t.Errors) / elapsed.Seconds()
	}
	return out, t
}

func summarize(name string, h *hdrhistogram.Histogram, errs map[codes.Code]int64, elapsed time.Duration) OpResult {
	res := OpResult{Op: name, Count: h.TotalCount()}
	for c, n := range errs {
		if res.ErrorsByCode == nil {
			res.ErrorsByCode = map[string]int64{}
		}
		res.ErrorsByCode[codeName(c)] += n
		res.Errors += n
	}
	if elapsed > 0 {
		res.OpsPerSec = float64(res.Count) / elapsed.Seconds()
		res.OKPerSec = float64(res.Count-res.Errors) / elapsed.Seconds()
	}
	if res.Count > 0 {
		res.MeanMs = h.Mean() / 1000
		res.P50Ms = ms(h.ValueAtQuantile(50))
		res.P90Ms = ms(h.ValueAtQuantile(90))
		res.P99Ms = ms(h.ValueAtQuantile(99))
		res.P999Ms = ms(h.ValueAtQuantile(99.9))
		res.MaxMs = ms(h.Max())
	}
	return res
}

// codeName spells a code as the gRPC spec does: FAILED_PRECONDITION.
func codeName(c codes.Code) string {
	s := c.String()
	var b []byte
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch >= 'A' && ch <= 'Z' && i > 0 && s[i-1] >= 'a' && s[i-1] <= 'z' {
			b = append(b, '_')
		}
		if ch >= 'a' && ch <= 'z' {
			ch -= 'a' - 'A'
		}
		b = append(b, ch)
	}
	return string(b)
}
