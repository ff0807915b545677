package config

import (
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ErrorAt positions a problem a plugin found in its own section. path locates the field
// either as a JSON pointer ("/gateways/1/endpoint") or as a dotted path
// ("gateways[1].endpoint", "gateways.1.endpoint", `peers["a.b"]`); "" means the plugin
// as a whole. The position is the most precise one the file has: the field's value
// (its key, for a mapping or list), else the nearest ancestor that exists, else the
// plugin's `config:` key, else the plugin's name. The message starts with the field's
// path in the file, e.g. "plugins.tunnel.config.gateways[1].endpoint: msg".
func (c *Config) ErrorAt(plugin, path, msg string) *Error {
	return c.errorAt(plugin, splitPath(path), msg, false)
}

// errorAt is ErrorAt on path tokens; atKey positions a found field at its key.
func (c *Config) errorAt(plugin string, tokens []string, msg string, atKey bool) *Error {
	e := &Error{File: c.Source}
	where := "plugins." + plugin
	if len(tokens) > 0 {
		where += ".config"
	}
	pn := c.nodes[plugin]
	var pos *yaml.Node
	var cur *yaml.Node // the value at the path so far
	switch {
	case pn != nil:
		pos, cur = pn.key, pn.config
		if pn.configKey != nil && len(tokens) > 0 {
			pos = pn.configKey
		}
	default:
		if p, ok := c.Plugin(plugin); ok {
			e.Line, e.Col = p.Pos.Line, p.Pos.Col
		} else if c.pluginsKey != nil {
			e.Line, e.Col = c.pluginsKey.Line, c.pluginsKey.Column
		}
	}
	for _, tok := range tokens {
		n := deref(cur)
		if n != nil && n.Kind == yaml.SequenceNode || (n == nil || n.Kind != yaml.MappingNode) && isIndex(tok) {
			where += "[" + tok + "]"
		} else {
			where += pathKey(tok)
		}
		key, val := child(n, tok)
		cur = val
		if val == nil {
			continue
		}
		if v := deref(val); key != nil && (atKey || v.Kind == yaml.MappingNode || v.Kind == yaml.SequenceNode) {
			pos = key
		} else {
			pos = val
		}
	}
	if pos != nil {
		e.Line, e.Col = pos.Line, pos.Column
	}
	e.Msg = where + ": " + msg
	return e
}

// child finds tok in a mapping (its key and value) or a list (its item).
func child(n *yaml.Node, tok string) (key, val *yaml.Node) {
	if n == nil {
		return nil, nil
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := deref(n.Content[i]); k.Kind == yaml.ScalarNode && k.Value == tok {
				return n.Content[i], n.Content[i+1]
			}
		}
	case yaml.SequenceNode:
		if i, err := strconv.Atoi(tok); err == nil && isIndex(tok) && i < len(n.Content) {
			return nil, n.Content[i]
		}
	}
	return nil, nil
}

// isIndex reports whether tok is a list index (digits only).
func isIndex(tok string) bool {
	if tok == "" || len(tok) > 9 {
		return false
	}
	for _, r := range tok {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// splitPath splits a field path into tokens. A leading "/" means a JSON pointer
// (RFC 6901); otherwise the path is dotted with [N] or ["key"] segments, optionally
// starting with "$".
func splitPath(path string) []string {
	if path == "" {
		return nil
	}
	if strings.HasPrefix(path, "/") {
		parts := strings.Split(path[1:], "/")
		for i, p := range parts {
			parts[i] = strings.ReplaceAll(strings.ReplaceAll(p, "~1", "/"), "~0", "~")
		}
		return parts
	}
	path = strings.TrimPrefix(path, "$")
	var out []string
	for path != "" {
		switch path[0] {
		case '.':
			path = path[1:]
		case '[':
			end := strings.IndexByte(path, ']')
			if rest := path[1:]; len(rest) > 0 && (rest[0] == '"' || rest[0] == '\'') {
				if tok, n, ok := quoted(rest); ok && strings.HasPrefix(rest[n:], "]") {
					out = append(out, tok)
					path = rest[n+1:]
					continue
				}
			}
			if end < 0 {
				out = append(out, path[1:])
				return out
			}
			out = append(out, path[1:end])
			path = path[end+1:]
		default:
			end := strings.IndexAny(path, ".[")
			if end < 0 {
				end = len(path)
			}
			out = append(out, path[:end])
			path = path[end:]
		}
	}
	return out
}

// quoted reads a "double" (Go/JSON escapes) or 'single' quoted string at the start of
// s, returning it and the bytes consumed.
func quoted(s string) (string, int, bool) {
	if s[0] == '\'' {
		end := strings.IndexByte(s[1:], '\'')
		if end < 0 {
			return "", 0, false
		}
		return s[1 : end+1], end + 2, true
	}
	prefix, err := strconv.QuotedPrefix(s)
	if err != nil {
		return "", 0, false
	}
	v, err := strconv.Unquote(prefix)
	if err != nil {
		return "", 0, false
	}
	return v, len(prefix), true
}
