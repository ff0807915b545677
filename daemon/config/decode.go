package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// maxNodes bounds how many YAML nodes one file may make the decoder visit, counting
// every expansion of an alias (so "billion laughs" documents fail fast).
const maxNodes = 1 << 18

// YAML tags the decoder understands.
const (
	tagStr       = "!!str"
	tagInt       = "!!int"
	tagFloat     = "!!float"
	tagBool      = "!!bool"
	tagNull      = "!!null"
	tagTimestamp = "!!timestamp"
	tagMap       = "!!map"
	tagSeq       = "!!seq"
	tagMerge     = "!!merge"
)

// nameRE is the rule for plugin names.
var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

// userRE is the rule for user names (POSIX portable names, or a numeric uid).
var userRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$`)

// decoder walks yaml.Nodes of one file, collecting positioned errors.
type decoder struct {
	collector
	budget    int
	exhausted bool
	// active holds the collections being converted to JSON, to catch an alias that
	// refers to a node containing it.
	active map[*yaml.Node]bool
}

func newDecoder(file string) *decoder {
	return &decoder{collector: collector{file: file}, budget: maxNodes, active: map[*yaml.Node]bool{}}
}

// errAt records a problem at n's position.
func (d *decoder) errAt(n *yaml.Node, format string, args ...any) {
	d.add(n.Line, n.Column, format, args...)
}

// step charges one node against the budget; false once it is spent.
func (d *decoder) step(n *yaml.Node) bool {
	if d.exhausted {
		return false
	}
	d.budget--
	if d.budget < 0 {
		d.exhausted = true
		d.errAt(n, "the document is too large or its aliases expand to more than %d nodes", maxNodes)
		return false
	}
	return true
}

// yamlLineRE finds the line in a go-yaml syntax error.
var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// document parses data into its single root node (nil for an empty document).
func (d *decoder) document(data []byte) (root *yaml.Node, ok bool) {
	if len(data) > maxFileSize {
		d.add(0, 0, "the file is larger than %d bytes", maxFileSize)
		return nil, false
	}
	if !d.precheck(data) {
		return nil, false
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	err := safeDecode(dec, &doc)
	if errors.Is(err, io.EOF) {
		return nil, true
	}
	if err != nil {
		d.syntaxError(data, err)
		return nil, false
	}
	var extra yaml.Node
	switch err := safeDecode(dec, &extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.syntaxError(data, err)
		return nil, false
	default:
		d.errAt(&extra, "only one YAML document is allowed in the file (found a second one)")
		return nil, false
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, true
	}
	return doc.Content[0], true
}

// safeDecode runs the YAML parser, turning a panic inside it into an error so that no
// input can crash the daemon.
func safeDecode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: the YAML parser failed: %v", r)
		}
	}()
	return dec.Decode(n)
}

// precheck reports invalid UTF-8 and control characters with their exact position
// (the YAML parser reports them without one).
func (d *decoder) precheck(data []byte) bool {
	line, col := 1, 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			d.add(line, col, "the file is not valid UTF-8 (byte 0x%02x)", data[i])
			return false
		case r == '\n':
			line, col = line+1, 0
		case r == '\t' || r == '\r' || r == '\uFEFF' && i == 0:
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f && r != 0x85) || r == '\uFFFE' || r == '\uFFFF' ||
			(r >= 0xD800 && r <= 0xDFFF):
			d.add(line, col, "control character %U is not allowed in YAML", r)
			return false
		}
		i += size
		col++
	}
	return true
}

// syntaxError records a YAML parser error. go-yaml reports at best a line, and often
// the line where the enclosing construct starts, so the position is refined: it is the
// shortest prefix of the file (whole lines, then characters of the last line) that
// fails with the same message. Without a match it falls back to the reported line and
// its first non-blank column.
func (d *decoder) syntaxError(data []byte, err error) {
	msg, line := splitYAMLError(err)
	col := 0
	lines := bytes.SplitAfter(data, []byte("\n"))
	same := func(prefix []byte) bool {
		m, _ := splitYAMLError(parseAll(prefix))
		return m == msg
	}
	if l := smallest(len(lines), func(n int) bool { return same(bytes.Join(lines[:n], nil)) }); l > 0 {
		line = l
		before := bytes.Join(lines[:l-1], nil)
		text := []rune(string(lines[l-1]))
		if c := smallest(len(text), func(n int) bool { return same(append(slices.Clip(before), string(text[:n])...)) }); c > 0 {
			col = c
		}
	}
	if line <= 0 {
		line = 1
	}
	if col <= 0 {
		col = firstColumn(data, line)
	}
	d.add(line, col, "YAML syntax error: %s", msg)
}

// smallest returns the smallest n in [1, max] with ok(n), assuming ok is monotonic,
// or 0 when ok(max) is false.
func smallest(max int, ok func(int) bool) int {
	lo, hi, found := 1, max, 0
	for lo <= hi {
		mid := lo + (hi-lo)/2
		if ok(mid) {
			found, hi = mid, mid-1
		} else {
			lo = mid + 1
		}
	}
	return found
}

// parseAll parses every document in data, returning the first error.
func parseAll(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for range 1000 {
		var n yaml.Node
		if err := safeDecode(dec, &n); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
	return nil
}

// splitYAMLError separates go-yaml's "yaml: line N: msg" into msg and N (0 if absent).
func splitYAMLError(err error) (string, int) {
	if err == nil {
		return "", 0
	}
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return m[2], line
	}
	return strings.TrimPrefix(msg, "yaml: "), 0
}

// deref follows an alias to the node it names.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		if n.Alias == nil || i > 100 {
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: tagNull, Line: n.Line, Column: n.Column}
		}
		n = n.Alias
	}
	return n
}

// isNull reports whether n (dereferenced) is absent or a YAML null.
func isNull(n *yaml.Node) bool {
	n = deref(n)
	return n == nil || n.Kind == 0 || n.Kind == yaml.ScalarNode && n.Tag == tagNull
}

// describe names a value for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	n = deref(n)
	switch {
	case n == nil || isNull(n):
		return "nothing (null)"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Tag == tagStr:
		return strconv.Quote(truncate(n.Value))
	default:
		return truncate(n.Value)
	}
}

func truncate(s string) string {
	const max = 60
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	r := []rune(s)
	return string(r[:max]) + "…"
}

// scalar returns the resolved tag and value of a scalar node, reporting unsupported
// tags and values that do not match their explicit tag. Timestamps stay text.
func (d *decoder) scalar(path string, n *yaml.Node) (tag string, v any, ok bool) {
	switch n.Tag {
	case tagStr:
		return tagStr, n.Value, true
	case tagNull:
		return tagNull, nil, true
	case tagTimestamp:
		if n.Style&yaml.TaggedStyle != 0 {
			var t time.Time
			if err := n.Decode(&t); err != nil {
				d.errAt(n, "%s: %q is not a valid !!timestamp", path, truncate(n.Value))
				return "", nil, false
			}
		}
		return tagTimestamp, n.Value, true
	case tagInt, tagFloat, tagBool:
		if err := n.Decode(&v); err != nil {
			d.errAt(n, "%s: %q is not a valid %s", path, truncate(n.Value), n.Tag)
			return "", nil, false
		}
		// An explicit !!float on an integer decodes as an int; keep the tag's type.
		if n.Tag == tagFloat {
			switch x := v.(type) {
			case int:
				v = float64(x)
			case int64:
				v = float64(x)
			case uint64:
				v = float64(x)
			}
		}
		return n.Tag, v, true
	case tagMerge:
		d.errAt(n, "%s: merge keys (<<) are not supported; write the keys out", path)
		return "", nil, false
	default:
		d.errAt(n, "%s: unsupported YAML tag %s", path, n.Tag)
		return "", nil, false
	}
}

// known describes a section's keys for "unknown key" errors.
type known struct {
	section string // "daemon", "daemon.restart", "plugins.NAME", "" for top level
	keys    []string
}

// fields walks a mapping with a fixed set of keys. It reports non-scalar, merge,
// duplicate and unknown keys and calls fn for each known key whose value is not null
// (val is dereferenced). It returns the key nodes of all known keys present.
func (d *decoder) fields(n *yaml.Node, k known, fn func(name string, key, val *yaml.Node)) map[string]*yaml.Node {
	present := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		if !d.step(kn) {
			return present
		}
		name, ok := d.key(k.section, kn)
		if !ok {
			continue
		}
		if first, dup := present[name]; dup {
			d.errAt(kn, "%s: duplicate key %q (first defined at %d:%d)", orTop(k.section), truncate(name), first.Line, first.Column)
			continue
		}
		if !slices.Contains(k.keys, name) {
			d.errAt(kn, "%s", unknownKey(k, name))
			continue
		}
		present[name] = kn
		if !isNull(vn) {
			fn(name, kn, deref(vn))
		}
	}
	return present
}

// key reads a mapping key, which must be a plain scalar.
func (d *decoder) key(section string, kn *yaml.Node) (string, bool) {
	k := deref(kn)
	if k.Kind != yaml.ScalarNode {
		d.errAt(kn, "%s: keys must be plain text, got %s", orTop(section), describe(k))
		return "", false
	}
	if k.Tag == tagMerge {
		d.errAt(kn, "%s: merge keys (<<) are not supported; write the keys out", orTop(section))
		return "", false
	}
	return k.Value, true
}

func orTop(section string) string {
	if section == "" {
		return "top level"
	}
	return section
}

// unknownKey words the error for a key that is not in k.
func unknownKey(k known, name string) string {
	var b strings.Builder
	if k.section == "" {
		fmt.Fprintf(&b, "unknown top-level key %q", name)
	} else {
		fmt.Fprintf(&b, "%s: unknown key %q", k.section, name)
	}
	if s := closest(name, k.keys); s != "" {
		fmt.Fprintf(&b, " (did you mean %q?)", s)
	}
	fmt.Fprintf(&b, "; known keys: %s", strings.Join(k.keys, ", "))
	return b.String()
}

// closest returns the candidate nearest to s (case-insensitive), if it is close
// enough to be a typo: at most 2 edits, and at most one per 3 characters of s.
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	if len(s) > 64 {
		return ""
	}
	for _, c := range candidates {
		if dist := editDistance(strings.ToLower(s), strings.ToLower(c)); dist < bestD && dist <= len(s)/3 {
			best, bestD = c, dist
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// str reads a string value.
func (d *decoder) str(path string, n *yaml.Node) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.errAt(n, "%s: expected a string, got %s", path, describe(n))
		return "", false
	}
	tag, _, ok := d.scalar(path, n)
	if !ok {
		return "", false
	}
	if tag != tagStr {
		d.errAt(n, "%s: expected a string, got %s; quote it if you mean the text", path, describe(n))
		return "", false
	}
	if i := strings.IndexFunc(n.Value, unicode.IsControl); i >= 0 {
		d.errAt(n, "%s: control characters are not allowed, got %q", path, truncate(n.Value))
		return "", false
	}
	return n.Value, true
}

// boolean reads true or false.
func (d *decoder) boolean(path string, n *yaml.Node) (bool, bool) {
	if n.Kind == yaml.ScalarNode {
		tag, v, ok := d.scalar(path, n)
		if !ok {
			return false, false
		}
		if b, isBool := v.(bool); tag == tagBool && isBool {
			return b, true
		}
	}
	d.errAt(n, "%s: expected true or false, got %s", path, describe(n))
	return false, false
}

// integer reads a whole number.
func (d *decoder) integer(path string, n *yaml.Node) (int, bool) {
	if n.Kind == yaml.ScalarNode {
		tag, v, ok := d.scalar(path, n)
		if !ok {
			return 0, false
		}
		if tag == tagInt {
			switch x := v.(type) {
			case int:
				return x, true
			case int64, uint64:
				d.errAt(n, "%s: %s is out of range", path, truncate(n.Value))
				return 0, false
			}
		}
	}
	d.errAt(n, "%s: expected a whole number, got %s", path, describe(n))
	return 0, false
}

// duration reads a Go duration that must be > 0.
func (d *decoder) duration(path string, n *yaml.Node) (time.Duration, bool) {
	if n.Kind != yaml.ScalarNode {
		d.errAt(n, "%s: expected a duration like 5s, got %s", path, describe(n))
		return 0, false
	}
	tag, _, ok := d.scalar(path, n)
	if !ok {
		return 0, false
	}
	if tag == tagInt || tag == tagFloat {
		d.errAt(n, "%s: expected a duration like 5s, got %s (add a unit: ns, us, ms, s, m or h)", path, describe(n))
		return 0, false
	}
	v, err := time.ParseDuration(n.Value)
	if tag != tagStr || err != nil {
		d.errAt(n, "%s: expected a duration like 5s, got %s", path, describe(n))
		return 0, false
	}
	if v <= 0 {
		d.errAt(n, "%s: must be longer than 0, got %s", path, describe(n))
		return 0, false
	}
	return v, true
}

// enum reads a string that must be one of values.
func (d *decoder) enum(path string, n *yaml.Node, values ...string) (string, bool) {
	s, ok := d.str(path, n)
	if !ok {
		return "", false
	}
	if !slices.Contains(values, s) {
		d.errAt(n, "%s: must be one of %s; got %q", path, strings.Join(values, ", "), truncate(s))
		return "", false
	}
	return s, true
}

// absPath reads an absolute path.
func (d *decoder) absPath(path string, n *yaml.Node) (string, bool) {
	s, ok := d.str(path, n)
	if !ok {
		return "", false
	}
	if !strings.HasPrefix(s, "/") {
		d.errAt(n, "%s: must be an absolute path, got %q", path, truncate(s))
		return "", false
	}
	return s, true
}

// user reads a user name.
func (d *decoder) user(path string, n *yaml.Node) (string, bool) {
	s, ok := d.str(path, n)
	if !ok {
		return "", false
	}
	if !userRE.MatchString(s) {
		d.errAt(n, "%s: %q is not a valid user name (letters, digits, _ . -; at most 32)", path, truncate(s))
		return "", false
	}
	return s, true
}

// seq reads a list, calling fn for each item (dereferenced) with its use-site node.
func (d *decoder) seq(path, what string, n *yaml.Node, fn func(i int, item, use *yaml.Node)) bool {
	if n.Kind != yaml.SequenceNode {
		hint := ""
		if n.Kind == yaml.ScalarNode && n.Tag == tagStr {
			hint = fmt.Sprintf(" (write [%s])", truncate(n.Value))
		}
		d.errAt(n, "%s: expected a list of %s, got %s%s", path, what, describe(n), hint)
		return false
	}
	for i, use := range n.Content {
		if !d.step(use) {
			return false
		}
		fn(i, deref(use), use)
	}
	return true
}

// firstColumn is the 1-based column of the first non-blank character of a line.
func firstColumn(data []byte, line int) int {
	lines := bytes.Split(data, []byte("\n"))
	if line < 1 || line > len(lines) {
		return 1
	}
	s := string(lines[line-1])
	trimmed := strings.TrimLeft(s, " \t")
	if trimmed == "" {
		return 1
	}
	return utf8.RuneCountInString(s[:len(s)-len(trimmed)]) + 1
}
