package ctl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// table writes aligned columns.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		// Tabs and newlines would break the columns.
		cells[i] = strings.NewReplacer("\t", " ", "\n", " ").Replace(c)
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() { t.tw.Flush() }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func pidText(pid int) string {
	if pid <= 0 {
		return "-"
	}
	return strconv.Itoa(pid)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// timeLayout is how times are shown.
const timeLayout = "2006-01-02 15:04:05 MST"

// timeText is "2026-05-01 10:00:00 CEST (3h2m ago)", or "never".
func (a *app) timeText(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Local().Format(timeLayout) + " (" + ago(a.now().Sub(t)) + ")"
}

// ago is a short human duration: "45s ago", "3m10s ago", "2h5m ago", "3d4h ago".
func ago(d time.Duration) string {
	if d < 0 {
		return "in " + strings.TrimSuffix(ago(-d), " ago")
	}
	return shortDuration(d) + " ago"
}

func shortDuration(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

// writeJSON prints raw JSON indented (content and field order unchanged).
func writeJSON(w io.Writer, raw []byte) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		// Not JSON after all: print it as it came.
		buf.Reset()
		buf.Write(raw)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// writeValue prints a JSON value for people: a list of flat objects as a table, a string
// as is, anything else indented.
func writeValue(w io.Writer, raw json.RawMessage) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			_, err := fmt.Fprintln(w, s)
			return err
		}
	}
	if cols, rows, ok := flatObjects(raw); ok {
		t := newTable(w, upper(cols)...)
		for _, r := range rows {
			cells := make([]string, len(cols))
			for i, c := range cols {
				cells[i] = r[c]
			}
			t.row(cells...)
		}
		t.flush()
		return nil
	}
	return writeJSON(w, raw)
}

func upper(cols []string) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = strings.ToUpper(c)
	}
	return out
}

// flatObjects recognizes a non-empty list of objects whose values are all scalars, and
// returns the columns (keys in order of first appearance) and the rows as text.
func flatObjects(raw json.RawMessage) (cols []string, rows []map[string]string, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return nil, nil, false
	}
	seen := map[string]bool{}
	for dec.More() {
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			return nil, nil, false
		}
		row := map[string]string{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return nil, nil, false
			}
			key, _ := tok.(string)
			var v any
			if err := dec.Decode(&v); err != nil {
				return nil, nil, false
			}
			text, scalar := scalarText(v)
			if !scalar {
				return nil, nil, false
			}
			if !seen[key] {
				seen[key] = true
				cols = append(cols, key)
			}
			row[key] = text
		}
		if _, err := dec.Token(); err != nil { // '}'
			return nil, nil, false
		}
		rows = append(rows, row)
	}
	if _, err := dec.Token(); err != nil { // ']'
		return nil, nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, false
	}
	return cols, rows, len(rows) > 0 && len(cols) > 0
}

func scalarText(v any) (string, bool) {
	switch v := v.(type) {
	case nil:
		return "-", true
	case string:
		return v, true
	case bool:
		return strconv.FormatBool(v), true
	case json.Number:
		return v.String(), true
	}
	return "", false
}

// itemLine renders one stream item as one line: a string as is, an object as
// key=value pairs (time, level, source and message first), anything else as JSON.
func itemLine(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	var s string
	if len(raw) > 0 && raw[0] == '"' && json.Unmarshal(raw, &s) == nil {
		return s
	}
	if len(raw) == 0 || raw[0] != '{' {
		return string(raw)
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return string(raw)
	}
	var parts []string
	first := []string{"time", "ts", "level", "source", "plugin", "msg", "message", "line"}
	used := map[string]bool{}
	for _, k := range first {
		if v, ok := obj[k]; ok {
			parts = append(parts, fieldText(k, v, true))
			used[k] = true
		}
	}
	rest := make([]string, 0, len(obj))
	for k := range obj {
		if !used[k] {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	for _, k := range rest {
		parts = append(parts, fieldText(k, obj[k], false))
	}
	return strings.Join(parts, " ")
}

// fieldText is "key=value"; for the leading well-known fields just the value.
func fieldText(k string, v json.RawMessage, bare bool) string {
	var s string
	text := string(v)
	if json.Unmarshal(v, &s) == nil {
		text = s
		if !bare && (s == "" || strings.ContainsAny(s, " \t\"=")) {
			text = strconv.Quote(s)
		}
	}
	if bare {
		return text
	}
	return k + "=" + text
}
