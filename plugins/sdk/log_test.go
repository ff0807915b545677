package sdk

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// captured is what a LogForwarder logged: one decoded JSON object per record.
type captured struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *captured) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

func (c *captured) records(t *testing.T) []map[string]any {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(c.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("bad record %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// newCapture returns a forwarder whose logger carries plugin=p, as the supervisor's does.
func newCapture() (*LogForwarder, *captured) {
	c := &captured{}
	l := slog.New(slog.NewJSONHandler(c, &slog.HandlerOptions{Level: slog.LevelDebug})).With("plugin", "p")
	return NewLogForwarder(l), c
}

func TestLogForwarderJSONLines(t *testing.T) {
	f, c := newCapture()
	line := `{"@level":"warn","@message":"tunnel down","@timestamp":"2025-01-02T03:04:05.123456Z","gateway":"gw-a","n":3,"nested":{"k":"v"}}` + "\n"
	if _, err := f.Write([]byte(line)); err != nil {
		t.Fatal(err)
	}
	recs := c.records(t)
	if len(recs) != 1 {
		t.Fatalf("records = %v", recs)
	}
	r := recs[0]
	if r["level"] != "WARN" || r["msg"] != "tunnel down" || r["plugin"] != "p" || r["gateway"] != "gw-a" ||
		r["n"] != float64(3) || r["time"] != "2025-01-02T03:04:05.123456Z" {
		t.Fatalf("record = %v", r)
	}
	if nested, _ := r["nested"].(map[string]any); nested["k"] != "v" {
		t.Fatalf("nested attribute = %v", r["nested"])
	}
	for _, k := range []string{"@level", "@message", "@timestamp"} {
		if _, ok := r[k]; ok {
			t.Errorf("wire key %s leaked into the record", k)
		}
	}
}

func TestLogForwarderLevels(t *testing.T) {
	f, c := newCapture()
	for _, lvl := range []string{"trace", "debug", "info", "warn", "warning", "error", "fatal", "ERROR", "bogus", ""} {
		_, _ = f.Write([]byte(`{"@level":"` + lvl + `","@message":"m"}` + "\n"))
	}
	want := []string{"DEBUG", "DEBUG", "INFO", "WARN", "WARN", "ERROR", "ERROR", "ERROR", "INFO", "INFO"}
	recs := c.records(t)
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d", len(recs), len(want))
	}
	for i, r := range recs {
		if r["level"] != want[i] {
			t.Errorf("record %d level %v, want %s", i, r["level"], want[i])
		}
	}
}

func TestLogForwarderPartialWrites(t *testing.T) {
	f, c := newCapture()
	stream := `{"@level":"info","@message":"one"}` + "\n" + "plain two\r\n\n   \n" + `{"@message":"three"}` + "\n" + "four without newline"
	for i := 0; i < len(stream); i++ {
		n, err := f.Write([]byte{stream[i]})
		if n != 1 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if got := len(c.records(t)); got != 3 {
		t.Fatalf("%d records before Flush, want 3", got)
	}
	f.Flush()
	f.Flush() // nothing pending: no empty record
	recs := c.records(t)
	var msgs []string
	for _, r := range recs {
		msgs = append(msgs, r["msg"].(string))
	}
	if strings.Join(msgs, "|") != "one|plain two|three|four without newline" {
		t.Fatalf("messages = %q", msgs)
	}
	if recs[1]["stream"] != "stderr" || recs[1]["level"] != "INFO" {
		t.Fatalf("text line = %v", recs[1])
	}
	// Many lines in one write.
	f2, c2 := newCapture()
	n, err := f2.Write([]byte("a\nb\nc\n"))
	if n != 6 || err != nil || len(c2.records(t)) != 3 {
		t.Fatalf("Write = %d, %v; %d records", n, err, len(c2.records(t)))
	}
}

func TestLogForwarderLongLines(t *testing.T) {
	f, c := newCapture()
	long := strings.Repeat("x", 3*maxLogLine+10)
	// In odd-sized chunks, as a pipe delivers them.
	data := []byte(long + "\nafter\n")
	for len(data) > 0 {
		n := min(7919, len(data))
		if _, err := f.Write(data[:n]); err != nil {
			t.Fatal(err)
		}
		data = data[n:]
	}
	recs := c.records(t)
	if len(recs) != 5 {
		t.Fatalf("%d records, want 4 pieces of the long line and one more", len(recs))
	}
	total := 0
	for i, r := range recs[:4] {
		m := r["msg"].(string)
		if len(m) > maxLogLine {
			t.Fatalf("piece %d is %d bytes, over the cap", i, len(m))
		}
		total += len(m)
	}
	if total != len(long) || recs[4]["msg"] != "after" {
		t.Fatalf("long line logged as %d bytes, last %v", total, recs[4]["msg"])
	}
	if f.buf.Cap() > 2*maxLogLine {
		t.Fatalf("line buffer grew to %d bytes", f.buf.Cap())
	}

	// The newline arrives in a write that would take the line over the cap.
	f2, c2 := newCapture()
	_, _ = f2.Write([]byte(strings.Repeat("x", maxLogLine-100)))
	_, _ = f2.Write([]byte(strings.Repeat("y", 200) + "\nz\n"))
	recs = c2.records(t)
	if len(recs) != 3 || recs[2]["msg"] != "z" {
		t.Fatalf("%d records, want the long line in 2 pieces and z", len(recs))
	}
	for _, r := range recs {
		if m := r["msg"].(string); len(m) > maxLogLine {
			t.Fatalf("a piece of %d bytes, over the cap of %d", len(m), maxLogLine)
		}
	}
	if got := len(recs[0]["msg"].(string)) + len(recs[1]["msg"].(string)); got != maxLogLine+100 {
		t.Fatalf("long line logged as %d bytes, want %d", got, maxLogLine+100)
	}
}

func TestLogForwarderPanic(t *testing.T) {
	f, c := newCapture()
	_, _ = f.Write([]byte("starting\npanic: runtime error: index out of range\n\ngoroutine 1 [running]:\nmain.main()\n\t/x/main.go:5 +0x1d\n"))
	recs := c.records(t)
	if len(recs) != 5 {
		t.Fatalf("records = %v", recs)
	}
	if recs[0]["level"] != "INFO" {
		t.Fatalf("line before the panic at %v", recs[0]["level"])
	}
	for _, r := range recs[1:] {
		if r["level"] != "ERROR" {
			t.Fatalf("panic line %q at %v, want ERROR", r["msg"], r["level"])
		}
	}
	f2, c2 := newCapture()
	_, _ = f2.Write([]byte("fatal error: concurrent map writes\n"))
	if r := c2.records(t); len(r) != 1 || r[0]["level"] != "ERROR" {
		t.Fatalf("fatal error logged as %v", r)
	}
}

func TestLogForwarderMalformed(t *testing.T) {
	f, c := newCapture()
	lines := []string{
		`{"@message":5}`,
		`{"@level":3,"@message":["a"],"@timestamp":7}`,
		`{"@timestamp":"not a time","@message":"bad time"}`,
		`{"@message":null,"k":null}`,
		`{}`,
		`{"@message":"unterminated`,
		`{not json at all`,
		`[1,2,3]`,
		`{"@message":"x"} trailing`,
		"\x00\xff\xfe binary",
		`{"a":{"b":{"c":[1,{"d":2}]}}}`,
	}
	for _, l := range lines {
		if _, err := f.Write([]byte(l + "\n")); err != nil {
			t.Fatal(err)
		}
	}
	recs := c.records(t)
	if len(recs) != len(lines) {
		t.Fatalf("%d records for %d lines", len(recs), len(lines))
	}
	if recs[2]["msg"] != "bad time" {
		t.Fatalf("bad time record = %v", recs[2])
	}
	for i := 5; i <= 7; i++ {
		if recs[i]["msg"] != lines[i] || recs[i]["stream"] != "stderr" {
			t.Errorf("non-JSON line %q logged as %v", lines[i], recs[i])
		}
	}
}

// The plugin side writes what the host side reads: a round trip through the wire
// format keeps message, level, time and attributes.
func TestLogWireRoundTrip(t *testing.T) {
	var wire bytes.Buffer
	pl := newPluginLogger(&wire)
	pl.slog.Warn("gateway unreachable", "gateway", "gw-b", "attempt", 2)
	pl.slog.Debug("detail")
	pl.slog.WithGroup("g").Error("grouped", "k", "v")
	f, c := newCapture()
	_, _ = f.Write(wire.Bytes())
	recs := c.records(t)
	if len(recs) != 3 {
		t.Fatalf("records = %v (wire %q)", recs, wire.String())
	}
	if r := recs[0]; r["msg"] != "gateway unreachable" || r["level"] != "WARN" || r["gateway"] != "gw-b" || r["attempt"] != float64(2) {
		t.Fatalf("record = %v", r)
	}
	ts, err := time.Parse(time.RFC3339Nano, recs[0]["time"].(string))
	if err != nil || time.Since(ts) > time.Minute || time.Since(ts) < -time.Minute {
		t.Fatalf("time = %v (%v)", recs[0]["time"], err)
	}
	if recs[1]["level"] != "DEBUG" || recs[2]["level"] != "ERROR" {
		t.Fatalf("levels = %v, %v", recs[1]["level"], recs[2]["level"])
	}
	if g, _ := recs[2]["g"].(map[string]any); g["k"] != "v" {
		t.Fatalf("group = %v", recs[2]["g"])
	}
}

func TestLineWriter(t *testing.T) {
	c := &captured{}
	w := LineWriter(slog.New(slog.NewJSONHandler(c, nil)), "stdout")
	if _, err := w.Write([]byte("hello\nwor")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("ld\n")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(c.records(t)) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("records = %v", c.records(t))
		}
		time.Sleep(time.Millisecond)
	}
	recs := c.records(t)
	if recs[0]["msg"] != "hello" || recs[1]["msg"] != "world" || recs[1]["stream"] != "stdout" {
		t.Fatalf("records = %v", recs)
	}
}

func TestHCLogAdapter(t *testing.T) {
	c := &captured{}
	l := NewHCLogAdapter(slog.New(slog.NewJSONHandler(c, &slog.HandlerOptions{Level: slog.LevelDebug})), "go-plugin")
	l.Debug("debug line", "k", 1)
	l.With("w", "x").Warn("warn line")
	l.Named("testplugin").Error("from the plugin's stderr: parsed elsewhere")
	stdio := l.Named("stdio")
	stdio.Info("stdio line")
	l.SetLevel(hclog.Warn)
	l.Info("filtered")
	recs := c.records(t)
	if len(recs) != 3 {
		t.Fatalf("records = %v", recs)
	}
	if recs[0]["msg"] != "debug line" || recs[0]["level"] != "DEBUG" || recs[0]["component"] != "go-plugin" || recs[0]["k"] != float64(1) {
		t.Fatalf("record 0 = %v", recs[0])
	}
	if recs[1]["w"] != "x" || recs[1]["level"] != "WARN" {
		t.Fatalf("record 1 = %v", recs[1])
	}
	if recs[2]["component"] != "go-plugin.stdio" {
		t.Fatalf("record 2 = %v", recs[2])
	}
	if l.Named("x").GetLevel() != hclog.Off || l.Named("x").IsError() {
		t.Fatal("a named logger other than stdio is not off")
	}
	l.SetLevel(hclog.Debug)
	l.StandardLogger(nil).Print("standard line")
	if recs := c.records(t); len(recs) != 4 || recs[3]["msg"] != "standard line" {
		t.Fatalf("standard logger: %v", recs)
	}
}

// The daemon's log level applies to its plugins' lines too.
func TestLogForwarderLevelFilter(t *testing.T) {
	c := &captured{}
	f := NewLogForwarder(slog.New(slog.NewJSONHandler(c, &slog.HandlerOptions{Level: slog.LevelInfo})))
	_, _ = f.Write([]byte(`{"@level":"debug","@message":"noise"}` + "\n" + `{"@level":"info","@message":"kept"}` + "\n"))
	recs := c.records(t)
	if len(recs) != 1 || recs[0]["msg"] != "kept" {
		t.Fatalf("records = %v", recs)
	}
}
