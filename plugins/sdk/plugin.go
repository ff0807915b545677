package sdk

import (
	"context"
	"encoding/json"
	"time"
)

// APIVersion is the plugin API version this SDK speaks.
const APIVersion = 1

// Plugin is what a plugin implements. The host calls Init once, then Configure (again on
// every config change), Start and Stop (possibly several times, e.g. when the HA role
// changes), Status and Cleanup at any time after Init.
type Plugin interface {
	// Info describes the plugin; it must not depend on config.
	Info() Info
	// Init hands the plugin its Host. It is called once, before anything else but Info.
	Init(ctx context.Context, host Host) error
	// Configure applies the whole desired config (the plugin's section of sitelink.yaml,
	// as JSON). It must be idempotent. A bad config returns FieldErrors (see
	// DecodeConfig) and leaves the previous config in force. With validateOnly it only
	// checks.
	Configure(ctx context.Context, config json.RawMessage, validateOnly bool) error
	// Start begins the plugin's work. role is the connector's HA role.
	Start(ctx context.Context, role Role) error
	// Stop ends the work before ctx's deadline. The process stays and may Start again.
	Stop(ctx context.Context) error
	// Status reports health; it must answer quickly.
	Status(ctx context.Context) Status
	// Cleanup removes what the plugin left in the kernel, also after a crash of a
	// previous process. It returns what it removed.
	Cleanup(ctx context.Context) ([]string, error)
}

// LogSink is implemented by a plugin that stores the appliance's logs (the built-in
// logcache). The SDK then serves the LogSink service and announces "logsink".
type LogSink interface {
	// AppendLogs stores records and returns once they are as durable as the sink's
	// policy says, with the sequence numbers given to the first and last record.
	AppendLogs(ctx context.Context, records []LogRecord) (first, last uint64, err error)
}

// Info describes a plugin.
type Info struct {
	// Name is the plugin's own name, e.g. "tunnel".
	Name string
	// Version is the plugin's version.
	Version string
	// Description is one line for humans.
	Description string
	// APIVersions are the plugin API versions served; empty means {APIVersion}.
	APIVersions []int
	// Capabilities are the Linux capabilities the plugin needs, e.g. "CAP_NET_ADMIN".
	Capabilities []string
	// ConfigSchema is a JSON Schema for the plugin's config section (may be empty).
	ConfigSchema string
	// Actions are the operations the CLI and D-Bus can invoke.
	Actions []Action
	// Events are the event types the plugin publishes.
	Events []EventSpec
	// KernelFacing says the plugin changes kernel state, so `sitelinkd --cleanup`
	// calls its Cleanup.
	KernelFacing bool
}

// EventSpec documents an event type a plugin publishes.
type EventSpec struct {
	Type        string
	Description string
}

// Role is the connector's HA role.
type Role string

// The HA roles. RoleUnknown means no redundancy is configured (or not known yet).
const (
	RoleUnknown Role = "UNKNOWN"
	RoleMaster  Role = "MASTER"
	RoleBackup  Role = "BACKUP"
	RoleFault   Role = "FAULT"
)

// Health says whether a plugin does its job.
type Health string

// The health values.
const (
	HealthUnknown  Health = "unknown"
	HealthOK       Health = "ok"
	HealthDegraded Health = "degraded"
	HealthDown     Health = "down"
)

// Status is what a plugin reports about itself.
type Status struct {
	// Health; the zero value is reported as HealthOK.
	Health Health
	// Reasons explain a health other than OK.
	Reasons []string
	// Summary is one phrase for the daemon's status line ("tunnel up (gw-a)").
	Summary string
	// Details is any JSON-encodable value with plugin-specific details.
	Details any
	// Counters are monotonically increasing numbers.
	Counters map[string]uint64
}

// Event is a fact one plugin tells the others (and the operator) about.
type Event struct {
	// Type, e.g. "role" or "tunnel".
	Type string
	// Source is the publishing plugin's name; the host fills it in.
	Source string
	// Time is set by the host when zero.
	Time time.Time
	// Attrs are short key/value facts ("state": "up").
	Attrs map[string]string
	// Data is an optional JSON payload.
	Data json.RawMessage
	// Retain keeps the latest event of this type from this source for late subscribers.
	Retain bool
	// Message is a sentence for logs and the audit trail.
	Message string
}

// The well-known event types.
const (
	// EventRole carries attrs "role" (MASTER, BACKUP, FAULT) and "previous".
	EventRole = "role"
	// EventTunnel carries attrs "state" ("up" or "down") and "gateway".
	EventTunnel = "tunnel"
	// EventPlugin is published by the daemon: attrs "plugin", "state", "previous".
	EventPlugin = "plugin"
	// EventAudit is published by the daemon for admin actions: attrs "action", "user".
	EventAudit = "audit"
)

// LogRecord is a record for the appliance's log cache.
type LogRecord struct {
	// Time is set by the host when zero.
	Time time.Time
	// Source says who produced it.
	Source string
	// Data is a JSON value: an object, or a JSON string for text.
	Data json.RawMessage
}
