package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Marshal renders the effective configuration (every key, defaults filled in) as YAML
// that Parse reads back to an equal Config.
func (c *Config) Marshal() ([]byte, error) {
	d := c.Daemon
	daemon := mapping(
		"plugin_dir", str(d.PluginDir),
		"plugins_d", str(d.PluginsD),
		"state_dir", str(d.StateDir),
		"runtime_dir", str(d.RuntimeDir),
		"socket", str(d.Socket),
		"plugin_user", str(d.PluginUser),
		"log_level", str(d.LogLevel),
		"log_format", str(d.LogFormat),
		"health_interval", str(formatDuration(d.HealthInterval)),
		"health_timeout", str(formatDuration(d.HealthTimeout)),
		"stop_timeout", str(formatDuration(d.StopTimeout)),
		"restart", mapping(
			"max", plain(strconv.Itoa(d.Restart.Max)),
			"window", str(formatDuration(d.Restart.Window)),
			"backoff_max", str(formatDuration(d.Restart.BackoffMax)),
		),
		"metrics_listen", str(d.MetricsListen),
	)
	plugins := mapping()
	for _, p := range c.Plugins {
		after := &yaml.Node{Kind: yaml.SequenceNode, Tag: tagSeq, Style: yaml.FlowStyle}
		for _, a := range p.After {
			after.Content = append(after.Content, str(a))
		}
		cfg, err := jsonToNode(p.Config)
		if err != nil {
			return nil, fmt.Errorf("marshal config: plugin %s: %w", p.Name, err)
		}
		plugins.Content = append(plugins.Content, str(p.Name), mapping(
			"enabled", plain(strconv.FormatBool(p.Enabled)),
			"binary", str(p.Binary),
			"required", plain(strconv.FormatBool(p.Required)),
			"after", after,
			"active_when", str(p.ActiveWhen),
			"config", cfg,
		))
	}
	if len(plugins.Content) == 0 {
		plugins.Style = yaml.FlowStyle
	}
	root := mapping("daemon", daemon, "plugins", plugins)
	var buf bytes.Buffer
	if err := encode(&buf, root); err != nil {
		return nil, fmt.Errorf("marshal config: %w", err)
	}
	return buf.Bytes(), nil
}

// encode writes n as YAML, turning a panic in the encoder into an error.
func encode(buf *bytes.Buffer, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml encoder failed: %v", r)
		}
	}()
	enc := yaml.NewEncoder(buf)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return err
	}
	return enc.Close()
}

// mapping builds a mapping node from alternating keys and value nodes.
func mapping(kv ...any) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode, Tag: tagMap}
	for i := 0; i+1 < len(kv); i += 2 {
		n.Content = append(n.Content, str(kv[i].(string)), kv[i+1].(*yaml.Node))
	}
	return n
}

// str is a string scalar; the encoder quotes it when it would read as another type.
func str(s string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: tagStr, Value: s}
	if strings.ContainsAny(s, "\n\r") || strings.TrimSpace(s) != s {
		n.Style = yaml.DoubleQuotedStyle
	}
	return n
}

// plain is a scalar written as is (numbers, booleans, null).
func plain(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Value: s}
}

// jsonToNode converts JSON to a YAML node, keeping object key order.
func jsonToNode(b json.RawMessage) (*yaml.Node, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		b = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	n, err := jsonValue(dec)
	if err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data after the JSON value")
	}
	if n.Kind == yaml.MappingNode && len(n.Content) == 0 {
		n.Style = yaml.FlowStyle
	}
	return n, nil
}

func jsonValue(dec *json.Decoder) (*yaml.Node, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("read JSON: %w", err)
	}
	switch t := tok.(type) {
	case json.Delim:
		var n *yaml.Node
		switch t {
		case '{':
			n = &yaml.Node{Kind: yaml.MappingNode, Tag: tagMap}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, fmt.Errorf("read JSON: %w", err)
				}
				k, _ := kt.(string)
				v, err := jsonValue(dec)
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, str(k), v)
			}
		case '[':
			n = &yaml.Node{Kind: yaml.SequenceNode, Tag: tagSeq}
			for dec.More() {
				v, err := jsonValue(dec)
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, v)
			}
		default:
			return nil, fmt.Errorf("read JSON: unexpected %v", t)
		}
		if _, err := dec.Token(); err != nil { // the closing delimiter
			return nil, fmt.Errorf("read JSON: %w", err)
		}
		if len(n.Content) == 0 {
			n.Style = yaml.FlowStyle
		}
		return n, nil
	case string:
		return str(t), nil
	case json.Number:
		return plain(t.String()), nil
	case bool:
		return plain(strconv.FormatBool(t)), nil
	case nil:
		return plain("null"), nil
	}
	return nil, fmt.Errorf("read JSON: unexpected token %v", tok)
}

// formatDuration writes a duration the way people do: 1m rather than 1m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
