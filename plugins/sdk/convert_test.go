package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sitelink/sitelink/plugins/sdk/pluginpb"
)

func TestEventRoundTrip(t *testing.T) {
	ev := Event{Type: EventRole, Source: "vrrp", Time: time.Unix(1700000000, 123),
		Attrs: map[string]string{"role": "MASTER"}, Data: json.RawMessage(`{"prio":100}`), Retain: true, Message: "became master"}
	got := EventFromProto(EventToProto(ev))
	if !reflect.DeepEqual(got, ev) {
		t.Fatalf("round trip %+v, want %+v", got, ev)
	}
	zero := EventFromProto(EventToProto(Event{Type: "x"}))
	if !zero.Time.IsZero() {
		t.Fatalf("zero time came back as %v", zero.Time)
	}
}

func TestLogRecordsRoundTrip(t *testing.T) {
	recs := []LogRecord{{Time: time.Unix(5, 6), Source: "a", Data: json.RawMessage(`"text"`)}, {Source: "b", Data: json.RawMessage(`{}`)}}
	got := LogRecordsFromProto(LogRecordsToProto(recs))
	if !reflect.DeepEqual(got, recs) {
		t.Fatalf("round trip %+v, want %+v", got, recs)
	}
	if len(LogRecordsFromProto(nil)) != 0 {
		t.Fatal("nil records")
	}
}

func TestRoles(t *testing.T) {
	for _, r := range []Role{RoleMaster, RoleBackup, RoleFault, RoleUnknown} {
		if RoleFromProto(RoleToProto(r)) != r {
			t.Errorf("%s does not survive the wire", r)
		}
	}
	for in, want := range map[string]Role{"MASTER": RoleMaster, "master": RoleMaster, "Backup": RoleBackup,
		"fault": RoleFault, "": RoleUnknown, "primary": RoleUnknown, "MASTERX": RoleUnknown} {
		if got := ParseRole(in); got != want {
			t.Errorf("ParseRole(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestHealth(t *testing.T) {
	for h, want := range map[Health]Health{HealthOK: HealthOK, "": HealthOK, HealthDegraded: HealthDegraded,
		HealthDown: HealthDown, HealthUnknown: HealthUnknown, "weird": HealthUnknown} {
		if got := HealthFromProto(healthToProto(h)); got != want {
			t.Errorf("health %q came back as %q, want %q", h, got, want)
		}
	}
}

func TestInfoToProto(t *testing.T) {
	info := Info{Name: "n", Version: "1.2", Capabilities: []string{"CAP_NET_ADMIN"}, KernelFacing: true,
		Actions: []Action{
			{Name: "show", Args: []Arg{{Name: "n", Type: ArgInt, Required: true, Default: "1"}}, Run: func(context.Context, Args) (any, error) { return nil, nil }},
			{Name: "follow", Mutating: true, Stream: func(context.Context, Args, func(any) error) error { return nil }},
		},
		Events: []EventSpec{{Type: "tunnel", Description: "d"}}}
	p := InfoToProto(info, []string{"logsink"})
	if p.GetName() != "n" || !reflect.DeepEqual(p.GetApiVersions(), []int32{APIVersion}) || !p.GetKernelFacing() ||
		!reflect.DeepEqual(p.GetProvides(), []string{"logsink"}) || len(p.GetEvents()) != 1 {
		t.Fatalf("info = %v", p)
	}
	if a := p.GetActions()[0]; a.GetStreaming() || a.GetArgs()[0].GetType() != pluginpb.ArgType_ARG_TYPE_INT || !a.GetArgs()[0].GetRequired() || a.GetArgs()[0].GetDefault() != "1" {
		t.Fatalf("action 0 = %v", a)
	}
	if a := p.GetActions()[1]; !a.GetStreaming() || !a.GetMutating() {
		t.Fatalf("action 1 = %v", a)
	}
	info.APIVersions = []int{1, 2}
	if got := InfoToProto(info, nil).GetApiVersions(); !reflect.DeepEqual(got, []int32{1, 2}) {
		t.Fatalf("api versions = %v", got)
	}
}

func TestWrap(t *testing.T) {
	if wrap("x", nil) != nil {
		t.Fatal("nil error wrapped")
	}
	gone := wrap("status", status.Error(codes.Unavailable, "connection refused"))
	if !errors.Is(gone, ErrPluginGone) || gone.Error() != "status: plugin process is gone (connection refused)" {
		t.Fatalf("unavailable = %v", gone)
	}
	for _, c := range []codes.Code{codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.Internal, codes.DeadlineExceeded} {
		err := wrap("action show", status.Error(c, "why"))
		var ce *CallError
		if !errors.As(err, &ce) || ce.Code != c || err.Error() != "action show: why" || errors.Is(err, ErrPluginGone) {
			t.Errorf("code %s: %#v", c, err)
		}
		if status.Code(err) != c {
			t.Errorf("code %s lost across another hop: %s", c, status.Code(err))
		}
	}
	plain := errors.New("boom")
	if err := wrap("init", plain); !errors.Is(err, plain) || err.Error() != "init: boom" {
		t.Fatalf("plain = %v", err)
	}
}

func TestToStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code codes.Code
	}{
		{&ArgError{Msg: "bad"}, codes.InvalidArgument},
		{fmt.Errorf("action: %w", &ArgError{Msg: "bad"}), codes.InvalidArgument},
		{FieldErrors{{Path: "a", Message: "b"}}, codes.InvalidArgument},
		{fmt.Errorf("wait: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{context.Canceled, codes.Canceled},
		{status.Error(codes.NotFound, "nope"), codes.NotFound},
		{fmt.Errorf("start: %w", status.Error(codes.NotFound, "nope")), codes.NotFound},
		// A host service that is unavailable is not the plugin being gone.
		{fmt.Errorf("append: %w", status.Error(codes.Unavailable, "no log cache")), codes.FailedPrecondition},
		{errors.New("boom"), codes.Unknown},
	} {
		if got := status.Code(toStatus(tc.err)); got != tc.code {
			t.Errorf("%v: code %s, want %s", tc.err, got, tc.code)
		}
	}
}
