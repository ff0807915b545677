package site

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/sitelink/sitelink/plugins/tunnel/tunneltest"
	"github.com/sitelink/sitelink/testenv"
)

// GatewayWAN is gateway n's (from 1) internet address.
func GatewayWAN(n int) string { return fmt.Sprintf("192.0.2.%d", 10+n) }

// GatewayTunnel is gateway n's address inside the tunnel (the connectors' probe target).
func GatewayTunnel(n int) string { return fmt.Sprintf("100.64.%d.1", n) }

// GatewayPlatform is gateway n's address on the platform side (the remote user's next hop).
func GatewayPlatform(n int) string { return fmt.Sprintf("10.9.0.%d", n) }

const gatewayPort = 51820

// buildNetwork makes the switches and hosts, the gateways and their WireGuard
// interfaces; the connectors' hosts are made by newConnector.
func (s *Site) buildNetwork(ctx context.Context) error {
	e := s.env
	var err error
	if s.LAN, err = e.Switch("lan"); err != nil {
		return err
	}
	if s.Internet, err = e.Switch("internet"); err != nil {
		return err
	}
	if s.Platform, err = e.Switch("platform"); err != nil {
		return err
	}
	host := func(name string) *testenv.Host {
		if err != nil {
			return nil
		}
		var h *testenv.Host
		h, err = e.Host(name)
		return h
	}
	s.App, s.Router, s.User, s.MC = host("app"), host("router"), host("user"), host("mc")
	for i := 1; i <= s.opts.Agents; i++ {
		s.Agents = append(s.Agents, host(fmt.Sprintf("agent%d", i)))
	}
	if err != nil {
		return err
	}
	steps := []func() error{
		func() error { return e.Plug(s.Router, "eth0", s.LAN) },
		func() error { return s.Router.AddAddr("eth0", RouterAddr+"/24") },
		func() error { return s.Router.SetSysctl("net.ipv4.ip_forward", "1") },
		// The router sends the client range to the VIP on the same link: no redirects, so
		// the app's packets really take the router's path.
		func() error { return s.Router.SetSysctl("net.ipv4.conf.all.send_redirects", "0") },
		func() error { return s.Router.SetSysctl("net.ipv4.conf.eth0.send_redirects", "0") },
		func() error { return s.Router.AddRoute(ClientPrefix, VIP) },
		func() error { return e.Plug(s.App, "eth0", s.LAN) },
		func() error { return s.App.AddAddr("eth0", AppAddr+"/24") },
		func() error { return s.App.AddRoute("default", RouterAddr) },
		func() error { return e.Plug(s.MC, "eth0", s.Internet) },
		func() error { return s.MC.AddAddr("eth0", MCAddr+"/24") },
		func() error { return e.Plug(s.User, "eth0", s.Platform) },
		func() error { return s.User.AddAddr("eth0", UserAddr+"/24") },
		func() error { return s.User.AddRoute(LANPrefix, GatewayPlatform(1)) },
	}
	for i, a := range s.Agents {
		steps = append(steps,
			func() error { return e.Plug(a, "eth0", s.LAN) },
			func() error { return a.AddAddr("eth0", AgentAddr(i+1)+"/24") },
			func() error { return a.AddRoute("default", RouterAddr) })
	}
	for _, st := range steps {
		if err := st(); err != nil {
			return err
		}
	}
	wgGo, err := tunneltest.WireGuardGo(ctx)
	if err != nil {
		return fmt.Errorf("site: the gateways' wireguard-go: %w", err)
	}
	for n := 1; n <= 2; n++ {
		if err := s.addGateway(ctx, n, wgGo); err != nil {
			return err
		}
	}
	return nil
}

// addGateway starts gateway n: stock wireguard-go configured with wg, knowing the
// site's one key for the connectors' tunnel address and the site LAN, forwarding the
// client range.
func (s *Site) addGateway(ctx context.Context, n int, wgGo string) error {
	h, err := s.env.Host(fmt.Sprintf("gw%d", n))
	if err != nil {
		return err
	}
	steps := []func() error{
		func() error { return s.env.Plug(h, "wan0", s.Internet) },
		func() error { return h.AddAddr("wan0", GatewayWAN(n)+"/24") },
		func() error { return s.env.Plug(h, "plat0", s.Platform) },
		func() error { return h.AddAddr("plat0", GatewayPlatform(n)+"/24") },
		func() error { return h.SetSysctl("net.ipv4.ip_forward", "1") },
	}
	for _, st := range steps {
		if err := st(); err != nil {
			return err
		}
	}
	key, err := newKey()
	if err != nil {
		return err
	}
	g := &tunneltest.WGInterface{Host: h, Iface: tunneltest.UniqueIface(fmt.Sprintf("sg%d", n)), Key: key, Port: gatewayPort,
		Addr: netip.MustParsePrefix(GatewayTunnel(n) + "/32"), Binary: wgGo, Routes: []string{ConnTunnel + "/32", LANPrefix},
		Peers: []tunneltest.WGPeer{{PublicKey: s.key.PublicKey(), AllowedIPs: []string{ConnTunnel + "/32", LANPrefix}}}}
	if err := g.Start(ctx, s.env.Dir()); err != nil {
		return fmt.Errorf("site: gateway gw%d: %w", n, err)
	}
	s.Gateways = append(s.Gateways, g)
	return nil
}

// CutInternet drops everything between connector c and the internet switch (or lets
// it through again) with a bridge filter on the switch: the connector's link stays up,
// only its tunnel notices. The same as an upstream outage at the connector's ISP.
func (s *Site) CutInternet(ctx context.Context, c *Connector, cut bool) error {
	port, ok := s.Internet.Port(c.Host, "wan0")
	if !ok {
		return fmt.Errorf("site: %s has no port on the internet switch", c.Name)
	}
	table := "sitecut_" + c.Name
	if !cut {
		_, err := s.Internet.Run(ctx, "nft", "delete", "table", "bridge", table)
		return err
	}
	script := fmt.Sprintf("add table bridge %[1]s\nadd chain bridge %[1]s forward_cut { type filter hook forward priority 0; }\n"+
		"add rule bridge %[1]s forward_cut iifname \"%[2]s\" drop\nadd rule bridge %[1]s forward_cut oifname \"%[2]s\" drop\n", table, port)
	_, err := s.Internet.Run(ctx, "sh", "-c", "printf '"+script+"' | nft -f -")
	return err
}

// StartPlainConnector turns connector c into a connector without Sitelink, for
// comparisons: its sitelinkd must be stopped first. It runs stock wireguard-go with the
// site's key towards gw1, routes the client range into it, enables forwarding and
// masquerades the client range towards the LAN with one nft rule: the same data path
// as the tunnel and snat plugins, without them.
func (s *Site) StartPlainConnector(ctx context.Context, c *Connector) (*tunneltest.WGInterface, error) {
	wgGo, err := tunneltest.WireGuardGo(ctx)
	if err != nil {
		return nil, err
	}
	g := &tunneltest.WGInterface{Host: c.Host, Iface: tunneltest.UniqueIface("pl"), Key: s.key,
		Addr: netip.MustParsePrefix(ConnTunnel + "/32"), Binary: wgGo, Routes: []string{ClientPrefix},
		Peers: []tunneltest.WGPeer{{PublicKey: s.Gateways[0].Key.PublicKey(), AllowedIPs: []string{ClientPrefix, GatewayTunnel(1) + "/32"},
			Endpoint: fmt.Sprintf("%s:%d", GatewayWAN(1), gatewayPort), Keepalive: 1}}}
	if err := g.Start(ctx, s.env.Dir()); err != nil {
		return nil, err
	}
	s.onClose(func() { _ = os.Remove(filepath.Join("/var/run/wireguard", g.Iface+".sock")) })
	if err := c.Host.SetSysctl("net.ipv4.ip_forward", "1"); err != nil {
		return nil, err
	}
	script := fmt.Sprintf("add table ip plain\nadd chain ip plain post { type nat hook postrouting priority srcnat; }\n"+
		"add rule ip plain post oifname \"lan0\" ip saddr %s masquerade\n", ClientPrefix)
	if _, err := c.Host.Run(ctx, "sh", "-c", "printf '"+script+"' | nft -f -"); err != nil {
		return nil, err
	}
	return g, nil
}
