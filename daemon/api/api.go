// Package api holds the JSON types of sitelinkd's admin API (version 1), shared by the
// daemon's admin socket server and by sitelinkctl. Field names are the wire format: only
// add fields, never rename them.
package api

import (
	"encoding/json"
	"time"
)

// Version is the admin API version; paths start with /v1.
const Version = "v1"

// Daemon states.
const (
	DaemonStarting  = "starting"
	DaemonRunning   = "running"
	DaemonDegraded  = "degraded" // running, but a plugin failed or reports bad health
	DaemonReloading = "reloading"
	DaemonStopping  = "stopping"
)

// Plugin states as the supervisor sees them.
const (
	PluginStarting = "starting" // launching, handshaking, configuring
	PluginRunning  = "running"
	PluginStandby  = "standby"  // runs, but inactive: active_when: master and this node is not master
	PluginBackoff  = "backoff"  // exited; waiting to be restarted
	PluginFailed   = "failed"   // restarted too often; waits for an operator (`sitelinkctl plugins restart`)
	PluginStopped  = "stopped"  // stopped by the daemon (shutdown, removed from config)
	PluginDisabled = "disabled" // disabled in config or by `sitelinkctl plugins disable`
)

// Status is GET /v1/status.
type Status struct {
	Version    string    `json:"version"`
	State      string    `json:"state"`
	StatusLine string    `json:"status_line"` // the one-line summary systemd shows
	Role       string    `json:"role"`        // MASTER, BACKUP, FAULT or UNKNOWN
	PID        int       `json:"pid"`
	StartedAt  time.Time `json:"started_at"`
	ConfigFile string    `json:"config_file"`
	// LastReload is when the config was last (re)loaded successfully.
	LastReload time.Time `json:"last_reload"`
	// ConfigError is the error of the last rejected reload ("" when the last reload worked).
	ConfigError string         `json:"config_error,omitempty"`
	Plugins     []PluginStatus `json:"plugins"`
}

// PluginStatus is one plugin, in GET /v1/status, /v1/plugins and /v1/plugins/NAME.
type PluginStatus struct {
	Name        string   `json:"name"`
	Version     string   `json:"version,omitempty"`
	Description string   `json:"description,omitempty"`
	State       string   `json:"state"`
	Health      string   `json:"health"` // ok, degraded, down, unknown
	Reasons     []string `json:"reasons,omitempty"`
	Summary     string   `json:"summary,omitempty"`
	PID         int      `json:"pid,omitempty"`
	// Restarts counts restarts since the daemon started.
	Restarts   int       `json:"restarts"`
	LastExit   string    `json:"last_exit,omitempty"` // why the last process ended
	Since      time.Time `json:"since"`               // when State was entered
	ActiveWhen string    `json:"active_when"`         // always or master
	Required   bool      `json:"required"`
	Binary     string    `json:"binary"`
	Vendor     bool      `json:"vendor"` // from a plugins.d manifest
	APIVersion int       `json:"api_version,omitempty"`
	// Capabilities are the Linux capabilities the plugin runs with.
	Capabilities []string          `json:"capabilities,omitempty"`
	Counters     map[string]uint64 `json:"counters,omitempty"`
	Details      json.RawMessage   `json:"details,omitempty"`
	Actions      []ActionSpec      `json:"actions,omitempty"`
}

// ActionSpec describes a plugin action.
type ActionSpec struct {
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	Args        []ArgSpec `json:"args,omitempty"`
	Streaming   bool      `json:"streaming,omitempty"`
	Mutating    bool      `json:"mutating,omitempty"`
}

// ArgSpec describes an action argument. Type is string, int, bool, duration or time.
type ArgSpec struct {
	Name        string `json:"name"`
	Type        string `json:"type"`
	Required    bool   `json:"required,omitempty"`
	Default     string `json:"default,omitempty"`
	Description string `json:"description,omitempty"`
}

// ActionRequest is the body of POST /v1/plugins/NAME/actions/ACTION.
type ActionRequest struct {
	Args map[string]string `json:"args,omitempty"`
}

// ReloadResult is POST /v1/reload.
type ReloadResult struct {
	Added     []string `json:"added,omitempty"`
	Removed   []string `json:"removed,omitempty"`
	Changed   []string `json:"changed,omitempty"`
	Unchanged []string `json:"unchanged,omitempty"`
	// DaemonChanged lists daemon settings that changed and need a restart to apply.
	DaemonChanged []string `json:"daemon_changed,omitempty"`
}

// ConfigView is GET /v1/config.
type ConfigView struct {
	File string `json:"file"`
	// YAML is the effective config (defaults filled in).
	YAML string `json:"yaml"`
}

// ConfigCheck is POST /v1/config/check (body: the YAML to check).
type ConfigCheck struct {
	OK     bool     `json:"ok"`
	Errors []string `json:"errors,omitempty"` // FILE:LINE:COL: reason
}

// VersionInfo is GET /v1/version.
type VersionInfo struct {
	Version    string `json:"version"`
	Commit     string `json:"commit,omitempty"`
	BuildDate  string `json:"build_date,omitempty"`
	GoVersion  string `json:"go_version"`
	APIVersion string `json:"api_version"`
	// PluginAPIVersions are the plugin API versions the daemon speaks.
	PluginAPIVersions []int `json:"plugin_api_versions"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	// Code is a stable word scripts can test: not_found, forbidden, invalid_argument,
	// invalid_config, conflict, unavailable, internal.
	Code    string   `json:"code"`
	Message string   `json:"message"`
	Details []string `json:"details,omitempty"`
}

// Event is one line of GET /v1/events (NDJSON stream).
type Event struct {
	Type    string            `json:"type"`
	Source  string            `json:"source"`
	Time    time.Time         `json:"time"`
	Attrs   map[string]string `json:"attrs,omitempty"`
	Message string            `json:"message,omitempty"`
	Data    json.RawMessage   `json:"data,omitempty"`
}
