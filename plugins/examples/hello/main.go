// Command hello is an example vendor plugin for Sitelink. It lives in its own Go module
// and imports nothing of Sitelink but the SDK (plugins/sdk), which proves the SDK is
// enough to write, test and ship a plugin. See docs/plugin-sdk.md.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/sdk/metrics"
)

// config is the plugin's section of sitelink.yaml.
type config struct {
	Greeting string `json:"greeting"`
	Target   string `json:"target"`
}

const schema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "greeting": {"type": "string", "minLength": 1, "description": "how to greet"},
    "target":   {"type": "string", "description": "whom to greet"}
  },
  "additionalProperties": false
}`

// hello greets. It counts its greetings, reports them in Status and as a metric, and
// follows the connector's HA role.
type hello struct {
	sdk.Base
	greeted atomic.Uint64
	metric  *metrics.Counter

	mu   sync.Mutex
	cfg  config
	role sdk.Role
}

func (h *hello) Info() sdk.Info {
	return sdk.Info{
		Name:         "hello",
		Version:      "1.0.0",
		Description:  "an example vendor plugin that greets",
		ConfigSchema: schema,
		Actions: []sdk.Action{{
			Name:        "greet",
			Description: "say hello",
			Args:        []sdk.Arg{{Name: "name", Type: sdk.ArgString, Description: "whom to greet (default: the configured target)"}},
			Run:         h.greet,
		}},
		Events: []sdk.EventSpec{{Type: "hello.greeted", Description: "somebody was greeted"}},
	}
}

func (h *hello) Init(ctx context.Context, host sdk.Host) error {
	if err := h.Base.Init(ctx, host); err != nil {
		return err
	}
	h.metric = metrics.NewCounter("hello_greetings_total", "Greetings said.")
	host.Metrics().MustRegister(h.metric)
	return nil
}

func (h *hello) Configure(_ context.Context, raw json.RawMessage, validateOnly bool) error {
	c := config{Greeting: "Hello", Target: "world"}
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return err
	}
	if c.Greeting == "" {
		return sdk.FieldErrors{{Path: "greeting", Message: "must not be empty"}}
	}
	if !validateOnly {
		h.mu.Lock()
		h.cfg = c
		h.mu.Unlock()
	}
	return nil
}

func (h *hello) Start(_ context.Context, role sdk.Role) error {
	h.mu.Lock()
	h.role = role
	h.mu.Unlock()
	h.Host().Logger().Info("hello started", "role", string(role))
	return nil
}

func (h *hello) Status(context.Context) sdk.Status {
	n := h.greeted.Load()
	return sdk.Status{Health: sdk.HealthOK, Summary: fmt.Sprintf("%d greetings", n),
		Counters: map[string]uint64{"greetings": n}}
}

func (h *hello) greet(ctx context.Context, args sdk.Args) (any, error) {
	h.mu.Lock()
	c := h.cfg
	h.mu.Unlock()
	name := c.Target
	if args.Has("name") {
		name = args.String("name")
	}
	h.greeted.Add(1)
	h.metric.Inc()
	msg := fmt.Sprintf("%s, %s!", c.Greeting, name)
	if err := h.Host().Publish(ctx, sdk.Event{Type: "hello.greeted", Attrs: map[string]string{"name": name}, Message: msg}); err != nil {
		return nil, err
	}
	return map[string]string{"message": msg}, nil
}

func main() { sdk.Serve(&hello{}) }
