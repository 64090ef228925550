package cluster

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// raftLogger adapts a *slog.Logger to the hclog.Logger raft wants. Records
// below min are dropped: raft's info chatter (elections, snapshots taken)
// would drown stockd's own lines, and this package logs what matters itself.
// It is safe for concurrent use.
type raftLogger struct {
	sl   *slog.Logger
	name string
	min  hclog.Level
	args []any
}

func newRaftLogger(sl *slog.Logger, min hclog.Level) *raftLogger {
	return &raftLogger{sl: sl, name: "raft", min: min}
}

func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Info, hclog.NoLevel, hclog.DefaultLevel:
		return slog.LevelInfo
	case hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (l *raftLogger) enabled(level hclog.Level) bool {
	if level == hclog.Off || level < l.min {
		return false
	}
	return l.sl.Enabled(context.Background(), slogLevel(level))
}

func (l *raftLogger) Log(level hclog.Level, msg string, args ...any) {
	level = demote(level, msg, args)
	if !l.enabled(level) {
		return
	}
	l.sl.Log(context.Background(), slogLevel(level), msg, append([]any{"logger", l.name}, args...)...)
}

func (l *raftLogger) Trace(msg string, args ...any) { l.Log(hclog.Trace, msg, args...) }
func (l *raftLogger) Debug(msg string, args ...any) { l.Log(hclog.Debug, msg, args...) }
func (l *raftLogger) Info(msg string, args ...any)  { l.Log(hclog.Info, msg, args...) }
func (l *raftLogger) Warn(msg string, args ...any)  { l.Log(hclog.Warn, msg, args...) }
func (l *raftLogger) Error(msg string, args ...any) { l.Log(hclog.Error, msg, args...) }

func (l *raftLogger) IsTrace() bool { return l.enabled(hclog.Trace) }
func (l *raftLogger) IsDebug() bool { return l.enabled(hclog.Debug) }
func (l *raftLogger) IsInfo() bool  { return l.enabled(hclog.Info) }
func (l *raftLogger) IsWarn() bool  { return l.enabled(hclog.Warn) }
func (l *raftLogger) IsError() bool { return l.enabled(hclog.Error) }

func (l *raftLogger) ImpliedArgs() []any { return l.args }

func (l *raftLogger) With(args ...any) hclog.Logger {
	c := *l
	c.sl = l.sl.With(args...)
	c.args = append(append([]any(nil), l.args...), args...)
	return &c
}

func (l *raftLogger) Name() string { return l.name }

func (l *raftLogger) Named(name string) hclog.Logger {
	if l.name != "" {
		name = l.name + "." + name
	}
	return l.ResetNamed(name)
}

func (l *raftLogger) ResetNamed(name string) hclog.Logger {
	c := *l
	c.name = name
	return &c
}

// SetLevel is ignored: the level is fixed when the node starts, and raft
// never changes it.
func (l *raftLogger) SetLevel(hclog.Level) {}

func (l *raftLogger) GetLevel() hclog.Level { return l.min }

func (l *raftLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	level := hclog.Info
	if opts != nil && opts.ForceLevel != hclog.NoLevel {
		level = opts.ForceLevel
	}
	if !l.enabled(level) {
		return log.New(io.Discard, "", 0)
	}
	return slog.NewLogLogger(l.sl.With("logger", l.name).Handler(), slogLevel(level))
}

func (l *raftLogger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	return l.StandardLogger(opts).Writer()
}

// demote lowers raft's warning about a heartbeat timeout to info when no
// leader was ever known: that is every node's first election after start
// (a single node's every start), not a lost leader.
func demote(level hclog.Level, msg string, args []any) hclog.Level {
	if level != hclog.Warn || msg != "heartbeat timeout reached, starting election" {
		return level
	}
	for i := 0; i+1 < len(args); i += 2 {
		if k, _ := args[i].(string); k == "last-leader-addr" {
			if v := fmt.Sprint(args[i+1]); v != "" {
				return level
			}
		}
	}
	return hclog.Info
}
