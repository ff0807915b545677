package plugin

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sitelink/sitelink/plugins/proxy/clients"
	"github.com/sitelink/sitelink/plugins/proxy/relay"
	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/sdk/sdktest"
)

func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func TestPluginThroughSDK(t *testing.T) {
	up := echoServer(t)
	p := New()
	h := sdktest.New(t, p)
	info := h.Info()
	if info.GetName() != "proxy" || len(info.GetCapabilities()) != 1 || info.GetCapabilities()[0] != "CAP_NET_BIND_SERVICE" {
		t.Fatalf("info %v", info)
	}
	if err := h.Validate(`{"listeners":[{"name":"x","address":"127.0.0.1:0","mode":"tcp","upstream":"nope"}],"upstreams":{"mc":{"servers":["127.0.0.1:1"]}}}`); err == nil ||
		!strings.Contains(err.Error(), "listeners[0].upstream") {
		t.Fatalf("bad config: %v", err)
	}
	cfg := fmt.Sprintf(`{"listeners":[{"name":"t","address":"127.0.0.1:0","mode":"tcp","upstream":"mc","allow":["127.0.0.2"]}],
		"upstreams":{"mc":{"servers":[%q]}},"limits":{"max_conns":100},"drain_timeout":"300ms"}`, up)
	if err := h.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	if err := h.Start(sdk.RoleMaster); err != nil {
		t.Fatal(err)
	}
	addr := p.srv.Addr("t")
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	// A refused source lands in the audit log.
	d.LocalAddr = &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}
	if r, err := d.Dial("tcp", addr); err == nil {
		_ = r.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.ReadAll(r)
		r.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var found bool
		for _, l := range h.Logs() {
			found = found || (l.Source == AuditSource && strings.Contains(string(l.Data), `"reason":"source"`))
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit record of the refusal: %v", h.Logs())
		}
		time.Sleep(10 * time.Millisecond)
	}
	var list []clients.Info
	if err := h.Action("clients", map[string]string{"sort": "active"}, &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Addr != "127.0.0.2" || list[0].Active != 1 || list[1].Refusals["source"] != 1 {
		t.Fatalf("clients %+v", list)
	}
	if err := h.Action("clients", map[string]string{"sort": "bogus"}, nil); err == nil {
		t.Fatal("bad sort key accepted")
	}
	if _, ok := h.WaitEvent(5*time.Second, func(e sdk.Event) bool {
		return e.Type == EventProxy && e.Attrs["state"] == "online" && e.Attrs["clients"] == "1"
	}); !ok {
		t.Fatalf("no proxy event with 1 client: %v", h.Events())
	}
	metrics := h.Metrics()
	for _, m := range []string{"sitelink_proxy_clients_connected 1", `sitelink_proxy_refusals_total{listener="t",reason="source"} 1`} {
		if !strings.Contains(metrics, m) {
			t.Errorf("metrics lack %q", m)
		}
	}
	var plan PlanResult
	if err := h.Action("plan", map[string]string{"hosts": "6000"}, &plan); err != nil {
		t.Fatal(err)
	}
	if plan.NeededBandwidth != "60.0Mbit" || len(plan.Warnings) == 0 {
		t.Fatalf("plan %+v", plan)
	}
	if st := h.Status(); !strings.Contains(st.GetSummary(), "1 clients") {
		t.Fatalf("status %v", st)
	}
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.WaitEvent(5*time.Second, func(e sdk.Event) bool { return e.Type == EventProxy && e.Attrs["state"] == "offline" }); !ok {
		t.Fatal("no offline event")
	}
	// Start again (HA role gating): the listeners come back.
	if err := h.Start(sdk.RoleMaster); err != nil {
		t.Fatal(err)
	}
	if p.srv.Addr("t") == "" {
		t.Fatal("listener not reopened")
	}
}

func TestPlan(t *testing.T) {
	r := Resources{CPUs: 8, MemBytes: 16 << 30, MaxFiles: 20000}
	cfg, err := relay.ParseConfig(json.RawMessage(`{"upstreams":{"mc":{"servers":["10.0.0.1:443"]}},"limits":{"total_bandwidth":"10Mbit","max_conns":1000}}`))
	if err != nil {
		t.Fatal(err)
	}
	p := Plan(6000, r, cfg)
	if p.NeededBytesPerSec != 6000*1250 || p.MaxConnsWithin60 != 6000 {
		t.Fatalf("%+v", p)
	}
	if len(p.Warnings) != 2 {
		t.Fatalf("warnings %v", p.Warnings)
	}
	if p := Plan(100, r, nil); len(p.Warnings) != 0 || p.SuggestedLimits.MaxConns != 200 {
		t.Fatalf("%+v", p)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestClusterAction runs two proxies as cluster peers: each one's `cluster` action shows
// both, with the other's clients and role; when one goes away the other shows it
// unreachable and still answers.
func TestClusterAction(t *testing.T) {
	up := echoServer(t)
	stA, stB := freeAddr(t), freeAddr(t)
	cfg := func(node, listen, peer string) string {
		return fmt.Sprintf(`{"listeners":[{"name":"t","address":"127.0.0.1:0","mode":"tcp","upstream":"mc"}],
			"upstreams":{"mc":{"servers":[%q]}},"drain_timeout":"300ms",
			"cluster":{"node":%q,"listen":%q,"peers":[%q],"interval":"200ms","timeout":"1s"}}`, up, node, listen, peer)
	}
	pa, pb := New(), New()
	ha, hb := sdktest.New(t, pa), sdktest.New(t, pb)
	if err := ha.Validate(`{"upstreams":{"mc":{"servers":["127.0.0.1:1"]}},"cluster":{"peers":["nope"]}}`); err == nil ||
		!strings.Contains(err.Error(), "cluster.peers[0]") || !strings.Contains(err.Error(), "cluster.listen") {
		t.Fatalf("bad cluster config: %v", err)
	}
	if err := ha.Configure(cfg("px-a", stA, stB)); err != nil {
		t.Fatal(err)
	}
	if err := hb.Configure(cfg("px-b", stB, stA)); err != nil {
		t.Fatal(err)
	}
	if err := ha.Start(sdk.RoleMaster); err != nil {
		t.Fatal(err)
	}
	// px-b is configured but not started (a backup under active_when: master).
	// One client on px-a.
	c, err := net.Dial("tcp", pa.srv.Addr("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitClients(t, pa, 1)

	type row struct {
		Node        string  `json:"node"`
		Address     string  `json:"address"`
		Self        bool    `json:"self"`
		Reachable   bool    `json:"reachable"`
		Online      bool    `json:"online"`
		Role        string  `json:"role"`
		Clients     *int    `json:"clients"`
		Connections *int64  `json:"connections"`
		LastSeen    *string `json:"last_seen"`
		Error       string  `json:"error"`
	}
	view := func(h *sdktest.Harness) []row {
		var rows []row
		if err := h.Action("cluster", nil, &rows); err != nil {
			t.Fatal(err)
		}
		return rows
	}
	rows := view(hb)
	if len(rows) != 2 || !rows[0].Self || rows[0].Node != "px-b" || rows[0].Online || rows[0].Address != stB {
		t.Fatalf("px-b's view, own row: %+v", rows)
	}
	if r := rows[1]; r.Node != "px-a" || !r.Reachable || !r.Online || r.Role != "MASTER" || r.Clients == nil || *r.Clients != 1 ||
		*r.Connections != 1 || r.LastSeen == nil {
		t.Fatalf("px-b's view of px-a: %+v", rows[1])
	}
	if r := view(ha)[1]; r.Node != "px-b" || !r.Reachable || r.Online {
		t.Fatalf("px-a's view of px-b (stopped): %+v", r)
	}
	// px-a's role changes: its peers see it.
	ha.Publish(sdk.Event{Type: sdk.EventRole, Attrs: map[string]string{"role": "BACKUP", "previous": "MASTER"}})
	deadline := time.Now().Add(10 * time.Second)
	for view(hb)[1].Role != "BACKUP" {
		if time.Now().After(deadline) {
			t.Fatalf("px-b does not see px-a's new role: %+v", view(hb))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// px-a goes away (its endpoint closes): px-b's view still answers, px-a unreachable.
	pa.cl.Close()
	rows = view(hb)
	if len(rows) != 2 || rows[1].Reachable || rows[1].Online || rows[1].Clients != nil || rows[1].Error == "" ||
		rows[1].Node != "px-a" || rows[1].LastSeen == nil {
		t.Fatalf("px-b's view with px-a down: %+v", rows)
	}
}

func waitClients(t *testing.T, p *Plugin, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.srv.Clients.Connected() != n {
		if time.Now().After(deadline) {
			t.Fatalf("clients connected %d, want %d", p.srv.Clients.Connected(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
