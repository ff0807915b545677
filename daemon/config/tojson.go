package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// toJSON converts a plugin's config section (any YAML value) to JSON, keeping mapping
// keys in the order written. It reports what JSON cannot hold (NaN, infinities,
// non-scalar keys), duplicate keys, unsupported tags and self-referencing aliases.
func (d *decoder) toJSON(path string, use *yaml.Node, w *strings.Builder) bool {
	if !d.step(use) {
		return false
	}
	n := deref(use)
	if use.Kind == yaml.AliasNode && d.active[n] {
		d.errAt(use, "%s: alias *%s refers to a value that contains it", path, truncate(use.Value))
		return false
	}
	switch n.Kind {
	case yaml.MappingNode:
		if n.Tag != tagMap {
			d.errAt(n, "%s: unsupported YAML tag %s on a mapping", path, n.Tag)
			return false
		}
		d.active[n] = true
		defer delete(d.active, n)
		ok := true
		seen := map[string]*yaml.Node{}
		w.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := n.Content[i], n.Content[i+1]
			if !d.step(kn) {
				return false
			}
			key, kok := d.key(path, kn)
			if !kok {
				ok = false
				continue
			}
			if first, dup := seen[key]; dup {
				d.errAt(kn, "%s: duplicate key %q (first defined at %d:%d)", path, truncate(key), first.Line, first.Column)
				ok = false
				continue
			}
			seen[key] = kn
			if len(seen) > 1 {
				w.WriteByte(',')
			}
			writeJSONString(w, key)
			w.WriteByte(':')
			if !d.toJSON(path+pathKey(key), vn, w) {
				ok = false
			}
		}
		w.WriteByte('}')
		return ok
	case yaml.SequenceNode:
		if n.Tag != tagSeq {
			d.errAt(n, "%s: unsupported YAML tag %s on a list", path, n.Tag)
			return false
		}
		d.active[n] = true
		defer delete(d.active, n)
		ok := true
		w.WriteByte('[')
		for i, item := range n.Content {
			if i > 0 {
				w.WriteByte(',')
			}
			if !d.toJSON(fmt.Sprintf("%s[%d]", path, i), item, w) {
				ok = false
			}
		}
		w.WriteByte(']')
		return ok
	case yaml.ScalarNode:
		tag, v, ok := d.scalar(path, n)
		if !ok {
			return false
		}
		switch tag {
		case tagStr, tagTimestamp:
			writeJSONString(w, v.(string))
		case tagNull:
			w.WriteString("null")
		case tagBool:
			w.WriteString(strconv.FormatBool(v.(bool)))
		case tagInt:
			switch x := v.(type) {
			case int:
				w.WriteString(strconv.Itoa(x))
			case int64:
				w.WriteString(strconv.FormatInt(x, 10))
			case uint64:
				w.WriteString(strconv.FormatUint(x, 10))
			default:
				d.errAt(n, "%s: cannot read %q as a number", path, truncate(n.Value))
				return false
			}
		case tagFloat:
			f, isFloat := v.(float64)
			if !isFloat || math.IsNaN(f) || math.IsInf(f, 0) {
				d.errAt(n, "%s: %s cannot be represented in JSON", path, truncate(n.Value))
				return false
			}
			if f == 0 {
				f = 0 // no negative zero
			}
			b, _ := json.Marshal(f)
			w.Write(b)
		}
		return true
	default:
		d.errAt(use, "%s: unexpected YAML node", path)
		return false
	}
}

// writeJSONString writes s as a JSON string without HTML escaping.
func writeJSONString(w *strings.Builder, s string) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	w.Write(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}

// simpleKeyRE matches keys written as .key in paths; others are written ["key"].
var simpleKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// pathKey is the path segment for a mapping key.
func pathKey(key string) string {
	if simpleKeyRE.MatchString(key) {
		return "." + key
	}
	return "[" + strconv.Quote(truncate(key)) + "]"
}
