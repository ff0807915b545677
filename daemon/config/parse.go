package config

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The keys of each section, in the order Marshal writes them.
var (
	topKeys     = known{"", []string{"daemon", "plugins"}}
	daemonKeys  = []string{"plugin_dir", "plugins_d", "state_dir", "runtime_dir", "socket", "plugin_user", "log_level", "log_format", "health_interval", "health_timeout", "stop_timeout", "restart", "metrics_listen"}
	restartKeys = []string{"max", "window", "backoff_max"}
	pluginKeys  = []string{"enabled", "binary", "required", "after", "active_when", "config"}
)

// Enumerations.
var (
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"auto", "text", "json"}
	activeWhen = []string{ActiveAlways, ActiveMaster}
)

// config decodes the root node of a sitelink.yaml.
func (d *decoder) config(root *yaml.Node) *Config {
	c := Default()
	c.nodes = map[string]*pluginNodes{}
	if isNull(root) {
		return c
	}
	root = deref(root)
	if root.Kind != yaml.MappingNode {
		d.errAt(root, "expected a mapping with the keys daemon and plugins at the top level, got %s", describe(root))
		return c
	}
	var afters map[string][]*yaml.Node
	present := d.fields(root, topKeys, func(name string, key, val *yaml.Node) {
		switch name {
		case "daemon":
			d.daemon(&c.Daemon, val)
		case "plugins":
			afters = d.plugins(c, val)
		}
	})
	c.pluginsKey = present["plugins"]
	d.checkAfter(c, afters)
	return c
}

// daemon decodes the daemon: section into dm (which holds the defaults).
func (d *decoder) daemon(dm *Daemon, n *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		d.errAt(n, "daemon: expected a mapping, got %s", describe(n))
		return
	}
	var interval, timeout *yaml.Node
	d.fields(n, known{"daemon", daemonKeys}, func(name string, key, v *yaml.Node) {
		path := "daemon." + name
		switch name {
		case "plugin_dir":
			setIf(&dm.PluginDir)(d.absPath(path, v))
		case "plugins_d":
			setIf(&dm.PluginsD)(d.absPath(path, v))
		case "state_dir":
			setIf(&dm.StateDir)(d.absPath(path, v))
		case "runtime_dir":
			setIf(&dm.RuntimeDir)(d.absPath(path, v))
		case "socket":
			setIf(&dm.Socket)(d.absPath(path, v))
		case "plugin_user":
			setIf(&dm.PluginUser)(d.user(path, v))
		case "log_level":
			setIf(&dm.LogLevel)(d.enum(path, v, logLevels...))
		case "log_format":
			setIf(&dm.LogFormat)(d.enum(path, v, logFormats...))
		case "health_interval":
			if setIf(&dm.HealthInterval)(d.duration(path, v)) {
				interval = v
			}
		case "health_timeout":
			if setIf(&dm.HealthTimeout)(d.duration(path, v)) {
				timeout = v
			}
		case "stop_timeout":
			setIf(&dm.StopTimeout)(d.duration(path, v))
		case "restart":
			d.restart(&dm.Restart, v)
		case "metrics_listen":
			if s, ok := d.str(path, v); ok && d.listenAddr(path, v, s) {
				dm.MetricsListen = s
			}
		}
	})
	if (interval != nil || timeout != nil) && dm.HealthTimeout > dm.HealthInterval {
		at := timeout
		if at == nil {
			at = interval
		}
		d.errAt(at, "daemon.health_timeout (%s) must not be longer than daemon.health_interval (%s)",
			formatDuration(dm.HealthTimeout), formatDuration(dm.HealthInterval))
	}
}

// setIf returns a function that stores v in dst when ok, for the (value, ok) getters.
func setIf[T any](dst *T) func(v T, ok bool) bool {
	return func(v T, ok bool) bool {
		if ok {
			*dst = v
		}
		return ok
	}
}

// listenAddr checks a host:port for a TCP listener.
func (d *decoder) listenAddr(path string, n *yaml.Node, s string) bool {
	if s == "" {
		return true
	}
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		d.errAt(n, "%s: expected host:port (e.g. 127.0.0.1:9101 or :9101), got %q", path, truncate(s))
		return false
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		d.errAt(n, "%s: port must be a number from 1 to 65535, got %q", path, truncate(port))
		return false
	}
	return true
}

// restart decodes daemon.restart.
func (d *decoder) restart(r *Restart, n *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		d.errAt(n, "daemon.restart: expected a mapping, got %s", describe(n))
		return
	}
	d.fields(n, known{"daemon.restart", restartKeys}, func(name string, key, v *yaml.Node) {
		path := "daemon.restart." + name
		switch name {
		case "max":
			if m, ok := d.integer(path, v); ok {
				if m < 1 {
					d.errAt(v, "%s: must be at least 1, got %d", path, m)
				} else {
					r.Max = m
				}
			}
		case "window":
			setIf(&r.Window)(d.duration(path, v))
		case "backoff_max":
			setIf(&r.BackoffMax)(d.duration(path, v))
		}
	})
}

// plugins decodes the plugins: mapping into c.Plugins. It returns each plugin's
// `after` item nodes, for checkAfter.
func (d *decoder) plugins(c *Config, n *yaml.Node) map[string][]*yaml.Node {
	afters := map[string][]*yaml.Node{}
	if n.Kind != yaml.MappingNode {
		d.errAt(n, "plugins: expected a mapping of plugin name to settings, got %s", describe(n))
		return afters
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		if !d.step(kn) {
			break
		}
		name, ok := d.key("plugins", kn)
		if !ok {
			continue
		}
		if first, dup := seen[name]; dup {
			d.errAt(kn, "plugins: plugin %q is configured twice (first at %d:%d)", truncate(name), first.Line, first.Column)
			continue
		}
		seen[name] = kn
		if !nameRE.MatchString(name) {
			d.errAt(kn, "plugins: invalid plugin name %q: must match ^[a-z][a-z0-9_-]{0,31}$", truncate(name))
		}
		p := defaultPlugin(name)
		p.Pos = Pos{Line: kn.Line, Col: kn.Column}
		pn := &pluginNodes{key: kn}
		afters[name] = d.plugin(&p, pn, deref(vn))
		c.Plugins = append(c.Plugins, p)
		c.nodes[name] = pn
	}
	return afters
}

// plugin decodes one plugin's settings into p (which holds the defaults).
func (d *decoder) plugin(p *Plugin, pn *pluginNodes, n *yaml.Node) []*yaml.Node {
	section := "plugins." + p.Name
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		d.errAt(n, "%s: expected a mapping of plugin settings (%s), got %s", section, strings.Join(pluginKeys, ", "), describe(n))
		return nil
	}
	var after []*yaml.Node
	d.fields(n, known{section, pluginKeys}, func(name string, key, v *yaml.Node) {
		path := section + "." + name
		switch name {
		case "enabled":
			setIf(&p.Enabled)(d.boolean(path, v))
		case "binary":
			if s, ok := d.str(path, v); ok {
				if s != "" && !strings.HasPrefix(s, "/") {
					d.errAt(v, "%s: must be an absolute path (or empty for the default), got %q", path, truncate(s))
				} else {
					p.Binary = s
				}
			}
		case "required":
			setIf(&p.Required)(d.boolean(path, v))
		case "after":
			d.seq(path, "plugin names", v, func(i int, item, use *yaml.Node) {
				s, ok := d.str(fmt.Sprintf("%s[%d]", path, i), item)
				if !ok {
					return
				}
				if slices.Contains(p.After, s) {
					d.errAt(use, "%s: %q is listed twice", path, truncate(s))
					return
				}
				p.After = append(p.After, s)
				after = append(after, use)
			})
		case "active_when":
			setIf(&p.ActiveWhen)(d.enum(path, v, activeWhen...))
		case "config":
			pn.configKey = key
			pn.config = v
			if v.Kind != yaml.MappingNode {
				d.errAt(v, "%s: expected a mapping of the plugin's settings, got %s", path, describe(v))
				return
			}
			var buf strings.Builder
			if d.toJSON(path, v, &buf) {
				p.Config = json.RawMessage(buf.String())
			}
		}
	})
	return after
}

// checkAfter reports `after` entries naming unknown or disabled plugins, and cycles.
func (d *decoder) checkAfter(c *Config, afters map[string][]*yaml.Node) {
	byName := map[string]*Plugin{}
	for i := range c.Plugins {
		byName[c.Plugins[i].Name] = &c.Plugins[i]
	}
	names := make([]string, len(c.Plugins))
	for i, p := range c.Plugins {
		names[i] = p.Name
	}
	graph := map[string][]string{}
	for _, p := range c.Plugins {
		for i, dep := range p.After {
			at := afters[p.Name][i]
			path := "plugins." + p.Name + ".after"
			q, ok := byName[dep]
			switch {
			case !ok:
				msg := fmt.Sprintf("%s: no plugin named %q is configured", path, truncate(dep))
				if s := closest(dep, names); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				d.errAt(at, "%s", msg)
				continue
			case dep == p.Name:
				d.errAt(at, "%s: a plugin cannot wait for itself", path)
				continue
			case p.Enabled && !q.Enabled:
				d.errAt(at, "%s: plugin %q is disabled (enabled: false), so %s would never start", path, dep, p.Name)
			}
			graph[p.Name] = append(graph[p.Name], dep)
		}
	}
	for _, cyc := range findCycles(names, graph) {
		// Report at the first plugin's after entry naming the next one.
		p := byName[cyc[0]]
		at := afters[p.Name][slices.Index(p.After, cyc[1])]
		d.errAt(at, "plugins.%s.after: dependency cycle: %s", p.Name, strings.Join(cyc, " -> "))
	}
}
