package sdk

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// The wire format of plugin logs: one JSON object per line on the plugin's stderr, with
// "@level", "@message" and "@timestamp" (hclog's JSON format, which go-plugin also
// understands) and the record's attributes as further keys.
const logTimeFormat = "2006-01-02T15:04:05.000000Z07:00"

// loggerPair is a plugin process's logger: slog on top of the JSON line format.
type loggerPair struct {
	slog *slog.Logger
}

func newPluginLogger(w io.Writer) *loggerPair {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				return slog.String("@timestamp", a.Value.Time().Format(logTimeFormat))
			case slog.LevelKey:
				return slog.String("@level", strings.ToLower(a.Value.String()))
			case slog.MessageKey:
				return slog.String("@message", a.Value.String())
			}
			return a
		},
	})
	return &loggerPair{slog: slog.New(h)}
}

// LogForwarder turns a plugin's stderr into the daemon's structured log records: JSON
// lines keep their level and attributes, other lines (a panic, a stray print) are logged
// as text. Malformed lines never fail; each line is capped at 64 KiB.
type LogForwarder struct {
	logger *slog.Logger
	mu     sync.Mutex
	buf    bytes.Buffer
	panic  bool
}

// NewLogForwarder returns a forwarder that logs through logger (which should carry the
// plugin's name as an attribute).
func NewLogForwarder(logger *slog.Logger) *LogForwarder {
	return &LogForwarder{logger: logger}
}

const maxLogLine = 64 << 10

// Write accepts any chunking of the stream.
func (f *LogForwarder) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		room := maxLogLine - f.buf.Len()
		i := bytes.IndexByte(p, '\n')
		if i < 0 || i > room { // no end of line within the cap
			if len(p) > room {
				f.buf.Write(p[:room])
				f.flushLine()
				p = p[room:]
				continue
			}
			f.buf.Write(p)
			break
		}
		f.buf.Write(p[:i])
		f.flushLine()
		p = p[i+1:]
	}
	return n, nil
}

// Flush logs a pending partial line.
func (f *LogForwarder) Flush() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.buf.Len() > 0 {
		f.flushLine()
	}
}

func (f *LogForwarder) flushLine() {
	line := bytes.TrimRight(f.buf.Bytes(), "\r")
	defer f.buf.Reset()
	if len(bytes.TrimSpace(line)) == 0 {
		return
	}
	if line[0] == '{' {
		if rec, ok := parseLogLine(line); ok {
			// Handle does not filter by level: the daemon's level applies to plugins too.
			if f.logger.Enabled(context.Background(), rec.Level) {
				_ = f.logger.Handler().Handle(context.Background(), rec)
			}
			return
		}
	}
	text := string(line)
	level := slog.LevelInfo
	if strings.HasPrefix(text, "panic: ") || strings.HasPrefix(text, "fatal error: ") {
		f.panic = true
	}
	if f.panic {
		level = slog.LevelError
	}
	f.logger.Log(context.Background(), level, text, "stream", "stderr")
}

// parseLogLine reads one JSON log line; ok is false when it is not one.
func parseLogLine(line []byte) (slog.Record, bool) {
	var raw map[string]any
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return slog.Record{}, false
	}
	msg, _ := raw["@message"].(string)
	lvl, _ := raw["@level"].(string)
	ts := time.Now()
	if s, ok := raw["@timestamp"].(string); ok {
		if t, err := time.Parse(logTimeFormat, s); err == nil {
			ts = t
		}
	}
	delete(raw, "@message")
	delete(raw, "@level")
	delete(raw, "@timestamp")
	rec := slog.NewRecord(ts, levelFromString(lvl), msg, 0)
	for k, v := range raw {
		rec.AddAttrs(slog.Any(k, v))
	}
	return rec, true
}

func levelFromString(s string) slog.Level {
	switch strings.ToLower(s) {
	case "trace", "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error", "fatal":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// LineWriter logs each line written to it (a plugin's synced stdout) at info level.
func LineWriter(logger *slog.Logger, stream string) io.Writer {
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 4096), maxLogLine)
		for sc.Scan() {
			logger.Info(sc.Text(), "stream", stream)
		}
		_ = pr.CloseWithError(sc.Err())
	}()
	return pw
}

// hclogAdapter lets go-plugin log through slog. Its Named loggers other than "stdio"
// are off: go-plugin names the plugin-stderr logger after the binary, and that stream
// is parsed by LogForwarder instead (go-plugin's own parser panics on some input).
type hclogAdapter struct {
	l     *slog.Logger
	name  string
	off   bool
	args  []any
	level hclog.Level
}

// NewHCLogAdapter returns an hclog.Logger that writes to l. Used by the host for
// go-plugin's own messages.
func NewHCLogAdapter(l *slog.Logger, name string) hclog.Logger {
	return newHCLogAdapter(&loggerPair{slog: l}, name)
}

func newHCLogAdapter(l *loggerPair, name string) *hclogAdapter {
	return &hclogAdapter{l: l.slog, name: name, level: hclog.Debug}
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if a.off || level < a.level {
		return
	}
	var sl slog.Level
	switch level {
	case hclog.Trace, hclog.Debug:
		sl = slog.LevelDebug
	case hclog.Warn:
		sl = slog.LevelWarn
	case hclog.Error:
		sl = slog.LevelError
	default:
		sl = slog.LevelInfo
	}
	all := append(append([]any{"component", a.name}, a.args...), args...)
	// go-plugin names the plugin's binary "plugin"; the host's logger already carries
	// plugin=NAME, which must stay the plugin's name.
	for i := 0; i+1 < len(all); i += 2 {
		if k, ok := all[i].(string); ok && k == "plugin" {
			all[i] = "binary"
		}
	}
	a.l.Log(context.Background(), sl, msg, all...)
}
func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }
func (a *hclogAdapter) IsTrace() bool                 { return !a.off && a.level <= hclog.Trace }
func (a *hclogAdapter) IsDebug() bool                 { return !a.off && a.level <= hclog.Debug }
func (a *hclogAdapter) IsInfo() bool                  { return !a.off && a.level <= hclog.Info }
func (a *hclogAdapter) IsWarn() bool                  { return !a.off && a.level <= hclog.Warn }
func (a *hclogAdapter) IsError() bool                 { return !a.off && a.level <= hclog.Error }
func (a *hclogAdapter) ImpliedArgs() []any            { return a.args }
func (a *hclogAdapter) With(args ...any) hclog.Logger {
	c := *a
	c.args = append(append([]any{}, a.args...), args...)
	return &c
}
func (a *hclogAdapter) Name() string { return a.name }
func (a *hclogAdapter) Named(name string) hclog.Logger {
	c := *a
	c.name = a.name + "." + name
	c.off = name != "stdio"
	return &c
}
func (a *hclogAdapter) ResetNamed(name string) hclog.Logger { c := *a; c.name = name; return &c }
func (a *hclogAdapter) SetLevel(level hclog.Level)          { a.level = level }
func (a *hclogAdapter) GetLevel() hclog.Level {
	if a.off {
		return hclog.Off
	}
	return a.level
}
func (a *hclogAdapter) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(nil), "", 0)
}
func (a *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		a.Info(strings.TrimRight(string(p), "\n"))
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
