package bench

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stockd/stockd/api/stockdv1"
)

// flakyErp answers SetStock from a script: each call takes the next answer.
type flakyErp struct {
	stockdv1.ErpClient
	answers []func(rows int) (*stockdv1.SetStockResponse, error)
	calls   int
}

func (f *flakyErp) SetStock(_ context.Context, req *stockdv1.SetStockRequest, _ ...grpc.CallOption) (*stockdv1.SetStockResponse, error) {
	a := f.answers[min(f.calls, len(f.answers)-1)]
	f.calls++
	return a(len(req.GetRows()))
}

func unavailable(int) (*stockdv1.SetStockResponse, error) {
	return nil, status.Error(codes.Unavailable, "not the leader")
}

// TestSetStockChunkRetriesAnElection: a chunk refused with UNAVAILABLE is
// sent again, and on the retry rows found stale (applied by an attempt
// whose answer was lost) count as there; without a retry, or on any other
// code, stale rows or an error fail the setup.
func TestSetStockChunkRetriesAnElection(t *testing.T) {
	chunk := catalogRows([]string{"A", "B"}, []string{"l1", "l2"}, 10, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name    string
		answers []func(int) (*stockdv1.SetStockResponse, error)
		calls   int
		wantErr string
	}{
		{"applied at once", []func(int) (*stockdv1.SetStockResponse, error){
			func(n int) (*stockdv1.SetStockResponse, error) {
				return &stockdv1.SetStockResponse{Applied: uint32(n)}, nil
			},
		}, 1, ""},
		{"election, then the lost write found stale", []func(int) (*stockdv1.SetStockResponse, error){
			unavailable, unavailable,
			func(n int) (*stockdv1.SetStockResponse, error) {
				return &stockdv1.SetStockResponse{Applied: 1, IgnoredStale: uint32(n - 1)}, nil
			},
		}, 3, ""},
		{"stale rows on the first try", []func(int) (*stockdv1.SetStockResponse, error){
			func(n int) (*stockdv1.SetStockResponse, error) {
				return &stockdv1.SetStockResponse{IgnoredStale: uint32(n)}, nil
			},
		}, 1, "applied 0 of 4 rows"},
		{"another code is not retried", []func(int) (*stockdv1.SetStockResponse, error){
			func(int) (*stockdv1.SetStockResponse, error) {
				return nil, status.Error(codes.InvalidArgument, "rows[0].item")
			},
		}, 1, "rows[0].item"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &flakyErp{answers: tc.answers}
			_, err := setStockChunk(ctx, f, chunk)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("got %v, want error %q", err, tc.wantErr)
			}
			if f.calls != tc.calls {
				t.Fatalf("got %d calls, want %d", f.calls, tc.calls)
			}
		})
	}
}

// popularity draws rank k with probability (1+k)^-1.1 / H, as rand.Zipf(1.1,
// 1, n-1) does, each rank at its own catalog index.
func TestPopularityIsZipf(t *testing.T) {
	const n, draws = 1000, 400_000
	p := newPopularity(n)
	var h float64
	for k := range n {
		h += math.Pow(float64(k+1), -zipfS)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	count := make([]int, n)
	for range draws {
		count[p.draw(rnd)]++
	}
	for _, k := range []int{0, 1, 2, 10, 100} {
		want := draws * math.Pow(float64(k+1), -zipfS) / h
		got := float64(count[p.index(uint64(k))])
		// 5 standard deviations of a binomial count.
		if tol := 5 * math.Sqrt(want); math.Abs(got-want) > tol {
			t.Errorf("rank %d: drawn %v times of %d, want %.0f ± %.0f", k, got, draws, want, tol)
		}
	}
	seen := map[int]bool{}
	for k := range n {
		seen[p.index(uint64(k))] = true
	}
	if len(seen) != n {
		t.Errorf("ranks map to %d distinct catalog indexes of %d, want a permutation", len(seen), n)
	}
	for _, k := range []int{1, 5, 100, n} {
		got := p.drawDistinct(rnd, k)
		distinct := map[int]bool{}
		for _, i := range got {
			distinct[i] = i >= 0 && i < n
		}
		if len(got) != k || len(distinct) != k {
			t.Errorf("drawDistinct(%d): got %d indexes, %d distinct, want %d", k, len(got), len(distinct), k)
		}
	}
}
