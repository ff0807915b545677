package admin_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/sitelink/sitelink/daemon/admin"
	"github.com/sitelink/sitelink/daemon/admin/admintest"
)

// BenchmarkStatus measures one GET /v1/status round trip over the unix socket (keep-alive
// connection, peer groups resolved per request).
func BenchmarkStatus(b *testing.B) {
	srv := admintest.Serve(b, newBackend(), admin.Options{})
	c := unixClient(srv.SocketPath())
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.Get("http://sitelinkd/v1/status")
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatal(resp.Status)
		}
	}
}

// BenchmarkStreamItems measures streaming: items of about 200 bytes, each flushed.
func BenchmarkStreamItems(b *testing.B) {
	be := newBackend()
	item := json.RawMessage(`{"time":"2026-05-01T10:00:00.000000Z","source":"proxy","level":"info","msg":"connection accepted","client":"10.0.0.5:44332","backend":"10.1.0.7:443","bytes":123456}`)
	n := 0
	be.Stream = func(ctx context.Context, _, _ string, _ map[string]string, emit func(json.RawMessage) error) error {
		for range n {
			if err := emit(item); err != nil {
				return err
			}
		}
		return nil
	}
	srv := admintest.Serve(b, be, admin.Options{})
	c := unixClient(srv.SocketPath())
	n = b.N
	b.SetBytes(int64(len(item) + 1))
	b.ResetTimer()
	resp, err := c.Post("http://sitelinkd/v1/plugins/logcache/actions/tail", "application/json", strings.NewReader(`{}`))
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	got := 0
	for sc.Scan() {
		got++
	}
	if got != b.N {
		b.Fatalf("%d items, want %d", got, b.N)
	}
}
