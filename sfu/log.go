package sfu

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/pion/logging"
)

// pionLoggerFactory hands pion's components loggers that write to slog, so
// that one handler and one level govern every line the server prints.
type pionLoggerFactory struct{ log *slog.Logger }

func newPionLoggerFactory(log *slog.Logger) logging.LoggerFactory {
	return pionLoggerFactory{log: log}
}

func (f pionLoggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: f.log.With("pion", scope)}
}

type pionLogger struct{ log *slog.Logger }

// pion's debug and trace output is per packet in places; it stays below
// slog's debug level so that -log-level debug remains readable.
const levelTrace = slog.LevelDebug - 4

func (l pionLogger) logf(level slog.Level, format string, args ...any) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	msg := fmt.Sprintf(format, args...)
	// Sockets closed on purpose at shutdown make pion's readers report an
	// error; it is the expected end, not a fault.
	if level > slog.LevelDebug && strings.Contains(msg, net.ErrClosed.Error()) {
		level = slog.LevelDebug
	}
	l.log.Log(context.Background(), level, msg)
}

func (l pionLogger) Trace(msg string)                  { l.logf(levelTrace, "%s", msg) }
func (l pionLogger) Tracef(format string, args ...any) { l.logf(levelTrace, format, args...) }
func (l pionLogger) Debug(msg string)                  { l.logf(levelTrace, "%s", msg) }
func (l pionLogger) Debugf(format string, args ...any) { l.logf(levelTrace, format, args...) }
func (l pionLogger) Info(msg string)                   { l.logf(slog.LevelDebug, "%s", msg) }
func (l pionLogger) Infof(format string, args ...any)  { l.logf(slog.LevelDebug, format, args...) }
func (l pionLogger) Warn(msg string)                   { l.logf(slog.LevelWarn, "%s", msg) }
func (l pionLogger) Warnf(format string, args ...any)  { l.logf(slog.LevelWarn, format, args...) }
func (l pionLogger) Error(msg string)                  { l.logf(slog.LevelError, "%s", msg) }
func (l pionLogger) Errorf(format string, args ...any) { l.logf(slog.LevelError, format, args...) }
