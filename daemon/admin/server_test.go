package admin_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sitelink/sitelink/daemon/admin"
	"github.com/sitelink/sitelink/daemon/admin/admintest"
	"github.com/sitelink/sitelink/daemon/api"
)

// unixClient is an HTTP client of the socket; a missing answer fails a test instead of
// hanging it.
func unixClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		ResponseHeaderTimeout: 15 * time.Second,
	}}
}

type result struct {
	status int
	header http.Header
	body   []byte
}

func (r result) apiError(t *testing.T) api.Error {
	t.Helper()
	var e api.Error
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body %q is not an api.Error: %v", r.body, err)
	}
	if e.Code == "" || e.Message == "" {
		t.Fatalf("error body %q lacks code or message", r.body)
	}
	return e
}

func do(t *testing.T, c *http.Client, method, path, body string) result {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://sitelinkd"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return result{status: resp.StatusCode, header: resp.Header, body: data}
}

func decode[T any](t *testing.T, r result) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return v
}

func newBackend() *admintest.Backend {
	return &admintest.Backend{
		StatusValue:  api.Status{Version: "1.2.3", State: api.DaemonRunning, StatusLine: "all good", Role: "MASTER", PID: 42, ConfigFile: "/etc/sitelink/sitelink.yaml"},
		PluginValues: admintest.SamplePlugins(),
		ReloadResult: api.ReloadResult{Added: []string{"proxy"}, Unchanged: []string{"tunnel"}},
		ConfigValue:  api.ConfigView{File: "/etc/sitelink/sitelink.yaml", YAML: "plugins: {}\n"},
		VersionValue: api.VersionInfo{Version: "1.2.3", GoVersion: "go1.26.8", APIVersion: "v1", PluginAPIVersions: []int{1}},
	}
}

func TestRoutes(t *testing.T) {
	b := newBackend()
	srv := admintest.Serve(t, b, admin.Options{})
	c := unixClient(srv.SocketPath())

	r := do(t, c, "GET", "/v1/status", "")
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("status: %d %s", r.status, r.body)
	}
	st := decode[api.Status](t, r)
	if st.Version != "1.2.3" || st.State != "running" || len(st.Plugins) != 3 {
		t.Errorf("status = %+v", st)
	}

	r = do(t, c, "GET", "/v1/plugins", "")
	if ps := decode[[]api.PluginStatus](t, r); r.status != 200 || len(ps) != 3 || ps[0].Name != "tunnel" {
		t.Errorf("plugins: %d %s", r.status, r.body)
	}
	r = do(t, c, "GET", "/v1/plugins/tunnel", "")
	if p := decode[api.PluginStatus](t, r); r.status != 200 || p.Name != "tunnel" || len(p.Actions) != 2 {
		t.Errorf("plugin: %d %s", r.status, r.body)
	}
	r = do(t, c, "GET", "/v1/plugins/nope", "")
	if e := r.apiError(t); r.status != 404 || e.Code != "not_found" || !strings.Contains(e.Message, "nope") {
		t.Errorf("unknown plugin: %d %s", r.status, r.body)
	}

	for _, verb := range []string{"restart", "enable", "disable"} {
		r = do(t, c, "POST", "/v1/plugins/snat/"+verb, "")
		if p := decode[api.PluginStatus](t, r); r.status != 200 || p.Name != "snat" {
			t.Errorf("%s: %d %s", verb, r.status, r.body)
		}
	}
	r = do(t, c, "POST", "/v1/plugins/nope/restart", "")
	if r.status != 404 {
		t.Errorf("restart unknown: %d %s", r.status, r.body)
	}

	r = do(t, c, "POST", "/v1/reload", "")
	if rr := decode[api.ReloadResult](t, r); r.status != 200 || len(rr.Added) != 1 || rr.Added[0] != "proxy" {
		t.Errorf("reload: %d %s", r.status, r.body)
	}
	r = do(t, c, "GET", "/v1/config", "")
	if cv := decode[api.ConfigView](t, r); r.status != 200 || cv.YAML != "plugins: {}\n" {
		t.Errorf("config: %d %s", r.status, r.body)
	}
	b.Check = func(yaml []byte) api.ConfigCheck {
		if strings.Contains(string(yaml), "bad") {
			return api.ConfigCheck{Errors: []string{"-:1:1: bad"}}
		}
		return api.ConfigCheck{OK: true}
	}
	r = do(t, c, "POST", "/v1/config/check", "plugins: bad\n")
	if cc := decode[api.ConfigCheck](t, r); r.status != 200 || cc.OK || len(cc.Errors) != 1 {
		t.Errorf("config check: %d %s", r.status, r.body)
	}
	r = do(t, c, "POST", "/v1/config/check", "")
	if cc := decode[api.ConfigCheck](t, r); r.status != 200 || !cc.OK {
		t.Errorf("config check of the daemon's file: %d %s", r.status, r.body)
	}
	r = do(t, c, "GET", "/v1/version", "")
	if v := decode[api.VersionInfo](t, r); r.status != 200 || v.APIVersion != "v1" {
		t.Errorf("version: %d %s", r.status, r.body)
	}

	r = do(t, c, "POST", "/v1/plugins/tunnel/actions/switch", `{"args":{"peer":"gw-b"}}`)
	if r.status != 200 || string(r.body) != `{"action":"switch","args":{"peer":"gw-b"},"plugin":"tunnel"}`+"\n" {
		t.Errorf("action: %d %s", r.status, r.body)
	}
	r = do(t, c, "POST", "/v1/plugins/tunnel/actions/peers", "")
	if r.status != 200 {
		t.Errorf("action without body: %d %s", r.status, r.body)
	}
	r = do(t, c, "POST", "/v1/plugins/tunnel/actions/nope", "")
	if e := r.apiError(t); r.status != 404 || e.Code != "not_found" {
		t.Errorf("unknown action: %d %s", r.status, r.body)
	}

	want := []string{"restart snat", "enable snat", "disable snat", "reload", "check 13 bytes", "check (daemon file)", "invoke tunnel switch", "invoke tunnel peers"}
	if got := b.Calls(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("backend calls = %q, want %q", got, want)
	}
	// Audits: every accepted changing request, with the peer's credentials; not the
	// non-mutating action.
	audits := b.Audits()
	var whats []string
	for _, a := range audits {
		whats = append(whats, a.What)
		if !a.Who.Credentials || a.Who.UID != os.Getuid() || a.Who.PID != os.Getpid() || a.Who.Access != admin.AccessAdmin {
			t.Errorf("audit peer = %+v, want uid %d pid %d admin", a.Who, os.Getuid(), os.Getpid())
		}
	}
	wantAudits := []string{"restart plugin snat", "enable plugin snat", "disable plugin snat", "restart plugin nope", "reload", `action tunnel switch peer="gw-b"`}
	if strings.Join(whats, "|") != strings.Join(wantAudits, "|") {
		t.Errorf("audits = %q, want %q", whats, wantAudits)
	}
}

func TestErrorMapping(t *testing.T) {
	b := newBackend()
	srv := admintest.Serve(t, b, admin.Options{})
	c := unixClient(srv.SocketPath())
	cases := []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("restart snat: %w", admin.ErrNotFound), 404, "not_found"},
		{fmt.Errorf("bad: %w", admin.ErrInvalidArgument), 400, "invalid_argument"},
		{fmt.Errorf("busy: %w", admin.ErrConflict), 409, "conflict"},
		{fmt.Errorf("supervisor: %w", admin.ErrUnavailable), 503, "unavailable"},
		{fmt.Errorf("wrapped: %w", &admin.ConfigError{Errors: []string{"a.yaml:1:2: x", "a.yaml:3:4: y"}}), 422, "invalid_config"},
		{errors.New("boom"), 500, "internal"},
	}
	for _, tc := range cases {
		b.OpErr = tc.err
		r := do(t, c, "POST", "/v1/plugins/snat/restart", "")
		e := r.apiError(t)
		if r.status != tc.status || e.Code != tc.code || e.Message != tc.err.Error() {
			t.Errorf("%v: got %d %s, want %d %s", tc.err, r.status, r.body, tc.status, tc.code)
		}
	}
	b.ReloadErr = &admin.ConfigError{Errors: []string{"a.yaml:1:2: x", "a.yaml:3:4: y"}}
	r := do(t, c, "POST", "/v1/reload", "")
	if e := r.apiError(t); r.status != 422 || e.Code != "invalid_config" || len(e.Details) != 2 || e.Details[1] != "a.yaml:3:4: y" {
		t.Errorf("reload with a bad config: %d %s", r.status, r.body)
	}
}

func TestNotFoundAndMethodNotAllowed(t *testing.T) {
	srv := admintest.Serve(t, newBackend(), admin.Options{})
	c := unixClient(srv.SocketPath())
	for _, p := range []string{"/", "/v1", "/v2/status", "/v1/nope", "/v1/plugins/tunnel/nope"} {
		r := do(t, c, "GET", p, "")
		if e := r.apiError(t); r.status != 404 || e.Code != "not_found" {
			t.Errorf("GET %s: %d %s", p, r.status, r.body)
		}
	}
	for _, tc := range []struct{ method, path, allow string }{
		{"DELETE", "/v1/status", "GET, HEAD"},
		{"POST", "/v1/status", "GET, HEAD"},
		{"GET", "/v1/reload", "POST"},
		{"GET", "/v1/plugins/tunnel/actions/peers", "POST"},
	} {
		r := do(t, c, tc.method, tc.path, "")
		if e := r.apiError(t); r.status != 405 || r.header.Get("Allow") != tc.allow || !strings.Contains(e.Message, tc.method) {
			t.Errorf("%s %s: %d allow=%q %s", tc.method, tc.path, r.status, r.header.Get("Allow"), r.body)
		}
	}
}

func TestMalformedRequests(t *testing.T) {
	b := newBackend()
	srv := admintest.Serve(t, b, admin.Options{MaxBodyBytes: 1024})
	c := unixClient(srv.SocketPath())
	for _, body := range []string{`{`, `{"args":5}`, `{"args":{"peer":1}}`, `{"args":{}} x`, `[]`, "\x00"} {
		r := do(t, c, "POST", "/v1/plugins/tunnel/actions/switch", body)
		if e := r.apiError(t); r.status != 400 || e.Code != "invalid_argument" {
			t.Errorf("body %q: %d %s", body, r.status, r.body)
		}
	}
	// Argument names are checked against the declaration.
	for body, msg := range map[string]string{
		`{"args":{}}`:                        `missing required argument "peer"`,
		`{"args":{"peer":"a","speed":"1"}}`:  `unknown argument "speed" (known: force, peer)`,
		`{"args":{"x":"1"}}` + "\n":          `unknown argument "x"`,
		`{"args":{"peer":"a","force":"1"}} `: "",
	} {
		r := do(t, c, "POST", "/v1/plugins/tunnel/actions/switch", body)
		if msg == "" {
			if r.status != 200 {
				t.Errorf("body %q: %d %s", body, r.status, r.body)
			}
			continue
		}
		if e := r.apiError(t); r.status != 400 || !strings.Contains(e.Message, msg) {
			t.Errorf("body %q: %d %s, want %q", body, r.status, r.body, msg)
		}
	}
	// Bodies are bounded.
	big := strings.Repeat("a", 2048)
	for _, p := range []string{"/v1/config/check", "/v1/plugins/tunnel/actions/peers", "/v1/reload"} {
		r := do(t, c, "POST", p, big)
		if e := r.apiError(t); r.status != 413 || !strings.Contains(e.Message, "1024") {
			t.Errorf("POST %s with 2 KiB: %d %s", p, r.status, r.body)
		}
	}
	// A request line or header that is not HTTP at all does not hurt the server.
	conn, err := net.Dial("unix", srv.SocketPath())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GARBAGE\r\n\r\n")
	line, _ := bufio.NewReader(conn).ReadString('\n')
	conn.Close()
	if !strings.Contains(line, "400") {
		t.Errorf("garbage request answered %q", line)
	}
	if r := do(t, c, "GET", "/v1/status", ""); r.status != 200 {
		t.Errorf("server unhealthy after malformed requests: %d", r.status)
	}
	if got := b.Calls(); len(got) != 1 { // only the one valid switch
		t.Errorf("backend calls = %q", got)
	}
}

func TestPanicIsInternalError(t *testing.T) {
	b := newBackend()
	b.Invoke = func(context.Context, string, string, map[string]string) (json.RawMessage, error) {
		panic("plugin table corrupted")
	}
	srv := admintest.Serve(t, b, admin.Options{})
	c := unixClient(srv.SocketPath())
	r := do(t, c, "POST", "/v1/plugins/tunnel/actions/peers", "")
	if e := r.apiError(t); r.status != 500 || e.Code != "internal" || !strings.Contains(e.Message, "plugin table corrupted") {
		t.Errorf("panic: %d %s", r.status, r.body)
	}
	if r := do(t, c, "GET", "/v1/status", ""); r.status != 200 {
		t.Errorf("after panic: %d", r.status)
	}
}

func TestRequestTimeout(t *testing.T) {
	b := newBackend()
	b.Invoke = func(ctx context.Context, _, _ string, _ map[string]string) (json.RawMessage, error) {
		<-ctx.Done()
		return nil, fmt.Errorf("peers: %w", ctx.Err())
	}
	srv := admintest.Serve(t, b, admin.Options{RequestTimeout: 200 * time.Millisecond})
	c := unixClient(srv.SocketPath())
	start := time.Now()
	r := do(t, c, "POST", "/v1/plugins/tunnel/actions/peers", "")
	if e := r.apiError(t); r.status != 503 || e.Code != "unavailable" || !strings.Contains(e.Message, "timed out") {
		t.Errorf("slow action: %d %s", r.status, r.body)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("timeout took %v", d)
	}
}

// streamLines reads an NDJSON response line by line into a channel.
func streamLines(body io.Reader) <-chan string {
	ch := make(chan string, 16)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(body)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch
}

func recv(t *testing.T, ch <-chan string) (string, bool) {
	t.Helper()
	select {
	case l, ok := <-ch:
		return l, ok
	case <-time.After(10 * time.Second):
		t.Fatal("no stream line within 10s")
	}
	return "", false
}

func TestStreamingAction(t *testing.T) {
	b := newBackend()
	next := make(chan struct{})
	var gotArgs map[string]string
	b.Stream = func(ctx context.Context, _, _ string, args map[string]string, emit func(json.RawMessage) error) error {
		gotArgs = args
		if err := emit(json.RawMessage(`{"n": 1,
			"msg":"first"}`)); err != nil {
			return err
		}
		// The second item only comes after the client has seen the first one: the first
		// must have been flushed.
		select {
		case <-next:
		case <-ctx.Done():
			return ctx.Err()
		}
		if err := emit(json.RawMessage(`"second"`)); err != nil {
			return err
		}
		if err := emit(json.RawMessage(`{not json`)); err == nil {
			return errors.New("emit accepted invalid JSON")
		}
		return nil
	}
	srv := admintest.Serve(t, b, admin.Options{})
	c := unixClient(srv.SocketPath())
	resp, err := c.Post("http://sitelinkd/v1/plugins/logcache/actions/tail", "application/json", strings.NewReader(`{"args":{"follow":"true","source":"proxy"}}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("stream answered %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := streamLines(resp.Body)
	if l, _ := recv(t, lines); l != `{"n":1,"msg":"first"}` {
		t.Fatalf("first line %q", l)
	}
	close(next)
	if l, _ := recv(t, lines); l != `"second"` {
		t.Fatalf("second line %q", l)
	}
	if l, ok := recv(t, lines); ok {
		t.Fatalf("unexpected line %q", l)
	}
	if v := resp.Trailer.Get("Sitelink-Error"); v != "" {
		t.Errorf("error trailer %q after a clean end", v)
	}
	if gotArgs["follow"] != "true" || gotArgs["source"] != "proxy" {
		t.Errorf("stream args = %v", gotArgs)
	}
}

func TestStreamErrors(t *testing.T) {
	b := newBackend()
	b.Stream = func(ctx context.Context, _, _ string, args map[string]string, emit func(json.RawMessage) error) error {
		if args["source"] == "early" {
			return fmt.Errorf("no source early: %w", admin.ErrInvalidArgument)
		}
		if err := emit(json.RawMessage(`1`)); err != nil {
			return err
		}
		return fmt.Errorf("disk read failed: %w", admin.ErrUnavailable)
	}
	srv := admintest.Serve(t, b, admin.Options{})
	c := unixClient(srv.SocketPath())

	// An error before the first item is an ordinary error answer.
	r := do(t, c, "POST", "/v1/plugins/logcache/actions/tail", `{"args":{"source":"early"}}`)
	if e := r.apiError(t); r.status != 400 || e.Code != "invalid_argument" {
		t.Errorf("early error: %d %s", r.status, r.body)
	}
	// A later one is the Sitelink-Error trailer.
	resp, err := c.Post("http://sitelinkd/v1/plugins/logcache/actions/tail", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || string(data) != "1\n" {
		t.Fatalf("stream: %d %q %v", resp.StatusCode, data, err)
	}
	var e api.Error
	if err := json.Unmarshal([]byte(resp.Trailer.Get("Sitelink-Error")), &e); err != nil || e.Code != "unavailable" || !strings.Contains(e.Message, "disk read failed") {
		t.Errorf("trailer %q: %v", resp.Trailer.Get("Sitelink-Error"), err)
	}
}

func TestStreamClientDisconnectCancels(t *testing.T) {
	b := newBackend()
	cancelled := make(chan error, 1)
	b.Stream = func(ctx context.Context, _, _ string, _ map[string]string, emit func(json.RawMessage) error) error {
		if err := emit(json.RawMessage(`"hello"`)); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			cancelled <- ctx.Err()
		case <-time.After(30 * time.Second):
			cancelled <- errors.New("context not cancelled after the client left")
		}
		return ctx.Err()
	}
	srv := admintest.Serve(t, b, admin.Options{})
	c := unixClient(srv.SocketPath())
	resp, err := c.Post("http://sitelinkd/v1/plugins/logcache/actions/tail", "application/json", strings.NewReader(`{"args":{"follow":"true"}}`))
	if err != nil {
		t.Fatal(err)
	}
	lines := streamLines(resp.Body)
	if l, _ := recv(t, lines); l != `"hello"` {
		t.Fatalf("first line %q", l)
	}
	resp.Body.Close() // the client goes away
	select {
	case err := <-cancelled:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("backend context: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("backend context not cancelled within 20s of the client leaving")
	}
}

func TestEvents(t *testing.T) {
	b := newBackend()
	var mu sync.Mutex
	var gotTypes []string
	b.EventsFunc = func(ctx context.Context, types []string, emit func(api.Event) error) error {
		mu.Lock()
		gotTypes = types
		mu.Unlock()
		for i := range 3 {
			if err := emit(api.Event{Type: "ha.role", Source: "vrrp", Message: fmt.Sprint("ev", i), Attrs: map[string]string{"role": "MASTER"}}); err != nil {
				return err
			}
		}
		<-ctx.Done()
		return ctx.Err()
	}
	srv := admintest.Serve(t, b, admin.Options{})
	c := unixClient(srv.SocketPath())
	resp, err := c.Get("http://sitelinkd/v1/events?type=ha.role,plugin.state&type=ha.role")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := streamLines(resp.Body)
	for i := range 3 {
		l, _ := recv(t, lines)
		var ev api.Event
		if err := json.Unmarshal([]byte(l), &ev); err != nil || ev.Message != fmt.Sprint("ev", i) || ev.Source != "vrrp" {
			t.Fatalf("event %d: %q %v", i, l, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(gotTypes, ",") != "ha.role,plugin.state" {
		t.Errorf("types = %q", gotTypes)
	}
}

func TestShutdownEndsStreams(t *testing.T) {
	b := newBackend()
	streamCtxDone := make(chan struct{})
	b.EventsFunc = func(ctx context.Context, _ []string, emit func(api.Event) error) error {
		if err := emit(api.Event{Type: "x"}); err != nil {
			return err
		}
		<-ctx.Done()
		close(streamCtxDone)
		return ctx.Err()
	}
	sock := filepath.Join(t.TempDir(), "admin.sock")
	srv := admin.New(b, admin.Options{SocketPath: sock, AdminGroup: "sltest-none", ReaderGroup: "sltest-none"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()

	c := unixClient(sock)
	var resp *http.Response
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		resp, err = c.Get("http://sitelinkd/v1/events")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not up: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer resp.Body.Close()
	lines := streamLines(resp.Body)
	recv(t, lines)
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return within 10s of its context ending")
	}
	select {
	case <-streamCtxDone:
	default:
		t.Error("the stream's context was not cancelled by the shutdown")
	}
	for range lines { // the stream ends
	}
	if e := resp.Trailer.Get("Sitelink-Error"); !strings.Contains(e, "shutting down") {
		t.Errorf("trailer after shutdown = %q", e)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after Serve returned: %v", err)
	}
}

func TestAuthorizationPolicy(t *testing.T) {
	b := newBackend()
	var mu sync.Mutex
	level := admin.AccessNone
	var seen admin.Peer
	srv := admintest.Serve(t, b, admin.Options{Authorize: func(p admin.Peer) admin.Access {
		mu.Lock()
		defer mu.Unlock()
		seen = p
		return level
	}})
	srv.Handle("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := admin.PeerFromContext(r.Context())
		fmt.Fprintf(w, "ok %v %v", ok, p.Access)
	}), admin.AccessNone)
	srv.Handle("GET /metrics", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "metrics")
	}), admin.AccessReader)
	c := unixClient(srv.SocketPath())
	set := func(a admin.Access) {
		mu.Lock()
		defer mu.Unlock()
		level = a
	}

	type req struct{ method, path, body string }
	reads := []req{
		{"GET", "/v1/status", ""}, {"GET", "/v1/plugins", ""}, {"GET", "/v1/plugins/tunnel", ""},
		{"GET", "/v1/config", ""}, {"POST", "/v1/config/check", "a: 1"}, {"GET", "/v1/version", ""},
		{"POST", "/v1/plugins/tunnel/actions/peers", ""}, {"GET", "/metrics", ""},
	}
	changes := []req{
		{"POST", "/v1/plugins/snat/restart", ""}, {"POST", "/v1/plugins/snat/enable", ""},
		{"POST", "/v1/plugins/snat/disable", ""}, {"POST", "/v1/reload", ""},
		{"POST", "/v1/plugins/tunnel/actions/switch", `{"args":{"peer":"gw-b"}}`},
	}
	check := func(rq req, want int, wantMsg string) {
		t.Helper()
		r := do(t, c, rq.method, rq.path, rq.body)
		if r.status != want {
			t.Errorf("%v %s %s: %d %s, want %d", level, rq.method, rq.path, r.status, r.body, want)
			return
		}
		if want == 403 {
			if e := r.apiError(t); e.Code != "forbidden" || !strings.Contains(e.Message, wantMsg) {
				t.Errorf("%s %s: 403 message %q lacks %q", rq.method, rq.path, e.Message, wantMsg)
			}
		}
	}

	set(admin.AccessNone)
	for _, rq := range reads {
		check(rq, 403, "sltest-no-such-reader-group")
	}
	for _, rq := range changes[:4] {
		check(rq, 403, "sltest-no-such-admin-group")
	}
	// Running any action needs reading first.
	check(changes[4], 403, "sltest-no-such-reader-group")
	check(req{"GET", "/healthz", ""}, 200, "")
	if len(b.Calls()) != 0 || len(b.Audits()) != 0 {
		t.Errorf("refused requests reached the backend: %q", b.Calls())
	}

	set(admin.AccessReader)
	for _, rq := range reads {
		check(rq, 200, "")
	}
	for _, rq := range changes {
		check(rq, 403, "sltest-no-such-admin-group")
	}
	// Streams are reads too: a non-mutating streaming action and the events.
	b.EventsFunc = func(context.Context, []string, func(api.Event) error) error { return nil }
	check(req{"POST", "/v1/plugins/logcache/actions/tail", ""}, 200, "")
	check(req{"GET", "/v1/events", ""}, 200, "")
	if len(b.Audits()) != 0 {
		t.Errorf("audits for refused or read requests: %v", b.Audits())
	}

	set(admin.AccessAdmin)
	for _, rq := range append(reads, changes...) {
		check(rq, 200, "")
	}
	if n := len(b.Audits()); n != len(changes) {
		t.Errorf("%d audits, want %d", n, len(changes))
	}
	mu.Lock()
	defer mu.Unlock()
	if !seen.Credentials || seen.PID != os.Getpid() || seen.UID != os.Getuid() || seen.GID != os.Getegid() {
		t.Errorf("peer = %+v, want pid %d uid %d gid %d", seen, os.Getpid(), os.Getuid(), os.Getegid())
	}
}

func TestExtraListenerHasNoCredentials(t *testing.T) {
	srv := admintest.Serve(t, newBackend(), admin.Options{})
	srv.Handle("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := admin.PeerFromContext(r.Context())
		fmt.Fprintf(w, "ok remote=%v", p.Remote != "")
	}), admin.AccessNone)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeListener(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeListener: %v", err)
		}
	}()
	c := &http.Client{Timeout: 10 * time.Second}
	get := func(path string) (int, string) {
		resp, err := c.Get("http://" + ln.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(data)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok remote=true" {
		t.Errorf("/healthz over TCP: %d %q", code, body)
	}
	if code, body := get("/v1/status"); code != 403 {
		t.Errorf("/v1/status over TCP: %d %q, want 403 (no credentials)", code, body)
	}
}

func TestStaleSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "admin.sock")

	// A socket left by a crashed daemon: the file exists, nobody listens.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	opts := admin.Options{SocketPath: sock, AdminGroup: "sltest-none", ReaderGroup: "sltest-none"}
	first := admin.New(newBackend(), opts)
	if err := first.Listen(); err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer first.Close()

	// A second daemon must not steal the socket of a running one.
	second := admin.New(newBackend(), opts)
	if err := second.Listen(); err == nil || !strings.Contains(err.Error(), "another sitelinkd is listening") {
		t.Errorf("second Listen: %v", err)
	}
	// The first one still works.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- first.Serve(ctx) }()
	if r := do(t, unixClient(sock), "GET", "/v1/version", ""); r.status != 200 {
		t.Errorf("first server after the second's attempt: %d", r.status)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}

	// Not a socket: left alone.
	regular := filepath.Join(dir, "file")
	if err := os.WriteFile(regular, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	third := admin.New(newBackend(), admin.Options{SocketPath: regular})
	if err := third.Listen(); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen on a regular file: %v", err)
	}
	if data, _ := os.ReadFile(regular); string(data) != "keep" {
		t.Error("regular file was touched")
	}
}

func TestSocketMode(t *testing.T) {
	dir := t.TempDir()
	// No group: 0600.
	sock := filepath.Join(dir, "a.sock")
	s := admin.New(newBackend(), admin.Options{SocketPath: sock, AdminGroup: "sltest-none", ReaderGroup: "sltest-none"})
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode without group = %v, want 0600", fi.Mode().Perm())
	}
	// The reader group exists (our own primary group stands in for it): 0660, owned by it.
	grp := groupName(t, os.Getegid())
	sock2 := filepath.Join(dir, "b.sock")
	s2 := admin.New(newBackend(), admin.Options{SocketPath: sock2, AdminGroup: "sltest-none", ReaderGroup: grp})
	if err := s2.Listen(); err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	fi, err = os.Stat(sock2)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o660 || int(st.Gid) != os.Getegid() || int(st.Uid) != os.Geteuid() {
		t.Errorf("socket with group %s: mode %v uid %d gid %d", grp, fi.Mode().Perm(), st.Uid, st.Gid)
	}
	// Close removes it.
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sock2); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after Close: %v", err)
	}
}
