package rtc

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// slogFactory routes pion's logs into a slog.Logger, all at debug level:
// what pion reports as warnings and errors (a data channel closed while
// connecting, a packet for a closed association) are routine on shutdown
// and are not errors of the caller's.
type slogFactory struct{ l *slog.Logger }

func (f slogFactory) NewLogger(scope string) logging.LeveledLogger {
	return slogLogger{l: f.l.With("pion", scope)}
}

type slogLogger struct{ l *slog.Logger }

func (s slogLogger) log(level string, msg string) {
	if s.l.Enabled(context.Background(), slog.LevelDebug) {
		s.l.Debug(msg, "pion_level", level)
	}
}

func (s slogLogger) logf(level, format string, args ...any) {
	if s.l.Enabled(context.Background(), slog.LevelDebug) {
		s.l.Debug(fmt.Sprintf(format, args...), "pion_level", level)
	}
}

func (s slogLogger) Trace(msg string)                  {}
func (s slogLogger) Tracef(format string, args ...any) {}
func (s slogLogger) Debug(msg string)                  { s.log("debug", msg) }
func (s slogLogger) Debugf(format string, args ...any) { s.logf("debug", format, args...) }
func (s slogLogger) Info(msg string)                   { s.log("info", msg) }
func (s slogLogger) Infof(format string, args ...any)  { s.logf("info", format, args...) }
func (s slogLogger) Warn(msg string)                   { s.log("warn", msg) }
func (s slogLogger) Warnf(format string, args ...any)  { s.logf("warn", format, args...) }
func (s slogLogger) Error(msg string)                  { s.log("error", msg) }
func (s slogLogger) Errorf(format string, args ...any) { s.logf("error", format, args...) }

// LoggerFactory returns a pion LoggerFactory that routes pion's logs into l
// at debug level; nil l discards them.
func LoggerFactory(l *slog.Logger) logging.LoggerFactory {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return slogFactory{l: l}
}
