package chaos

import (
	"net"
	"sync"
	"time"
)

// linkMode is what a proxy does with the bytes of its link.
type linkMode int

const (
	// linkUp forwards bytes both ways.
	linkUp linkMode = iota
	// linkRefuse closes every connection and every new one at once (a
	// dead host that answers with resets).
	linkRefuse
	// linkDrop keeps connections open but throws their bytes away (a
	// black hole: the sender only learns from its own timeouts). Connections
	// that lost bytes are closed when the link heals: their streams are broken.
	linkDrop
)

func (m linkMode) String() string {
	switch m {
	case linkUp:
		return "up"
	case linkRefuse:
		return "refuse"
	case linkDrop:
		return "drop"
	}
	return "?"
}

// proxy is one directed link: it listens on 127.0.0.1 (an OS-picked port)
// and forwards each accepted connection to target, subject to its mode and
// delay. Its methods are safe for concurrent use; Close stops every
// goroutine it started.
type proxy struct {
	name   string
	lis    net.Listener
	target string

	mu     sync.Mutex
	mode   linkMode
	delay  time.Duration
	rate   int64 // bytes per second per direction of each connection; 0: unlimited
	pipes  map[*pipe]struct{}
	closed bool
	wg     sync.WaitGroup
}

// pipe is one proxied connection pair.
type pipe struct {
	client, server net.Conn
	lostBytes      bool // guarded by proxy.mu
	closeOnce      sync.Once
}

func (p *pipe) close() {
	p.closeOnce.Do(func() {
		_ = p.client.Close()
		_ = p.server.Close()
	})
}

// newProxy listens for the link name towards target and starts accepting.
func newProxy(name, target string) (*proxy, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{name: name, lis: lis, target: target, pipes: make(map[*pipe]struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// addr is the address nodes dial instead of target.
func (p *proxy) addr() string { return p.lis.Addr().String() }

// set changes the link's mode and delay and lifts any rate limit. Refuse
// closes every connection; returning to up closes the connections that lost
// bytes while dropping.
func (p *proxy) set(mode linkMode, delay time.Duration) {
	p.setRate(mode, delay, 0)
}

// setRate is set with a bandwidth limit: each direction of each connection
// forwards at most rate bytes per second (0: unlimited).
func (p *proxy) setRate(mode linkMode, delay time.Duration, rate int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode, p.delay, p.rate = mode, delay, rate
	for pp := range p.pipes {
		if mode == linkRefuse || (mode == linkUp && pp.lostBytes) {
			pp.close()
			delete(p.pipes, pp)
		}
	}
}

func (p *proxy) state() (linkMode, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode, p.delay
}

// rateChunk is the most a rate-limited link forwards at once, so a limit
// paces a stream rather than letting one large read through in a burst.
const rateChunk = 4 << 10

// accept runs until the listener closes.
func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		if mode, _ := p.state(); mode == linkRefuse {
			_ = c.Close()
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// serve dials the target for one accepted connection and copies both ways.
func (p *proxy) serve(c net.Conn) {
	defer p.wg.Done()
	s, err := net.DialTimeout("tcp", p.target, time.Second)
	if err != nil {
		_ = c.Close()
		return
	}
	pp := &pipe{client: c, server: s}
	p.mu.Lock()
	if p.closed || p.mode == linkRefuse {
		p.mu.Unlock()
		pp.close()
		return
	}
	p.pipes[pp] = struct{}{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	wg.Go(func() { p.copy(pp, pp.server, pp.client) })
	wg.Go(func() { p.copy(pp, pp.client, pp.server) })
	wg.Wait()
	p.mu.Lock()
	delete(p.pipes, pp)
	p.mu.Unlock()
}

// copy moves bytes from src to dst until either side fails, then closes
// both, so the other direction ends too.
func (p *proxy) copy(pp *pipe, dst, src net.Conn) {
	defer pp.close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for off := 0; off < n; {
			p.mu.Lock()
			mode, delay, rate := p.mode, p.delay, p.rate
			if mode == linkDrop {
				pp.lostBytes = true
			}
			p.mu.Unlock()
			end := n
			if rate > 0 {
				end = min(n, off+rateChunk)
			}
			switch mode {
			case linkRefuse:
				return
			case linkDrop:
				off = n
				continue
			}
			// A link's latency and bandwidth: part of the fault, not
			// synchronisation.
			if pause := delay + time.Duration(int64(end-off)*int64(time.Second)/max(rate, 1)); rate > 0 {
				time.Sleep(pause)
			} else if delay > 0 {
				time.Sleep(delay)
			}
			if _, werr := dst.Write(buf[off:end]); werr != nil {
				return
			}
			off = end
		}
		if err != nil {
			return // EOF or a reset: the pipe is done either way
		}
	}
}

// Close stops accepting, closes every connection and waits for the
// proxy's goroutines to end.
func (p *proxy) Close() {
	_ = p.lis.Close()
	p.mu.Lock()
	p.closed = true
	for pp := range p.pipes {
		pp.close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
