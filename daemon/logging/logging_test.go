package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/coreos/go-systemd/v22/journal"
)

func TestJournalFields(t *testing.T) {
	type sent struct {
		msg  string
		pri  journal.Priority
		vars map[string]string
	}
	var got []sent
	lv := new(slog.LevelVar)
	h := &JournalHandler{level: lv, send: func(msg string, p journal.Priority, vars map[string]string) error {
		got = append(got, sent{msg, p, vars})
		return nil
	}}
	log := slog.New(h).With("plugin", "tunnel")
	log.Warn("gateway down", "event", "tunnel", "gw.name", "gw-a", slog.Group("peer", "addr", "10.0.0.1"))
	log.Debug("hidden")
	if len(got) != 1 {
		t.Fatalf("sent %d records, want 1 (debug is below the level)", len(got))
	}
	g := got[0]
	if g.msg != "tunnel: gateway down" || g.pri != journal.PriWarning {
		t.Fatalf("got %q priority %d", g.msg, g.pri)
	}
	want := map[string]string{"PLUGIN": "tunnel", "EVENT": "tunnel", "GW_NAME": "gw-a", "PEER_ADDR": "10.0.0.1", "SYSLOG_IDENTIFIER": "sitelinkd"}
	for k, v := range want {
		if g.vars[k] != v {
			t.Errorf("field %s = %q, want %q (all: %v)", k, g.vars[k], v, g.vars)
		}
	}
}

func TestFieldName(t *testing.T) {
	for in, want := range map[string]string{"plugin": "PLUGIN", "api-version": "API_VERSION", "9lives": "LIVES", "_x": "X"} {
		if got := FieldName(in); got != want {
			t.Errorf("FieldName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFormats(t *testing.T) {
	var buf bytes.Buffer
	l, err := New("json", "debug", &buf)
	if err != nil {
		t.Fatal(err)
	}
	l.Debug("hello", "plugin", "x")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil || rec["plugin"] != "x" || rec["msg"] != "hello" {
		t.Fatalf("json record %q: %v", buf.String(), err)
	}
	l.SetLevel("error")
	buf.Reset()
	l.Warn("quiet")
	if buf.Len() != 0 {
		t.Fatalf("warn logged at level error: %q", buf.String())
	}
	if _, err := New("xml", "info", &buf); err == nil {
		t.Fatal("unknown format accepted")
	}
	t.Setenv("JOURNAL_STREAM", "")
	if l, _ := New("auto", "info", &buf); l.Format != "text" {
		t.Fatalf("auto without a journal = %s, want text", l.Format)
	}
}
