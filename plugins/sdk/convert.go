package sdk

import (
	"time"

	"github.com/sitelink/sitelink/plugins/sdk/pluginpb"
)

// EventToProto converts an Event for the wire.
func EventToProto(ev Event) *pluginpb.Event {
	var ns int64
	if !ev.Time.IsZero() {
		ns = ev.Time.UnixNano()
	}
	return &pluginpb.Event{Type: ev.Type, Source: ev.Source, TimeUnixNano: ns, Attrs: ev.Attrs,
		DataJson: ev.Data, Retain: ev.Retain, Message: ev.Message}
}

// EventFromProto converts an Event from the wire.
func EventFromProto(pe *pluginpb.Event) Event {
	ev := Event{Type: pe.GetType(), Source: pe.GetSource(), Attrs: pe.GetAttrs(), Data: pe.GetDataJson(),
		Retain: pe.GetRetain(), Message: pe.GetMessage()}
	if pe.GetTimeUnixNano() != 0 {
		ev.Time = time.Unix(0, pe.GetTimeUnixNano())
	}
	return ev
}

// LogRecordsToProto converts records for the wire.
func LogRecordsToProto(recs []LogRecord) []*pluginpb.LogRecord {
	out := make([]*pluginpb.LogRecord, len(recs))
	for i, r := range recs {
		var ns int64
		if !r.Time.IsZero() {
			ns = r.Time.UnixNano()
		}
		out[i] = &pluginpb.LogRecord{TimeUnixNano: ns, Source: r.Source, DataJson: r.Data}
	}
	return out
}

// LogRecordsFromProto converts records from the wire.
func LogRecordsFromProto(recs []*pluginpb.LogRecord) []LogRecord {
	out := make([]LogRecord, len(recs))
	for i, r := range recs {
		out[i] = LogRecord{Source: r.GetSource(), Data: r.GetDataJson()}
		if r.GetTimeUnixNano() != 0 {
			out[i].Time = time.Unix(0, r.GetTimeUnixNano())
		}
	}
	return out
}

// RoleToProto converts a Role for the wire.
func RoleToProto(r Role) pluginpb.Role {
	switch r {
	case RoleMaster:
		return pluginpb.Role_ROLE_MASTER
	case RoleBackup:
		return pluginpb.Role_ROLE_BACKUP
	case RoleFault:
		return pluginpb.Role_ROLE_FAULT
	}
	return pluginpb.Role_ROLE_UNKNOWN
}

// RoleFromProto converts a Role from the wire.
func RoleFromProto(r pluginpb.Role) Role {
	switch r {
	case pluginpb.Role_ROLE_MASTER:
		return RoleMaster
	case pluginpb.Role_ROLE_BACKUP:
		return RoleBackup
	case pluginpb.Role_ROLE_FAULT:
		return RoleFault
	}
	return RoleUnknown
}

// ParseRole reads a role name ("MASTER", case-insensitive); anything else is RoleUnknown.
func ParseRole(s string) Role {
	switch Role(upper(s)) {
	case RoleMaster:
		return RoleMaster
	case RoleBackup:
		return RoleBackup
	case RoleFault:
		return RoleFault
	}
	return RoleUnknown
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 32
		}
	}
	return string(b)
}

func healthToProto(h Health) pluginpb.Health {
	switch h {
	case HealthOK, "":
		return pluginpb.Health_HEALTH_OK
	case HealthDegraded:
		return pluginpb.Health_HEALTH_DEGRADED
	case HealthDown:
		return pluginpb.Health_HEALTH_DOWN
	}
	return pluginpb.Health_HEALTH_UNKNOWN
}

// HealthFromProto converts a Health from the wire.
func HealthFromProto(h pluginpb.Health) Health {
	switch h {
	case pluginpb.Health_HEALTH_OK:
		return HealthOK
	case pluginpb.Health_HEALTH_DEGRADED:
		return HealthDegraded
	case pluginpb.Health_HEALTH_DOWN:
		return HealthDown
	}
	return HealthUnknown
}

func argTypeToProto(t ArgType) pluginpb.ArgType {
	switch t {
	case ArgString:
		return pluginpb.ArgType_ARG_TYPE_STRING
	case ArgInt:
		return pluginpb.ArgType_ARG_TYPE_INT
	case ArgBool:
		return pluginpb.ArgType_ARG_TYPE_BOOL
	case ArgDuration:
		return pluginpb.ArgType_ARG_TYPE_DURATION
	case ArgTime:
		return pluginpb.ArgType_ARG_TYPE_TIME
	}
	return pluginpb.ArgType_ARG_TYPE_UNKNOWN
}

// ArgTypeFromProto converts an ArgType from the wire.
func ArgTypeFromProto(t pluginpb.ArgType) ArgType {
	switch t {
	case pluginpb.ArgType_ARG_TYPE_STRING:
		return ArgString
	case pluginpb.ArgType_ARG_TYPE_INT:
		return ArgInt
	case pluginpb.ArgType_ARG_TYPE_BOOL:
		return ArgBool
	case pluginpb.ArgType_ARG_TYPE_DURATION:
		return ArgDuration
	case pluginpb.ArgType_ARG_TYPE_TIME:
		return ArgTime
	}
	return 0
}

// InfoToProto converts Info for the wire.
func InfoToProto(info Info, provides []string) *pluginpb.InfoResponse {
	resp := &pluginpb.InfoResponse{Name: info.Name, Version: info.Version, Description: info.Description,
		Capabilities: info.Capabilities, ConfigSchema: info.ConfigSchema, Provides: provides,
		KernelFacing: info.KernelFacing}
	versions := info.APIVersions
	if len(versions) == 0 {
		versions = []int{APIVersion}
	}
	for _, v := range versions {
		resp.ApiVersions = append(resp.ApiVersions, int32(v))
	}
	for _, a := range info.Actions {
		spec := &pluginpb.ActionSpec{Name: a.Name, Description: a.Description, Streaming: a.Stream != nil, Mutating: a.Mutating}
		for _, arg := range a.Args {
			spec.Args = append(spec.Args, &pluginpb.ArgSpec{Name: arg.Name, Type: argTypeToProto(arg.Type),
				Required: arg.Required, Description: arg.Description, Default: arg.Default})
		}
		resp.Actions = append(resp.Actions, spec)
	}
	for _, e := range info.Events {
		resp.Events = append(resp.Events, &pluginpb.EventSpec{Type: e.Type, Description: e.Description})
	}
	return resp
}
