package config

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
)

// Changes is what a reload changes.
type Changes struct {
	// DaemonChanged is true when any daemon: key differs; DaemonKeys lists them
	// ("log_level", "restart.max", …) in file order.
	DaemonChanged bool
	DaemonKeys    []string
	// Added and Changed are in the new file's order, Removed in the old one's.
	Added     []string
	Removed   []string
	Changed   []string
	Unchanged []string
}

// Diff compares two configurations plugin by plugin. A plugin is Changed when any of
// its settings differ; its config section is compared as canonical JSON (key order and
// number spelling do not matter), `after` as a set. Positions never count. A nil
// config is an empty one.
func Diff(old, new *Config) Changes {
	if old == nil {
		old = &Config{Daemon: Default().Daemon}
	}
	if new == nil {
		new = &Config{Daemon: Default().Daemon}
	}
	var ch Changes
	ch.DaemonKeys = daemonDiff(old.Daemon, new.Daemon)
	ch.DaemonChanged = len(ch.DaemonKeys) > 0
	for _, p := range new.Plugins {
		q, ok := old.Plugin(p.Name)
		switch {
		case !ok:
			ch.Added = append(ch.Added, p.Name)
		case pluginEqual(p, q):
			ch.Unchanged = append(ch.Unchanged, p.Name)
		default:
			ch.Changed = append(ch.Changed, p.Name)
		}
	}
	for _, p := range old.Plugins {
		if _, ok := new.Plugin(p.Name); !ok {
			ch.Removed = append(ch.Removed, p.Name)
		}
	}
	return ch
}

// daemonDiff lists the daemon keys whose values differ.
func daemonDiff(a, b Daemon) []string {
	var out []string
	add := func(key string, differ bool) {
		if differ {
			out = append(out, key)
		}
	}
	add("plugin_dir", a.PluginDir != b.PluginDir)
	add("plugins_d", a.PluginsD != b.PluginsD)
	add("state_dir", a.StateDir != b.StateDir)
	add("runtime_dir", a.RuntimeDir != b.RuntimeDir)
	add("socket", a.Socket != b.Socket)
	add("plugin_user", a.PluginUser != b.PluginUser)
	add("log_level", a.LogLevel != b.LogLevel)
	add("log_format", a.LogFormat != b.LogFormat)
	add("health_interval", a.HealthInterval != b.HealthInterval)
	add("health_timeout", a.HealthTimeout != b.HealthTimeout)
	add("stop_timeout", a.StopTimeout != b.StopTimeout)
	add("restart.max", a.Restart.Max != b.Restart.Max)
	add("restart.window", a.Restart.Window != b.Restart.Window)
	add("restart.backoff_max", a.Restart.BackoffMax != b.Restart.BackoffMax)
	add("metrics_listen", a.MetricsListen != b.MetricsListen)
	return out
}

// pluginEqual compares two plugin entries semantically.
func pluginEqual(a, b Plugin) bool {
	return a.Name == b.Name && a.Enabled == b.Enabled && a.Binary == b.Binary && a.Required == b.Required &&
		a.ActiveWhen == b.ActiveWhen && sameSet(a.After, b.After) && JSONEqual(a.Config, b.Config)
}

func sameSet(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(slices.Compact(x), slices.Compact(y))
}

// JSONEqual reports whether two JSON texts are the same value: object key order,
// white space and number spelling (1, 1.0, 1e0) do not matter. Empty means {}.
// Texts that are not valid JSON compare as bytes.
func JSONEqual(a, b json.RawMessage) bool {
	ca, errA := canonicalJSON(a)
	cb, errB := canonicalJSON(b)
	if errA != nil || errB != nil {
		return bytes.Equal(a, b)
	}
	return bytes.Equal(ca, cb)
}

// canonicalJSON re-encodes JSON with sorted keys and normalised numbers.
func canonicalJSON(b json.RawMessage) ([]byte, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		b = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(normalizeNumbers(v))
}

// normalizeNumbers turns json.Numbers into one spelling per value.
func normalizeNumbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalizeNumbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = normalizeNumbers(e)
		}
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return json.Number(strconv.FormatInt(i, 10))
		}
		if u, err := strconv.ParseUint(string(x), 10, 64); err == nil {
			return json.Number(strconv.FormatUint(u, 10))
		}
		if f, err := strconv.ParseFloat(string(x), 64); err == nil {
			if f == float64(int64(f)) && f > -1<<53 && f < 1<<53 {
				return json.Number(strconv.FormatInt(int64(f), 10))
			}
			return json.Number(strconv.FormatFloat(f, 'g', -1, 64))
		}
	}
	return v
}
