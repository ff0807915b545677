package main

import (
	"strings"
	"testing"

	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/sdk/sdktest"
)

func TestGreet(t *testing.T) {
	h := sdktest.New(t, &hello{})
	if err := h.Configure(`{"greeting": "Bonjour", "target": "Paris"}`); err != nil {
		t.Fatal(err)
	}
	if err := h.Start(sdk.RoleUnknown); err != nil {
		t.Fatal(err)
	}
	var out map[string]string
	if err := h.Action("greet", map[string]string{"name": "Lyon"}, &out); err != nil {
		t.Fatal(err)
	}
	if out["message"] != "Bonjour, Lyon!" {
		t.Fatalf("greet = %q", out["message"])
	}
	if ev, ok := h.WaitEvent(0, func(e sdk.Event) bool { return e.Type == "hello.greeted" }); !ok || ev.Attrs["name"] != "Lyon" {
		t.Fatalf("event = %+v, %v", ev, ok)
	}
	if st := h.Status(); st.GetCounters()["greetings"] != 1 {
		t.Fatalf("counters = %v", st.GetCounters())
	}
	if m := h.Metrics(); !strings.Contains(m, "hello_greetings_total 1") {
		t.Fatalf("metrics lack the counter:\n%s", m)
	}
}

func TestBadConfig(t *testing.T) {
	h := sdktest.New(t, &hello{})
	err := h.Configure(`{"greeting": "", "colour": "red"}`)
	fes, ok := err.(sdk.FieldErrors)
	if !ok || len(fes) != 1 || fes[0].Path != "colour" {
		t.Fatalf("err = %#v, want an unknown-field error at colour", err)
	}
	err = h.Configure(`{"greeting": ""}`)
	if fes, ok := err.(sdk.FieldErrors); !ok || fes[0].Path != "greeting" {
		t.Fatalf("err = %#v, want an error at greeting", err)
	}
}
