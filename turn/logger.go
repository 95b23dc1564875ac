package turn

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pion/logging"
)

// levelTrace is below slog's Debug, for pion's per-packet trace lines.
const levelTrace = slog.LevelDebug - 4

// pionLogsPerSecond bounds pion's log lines at Warn and above: most of
// them report what one remote client did (a TLS connection dropped, a
// write to a vanished client), and clients must not be able to flood the
// operator's logs.
const pionLogsPerSecond = 20

// slogFactory hands pion a logger that writes to slog.
type slogFactory struct {
	log   *slog.Logger
	limit *logLimiter
}

func newSlogFactory(log *slog.Logger) slogFactory {
	return slogFactory{log: log, limit: &logLimiter{
		bucket: newTokenBucket(pionLogsPerSecond, 5*pionLogsPerSecond, time.Now()),
	}}
}

func (f slogFactory) NewLogger(scope string) logging.LeveledLogger {
	return slogLogger{log: f.log.With("pion", scope), limit: f.limit}
}

// logLimiter drops lines over the rate and reports how many it dropped
// on the next line it lets through.
type logLimiter struct {
	bucket *tokenBucket // one token per line

	mu         sync.Mutex
	suppressed int
}

// allow returns whether to log now and how many lines were dropped since
// the last one logged.
func (l *logLimiter) allow() (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.bucket.take(1, time.Now()) {
		l.suppressed++
		return false, 0
	}
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}

// slogLogger maps pion's levels onto slog. pion logs at Info for events a
// remote client provokes at will (a refused permission, a datagram from a
// peer without permission), so Info becomes Debug.
type slogLogger struct {
	log   *slog.Logger
	limit *logLimiter
}

func (l slogLogger) logf(level slog.Level, format string, args ...any) {
	// Format only when someone listens: pion calls Debugf per datagram.
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	var attrs []any
	if level >= slog.LevelWarn && l.limit != nil {
		ok, suppressed := l.limit.allow()
		if !ok {
			return
		}
		if suppressed > 0 {
			attrs = append(attrs, "suppressed_before", suppressed)
		}
	}
	l.log.Log(context.Background(), level, fmt.Sprintf(format, args...), attrs...)
}

func (l slogLogger) Trace(msg string)                  { l.logf(levelTrace, "%s", msg) }
func (l slogLogger) Tracef(format string, args ...any) { l.logf(levelTrace, format, args...) }
func (l slogLogger) Debug(msg string)                  { l.logf(slog.LevelDebug, "%s", msg) }
func (l slogLogger) Debugf(format string, args ...any) { l.logf(slog.LevelDebug, format, args...) }
func (l slogLogger) Info(msg string)                   { l.logf(slog.LevelDebug, "%s", msg) }
func (l slogLogger) Infof(format string, args ...any)  { l.logf(slog.LevelDebug, format, args...) }
func (l slogLogger) Warn(msg string)                   { l.logf(slog.LevelWarn, "%s", msg) }
func (l slogLogger) Warnf(format string, args ...any)  { l.logf(slog.LevelWarn, format, args...) }
func (l slogLogger) Error(msg string)                  { l.logf(slog.LevelError, "%s", msg) }
func (l slogLogger) Errorf(format string, args ...any) { l.logf(slog.LevelError, format, args...) }
