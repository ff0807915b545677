// Package logging builds sitelinkd's logger: structured records to journald with their
// attributes as journal fields (PLUGIN=, EVENT=, …) when stderr is the journal, else text
// or JSON lines on stderr.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/coreos/go-systemd/v22/journal"
)

// Logger is a logger and its adjustable level.
type Logger struct {
	*slog.Logger
	level  *slog.LevelVar
	Format string // the format in use: journal, text or json
}

// New picks the output for format ("auto", "text", "json" or "journal"): auto means the
// journal when stderr is connected to it (JOURNAL_STREAM), else text.
func New(format, level string, w io.Writer) (*Logger, error) {
	l := &Logger{level: new(slog.LevelVar)}
	l.SetLevel(level)
	opts := &slog.HandlerOptions{Level: l.level}
	f := strings.ToLower(format)
	if f == "" || f == "auto" {
		f = "text"
		if ok, _ := journal.StderrIsJournalStream(); ok && journal.Enabled() {
			f = "journal"
		}
	}
	switch f {
	case "text":
		l.Logger = slog.New(slog.NewTextHandler(w, opts))
	case "json":
		l.Logger = slog.New(slog.NewJSONHandler(w, opts))
	case "journal":
		l.Logger = slog.New(&JournalHandler{level: l.level, send: journal.Send})
	default:
		return nil, fmt.Errorf("unknown log format %q (want auto, text, json or journal)", format)
	}
	l.Format = f
	return l, nil
}

// Stderr is New writing to os.Stderr.
func Stderr(format, level string) (*Logger, error) { return New(format, level, os.Stderr) }

// SetLevel changes the level: debug, info, warn or error.
func (l *Logger) SetLevel(level string) {
	switch strings.ToLower(level) {
	case "debug":
		l.level.Set(slog.LevelDebug)
	case "warn", "warning":
		l.level.Set(slog.LevelWarn)
	case "error":
		l.level.Set(slog.LevelError)
	default:
		l.level.Set(slog.LevelInfo)
	}
}

// JournalHandler sends records to journald natively: the message as MESSAGE, the level
// as PRIORITY, and every attribute as a field whose name is the attribute's key in upper
// case with other characters turned into '_' (plugin → PLUGIN, event → EVENT). Groups
// prefix their keys (GROUP_KEY).
type JournalHandler struct {
	level  slog.Leveler
	attrs  []slog.Attr
	groups []string
	send   func(msg string, p journal.Priority, vars map[string]string) error
}

// Enabled implements slog.Handler.
func (h *JournalHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

// Handle implements slog.Handler.
func (h *JournalHandler) Handle(_ context.Context, r slog.Record) error {
	vars := map[string]string{"SYSLOG_IDENTIFIER": "sitelinkd"}
	prefix := ""
	for _, g := range h.groups {
		prefix += FieldName(g) + "_"
	}
	for _, a := range h.attrs {
		addField(vars, "", a)
	}
	r.Attrs(func(a slog.Attr) bool {
		addField(vars, prefix, a)
		return true
	})
	msg := r.Message
	if p := vars["PLUGIN"]; p != "" {
		msg = p + ": " + msg // plain journalctl shows only MESSAGE
	}
	return h.send(msg, priority(r.Level), vars)
}

func addField(vars map[string]string, prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		for _, ga := range v.Group() {
			addField(vars, prefix+FieldName(a.Key)+"_", ga)
		}
		return
	}
	name := prefix + FieldName(a.Key)
	if name == "" || name == "MESSAGE" || name == "PRIORITY" {
		name = "ATTR_" + name
	}
	vars[name] = v.String()
}

// WithAttrs implements slog.Handler.
func (h *JournalHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	prefix := ""
	for _, g := range h.groups {
		prefix += g + "_"
	}
	for _, a := range attrs {
		c.attrs = append(append([]slog.Attr(nil), c.attrs...), slog.Attr{Key: prefix + a.Key, Value: a.Value})
	}
	return &c
}

// WithGroup implements slog.Handler.
func (h *JournalHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.groups = append(append([]string(nil), h.groups...), name)
	return &c
}

// FieldName turns an attribute key into a valid journal field name.
func FieldName(key string) string {
	b := []byte(strings.ToUpper(key))
	for i, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	s := strings.TrimLeft(string(b), "_0123456789") // must start with a letter
	return s
}

func priority(l slog.Level) journal.Priority {
	switch {
	case l >= slog.LevelError:
		return journal.PriErr
	case l >= slog.LevelWarn:
		return journal.PriWarning
	case l >= slog.LevelInfo:
		return journal.PriInfo
	}
	return journal.PriDebug
}
