package config

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"
)

// DefaultPath is where sitelinkd looks for its configuration file.
const DefaultPath = "/etc/sitelink/sitelink.yaml"

// maxFileSize bounds what Load and LoadManifests read from one file.
const maxFileSize = 16 << 20

// Config is a parsed, validated sitelink.yaml.
type Config struct {
	// Source is the file the config was read from (used in error positions).
	Source string
	Daemon Daemon
	// Plugins are the configured plugins in the order they are written.
	Plugins []Plugin

	// nodes keeps, per plugin name, the YAML nodes ErrorAt needs.
	nodes map[string]*pluginNodes
	// pluginsKey is the top-level `plugins:` key, if present.
	pluginsKey *yaml.Node
}

// pluginNodes are the YAML nodes of one plugin's entry.
type pluginNodes struct {
	key       *yaml.Node // the NAME key under plugins:
	configKey *yaml.Node // the `config:` key, or nil
	config    *yaml.Node // the `config:` value, or nil
}

// Daemon is the `daemon:` section.
type Daemon struct {
	// PluginDir holds the built-in plugin binaries (PluginDir/NAME).
	PluginDir string
	// PluginsD holds the vendor plugin manifests (*.yaml).
	PluginsD string
	// StateDir gets one StateDir/plugins/NAME per plugin.
	StateDir string
	// RuntimeDir gets one RuntimeDir/plugins/NAME per plugin.
	RuntimeDir string
	// Socket is the admin API's unix socket.
	Socket string
	// PluginUser is the user plugins run as.
	PluginUser string
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// LogFormat is auto, text or json.
	LogFormat string
	// HealthInterval is the time between health probes; HealthTimeout bounds one probe.
	HealthInterval time.Duration
	HealthTimeout  time.Duration
	// StopTimeout bounds a plugin's graceful stop.
	StopTimeout time.Duration
	Restart     Restart
	// MetricsListen is host:port for Prometheus /metrics over TCP; "" = off.
	MetricsListen string
}

// Restart is the `daemon.restart:` section: how dying plugins are restarted.
type Restart struct {
	// Max restarts within Window before the plugin is failed (>= 1).
	Max    int
	Window time.Duration
	// BackoffMax caps the restart delay (first restart immediate, then 100ms doubling).
	BackoffMax time.Duration
}

// Plugin is one entry under `plugins:`.
type Plugin struct {
	Name    string
	Enabled bool
	// Binary is the executable as written; "" means the plugins.d manifest's path if a
	// manifest has this name, else Daemon.PluginDir/NAME (see BinaryPath).
	Binary string
	// Required plugins must run for the daemon to be READY.
	Required bool
	// After names plugins that must be running before this one starts.
	After []string
	// ActiveWhen is "always" or "master" (runs only while the HA role is master).
	ActiveWhen string
	// Config is the plugin's own section as JSON ("{}" when absent).
	Config json.RawMessage
	// Pos is where the plugin's name is written in the file.
	Pos Pos
}

// Pos is a 1-based line and column in a file (0 when unknown).
type Pos struct {
	Line int
	Col  int
}

// Enum values.
const (
	ActiveAlways = "always"
	ActiveMaster = "master"
)

// Default returns the all-defaults configuration (what an empty file gives).
func Default() *Config {
	return &Config{Daemon: Daemon{
		PluginDir:      "/usr/libexec/sitelink/plugins",
		PluginsD:       "/etc/sitelink/plugins.d",
		StateDir:       "/var/lib/sitelink",
		RuntimeDir:     "/run/sitelink",
		Socket:         "/run/sitelink/admin.sock",
		PluginUser:     "sitelink",
		LogLevel:       "info",
		LogFormat:      "auto",
		HealthInterval: 5 * time.Second,
		HealthTimeout:  2 * time.Second,
		StopTimeout:    10 * time.Second,
		Restart:        Restart{Max: 5, Window: 60 * time.Second, BackoffMax: 30 * time.Second},
	}}
}

// defaultPlugin is a plugin entry with every field at its default.
func defaultPlugin(name string) Plugin {
	return Plugin{Name: name, Enabled: true, Required: true, ActiveWhen: ActiveAlways, Config: json.RawMessage("{}")}
}

// Load reads and parses the config file at path. A file that cannot be read is a plain
// wrapped error (errors.Is(err, fs.ErrNotExist) works); problems in it are an *Errors.
func Load(path string) (*Config, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// readFile reads at most maxFileSize bytes of a config file.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	return data, nil
}

// Parse parses and validates a sitelink.yaml; file names the source in errors. Every
// problem found is returned in one *Errors, each as FILE:LINE:COL: reason.
func Parse(file string, data []byte) (*Config, error) {
	d := newDecoder(file)
	root, ok := d.document(data)
	if !ok {
		return nil, d.err()
	}
	c := d.config(root)
	if err := d.err(); err != nil {
		return nil, err
	}
	c.Source = file
	return c, nil
}

// Plugin returns the configured plugin with this name.
func (c *Config) Plugin(name string) (Plugin, bool) {
	for _, p := range c.Plugins {
		if p.Name == name {
			return p, true
		}
	}
	return Plugin{}, false
}

// BinaryPath resolves the executable of p: its `binary:` if set, else the path of the
// manifest with the same name, else d.PluginDir/NAME.
func (p Plugin) BinaryPath(d Daemon, manifests []Manifest) string {
	if p.Binary != "" {
		return p.Binary
	}
	for _, m := range manifests {
		if m.Name == p.Name {
			return m.Path
		}
	}
	return filepath.Join(d.PluginDir, p.Name)
}
