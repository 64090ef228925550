package cluster

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

// startWatchdog stops the test binary at nine tenths of go test's -timeout,
// printing the goroutines that run this package's code last, so the tail of
// a CI log (all that is kept) names the test that hung and where. go test's
// own timeout prints the running tests first and thousands of lines of grpc
// and raft goroutines after them. It needs the flags parsed.
func startWatchdog() {
	timeout, _ := flag.Lookup("test.timeout").Value.(flag.Getter).Get().(time.Duration)
	if timeout <= 0 {
		return
	}
	budget := timeout - timeout/10
	time.AfterFunc(budget, func() {
		buf := make([]byte, 64<<20)
		buf = buf[:runtime.Stack(buf, true)]
		// The node's goroutines first, then the tests' own, nearest the end.
		var ours, tests []string
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			switch {
			case strings.Contains(g, "startWatchdog"):
			case strings.Contains(g, "stockd/stockd/cluster.Test"):
				tests = append(tests, g)
			case strings.Contains(g, "stockd/stockd/cluster."):
				ours = append(ours, g)
			}
		}
		ours = append(ours, tests...)
		fmt.Fprintf(os.Stderr, "\n%s\n\nwatchdog: cluster tests still running after %v; above, the %d goroutines in package cluster's code\n",
			strings.Join(ours, "\n\n"), budget, len(ours))
		os.Exit(2)
	})
}
