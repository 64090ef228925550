package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"go.uber.org/goleak"
)

// Hygiene checkers (issue 8): no node panicked or died of a fatal runtime
// error (found in its log, every run of its process included), and the test
// process leaked no goroutine or file descriptor. The nodes' own goroutines
// and descriptors are not visible from here: a node leaking them while it
// runs shows only as growth in its own metrics, and is not checked.

// crashMarkers are what the Go runtime writes to stderr when a process
// panics or dies of a fatal error (a concurrent map write, out of memory).
var crashMarkers = []string{"panic:", "fatal error:"}

// checkNodeLogs reports every line of the node logs that shows a panic or
// a fatal runtime error.
func checkNodeLogs(paths []string) []string {
	var v []string
	for _, p := range paths {
		lines, err := grepFile(p, crashMarkers...)
		if err != nil && !os.IsNotExist(err) {
			v = append(v, fmt.Sprintf("hygiene: read node log %s: %v", p, err))
		}
		for i, l := range lines {
			if i == 5 {
				v = append(v, fmt.Sprintf("hygiene: %s: %d more such lines", filepath.Base(p), len(lines)-5))
				break
			}
			v = append(v, fmt.Sprintf("hygiene: %s: %s", filepath.Base(p), strings.TrimSpace(l)))
		}
	}
	return v
}

// nodeLogs lists the log files of c's nodes.
func (c *Cluster) nodeLogs() []string {
	var out []string
	for _, nd := range c.Nodes {
		out = append(out, nd.logPath)
	}
	return out
}

// fdTable maps each open descriptor of this process to what it refers to.
type fdTable map[int]string

// openFDs reads /proc/self/fd (Linux).
func openFDs() (fdTable, error) {
	dir := "/proc/self/fd"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	t := fdTable{}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // the descriptor ReadDir itself used, closed since
		}
		t[fd] = target
	}
	return t, nil
}

// checkFDs reports the descriptors open in after that were not open (to the
// same thing) in before.
func checkFDs(before, after fdTable) []string {
	var leaked []int
	for fd, target := range after {
		if before[fd] != target {
			leaked = append(leaked, fd)
		}
	}
	sort.Ints(leaked)
	var v []string
	for _, fd := range leaked {
		v = append(v, fmt.Sprintf("hygiene: file descriptor %d (%s) left open", fd, after[fd]))
	}
	return v
}

// checkGoroutines reports goroutines running now that were not running when
// opts (goleak.IgnoreCurrent) were taken; goleak retries for a while first,
// so goroutines that are on their way out are not reported.
func checkGoroutines(opts ...goleak.Option) []string {
	if err := goleak.Find(opts...); err != nil {
		return []string{"hygiene: leaked goroutines: " + err.Error()}
	}
	return nil
}
