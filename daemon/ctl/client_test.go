package ctl_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/sitelink/sitelink/daemon/admin"
	"github.com/sitelink/sitelink/daemon/ctl"
)

func TestClient(t *testing.T) {
	e := setup(t, admin.Options{})
	c := ctl.NewClient(e.sock)
	ctx := context.Background()
	st, err := c.Status(ctx)
	if err != nil || st.Role != "MASTER" || len(st.Plugins) != 3 {
		t.Fatalf("Status: %+v %v", st, err)
	}
	ps, err := c.Plugins(ctx)
	if err != nil || len(ps) != 3 {
		t.Fatalf("Plugins: %v", err)
	}
	_, err = c.Plugin(ctx, "nope")
	var ae *ctl.APIError
	if !errors.As(err, &ae) || ae.Status != 404 || ae.Code != "not_found" || ctl.ExitCode(err) != ctl.ExitNotFound {
		t.Errorf("Plugin(nope): %v", err)
	}
	// A streaming action without an item callback: the items as a JSON array.
	e.b.Stream = func(_ context.Context, _, _ string, _ map[string]string, emit func(json.RawMessage) error) error {
		for i := range 3 {
			if err := emit(json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
				return err
			}
		}
		return nil
	}
	res, err := c.Action(ctx, "logcache", "tail", nil, nil)
	if err != nil || string(res) != `[{"n":0},{"n":1},{"n":2}]` {
		t.Errorf("collected stream: %s %v", res, err)
	}
	var n int
	res, err = c.Action(ctx, "logcache", "tail", nil, func(json.RawMessage) error { n++; return nil })
	if err != nil || res != nil || n != 3 {
		t.Errorf("streamed: %s %v %d", res, err, n)
	}
	res, err = c.Action(ctx, "tunnel", "peers", nil, nil)
	if err != nil || string(res) != `{"action":"peers","args":null,"plugin":"tunnel"}`+"\n" {
		t.Errorf("result: %s %v", res, err)
	}
	// Cancelled by the caller: the context's error, not "not running".
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Status(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
