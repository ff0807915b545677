package agent

import (
	"errors"
	"strings"
	"testing"

	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/sdk/sdktest"
)

// These tests run in the test's own network namespace, so they never Start the plugin
// (that would touch interfaces): the real-kernel paths are in internal/e2e.

func TestInfo(t *testing.T) {
	h := sdktest.New(t, New())
	info := h.Info()
	if info.GetName() != "vrrp" || info.GetVersion() != "0.1.0" || !info.GetKernelFacing() {
		t.Fatalf("info %v", info)
	}
	caps := strings.Join(info.GetCapabilities(), ",")
	if caps != "CAP_NET_ADMIN,CAP_NET_RAW" {
		t.Fatalf("capabilities %s", caps)
	}
	var names []string
	for _, a := range info.GetActions() {
		names = append(names, a.GetName())
	}
	if strings.Join(names, ",") != "status,handover,resume" {
		t.Fatalf("actions %v", names)
	}
	if !strings.Contains(info.GetConfigSchema(), `"virtual_ips"`) {
		t.Fatal("no config schema")
	}
}

func TestConfigureReportsFieldErrors(t *testing.T) {
	h := sdktest.New(t, New())
	err := h.Configure(`{"instances":[{"interface":"eth0","vrid":300,"virtual_ips":["192.0.2.9/24"]}]}`)
	var fes sdk.FieldErrors
	if !errors.As(err, &fes) || len(fes) != 1 || fes[0].Path != "instances[0].vrid" {
		t.Fatalf("got %v", err)
	}
	if err := h.Validate(`{"instances":[{"interface":"eth0","vrid":3,"virtual_ips":["192.0.2.9/24"]}]}`); err != nil {
		t.Fatal(err)
	}
	if err := h.Configure(`{"instances":[{"interface":"eth0","vrid":3,"virtual_ips":["192.0.2.9/24"]}]}`); err != nil {
		t.Fatal(err)
	}
	st := h.Status()
	if st.GetSummary() != "stopped (1 instances configured)" {
		t.Fatalf("summary %q", st.GetSummary())
	}
}

func TestValidateOnlyKeepsConfig(t *testing.T) {
	p := New()
	h := sdktest.New(t, p)
	if err := h.Configure(`{"instances":[{"interface":"eth0","vrid":3,"virtual_ips":["192.0.2.9/24"]}]}`); err != nil {
		t.Fatal(err)
	}
	if err := h.Validate(`{"instances":[]}`); err != nil {
		t.Fatal(err)
	}
	if len(p.cfgs) != 1 {
		t.Fatalf("validate-only replaced the config: %d instances", len(p.cfgs))
	}
}

func TestActionsWhenStopped(t *testing.T) {
	h := sdktest.New(t, New())
	var st struct {
		Running   bool   `json:"running"`
		Role      string `json:"role"`
		Instances []any  `json:"instances"`
	}
	if err := h.Action("status", nil, &st); err != nil {
		t.Fatal(err)
	}
	if st.Running || st.Role != "UNKNOWN" || len(st.Instances) != 0 {
		t.Fatalf("status %+v", st)
	}
	if err := h.Action("handover", nil, nil); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Fatalf("handover while stopped: %v", err)
	}
	if err := h.Action("handover", map[string]string{"for": "soon"}, nil); err == nil {
		t.Fatal("a bad duration was accepted")
	}
	// Cleanup with an empty journal removes nothing and touches no interface.
	removed, err := h.Cleanup()
	if err != nil || len(removed) != 0 {
		t.Fatalf("cleanup: %v %v", removed, err)
	}
}
