package cache

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sitelink/sitelink/plugins/logcache/store"
	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/sdk/pluginpb"
	"github.com/sitelink/sitelink/plugins/sdk/sdktest"
)

func start(t *testing.T, cfg string) *sdktest.Harness {
	t.Helper()
	h := sdktest.New(t, New())
	if err := h.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	if err := h.Start(sdk.RoleUnknown); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Stop() })
	return h
}

func appendN(t *testing.T, h *sdktest.Harness, source string, n int) (uint64, uint64) {
	t.Helper()
	req := &pluginpb.AppendRequest{}
	for i := 0; i < n; i++ {
		req.Records = append(req.Records, &pluginpb.LogRecord{Source: source, DataJson: []byte(fmt.Sprintf(`{"i":%d}`, i))})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := h.Client.AppendLogs(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetFirstSeq(), resp.GetLastSeq()
}

func items(t *testing.T, raw []json.RawMessage) []item {
	t.Helper()
	out := make([]item, len(raw))
	for i, r := range raw {
		if err := json.Unmarshal(r, &out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestSinkTailAndStats(t *testing.T) {
	h := start(t, fmt.Sprintf(`{"dir": %q, "max_bytes": "1MiB", "segment_bytes": "64KiB", "sync": "always"}`, t.TempDir()))
	if info := h.Info(); len(info.GetProvides()) != 1 || info.GetProvides()[0] != "logsink" {
		t.Fatalf("provides %v, want logsink", info.GetProvides())
	}
	first, last := appendN(t, h, "proxy/agent 10.0.0.5", 20)
	if last-first != 19 {
		t.Fatalf("seqs %d..%d for 20 records", first, last)
	}
	appendN(t, h, "other", 3)
	got, err := h.StreamAction("tail", map[string]string{"lines": "5"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	recs := items(t, got)
	if len(recs) != 5 || recs[4].Seq != last+3 || recs[0].Source != "proxy/agent 10.0.0.5" {
		t.Fatalf("tail 5 = %+v", recs)
	}
	got, err = h.StreamAction("tail", map[string]string{"lines": "2", "source": "proxy*"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if recs := items(t, got); len(recs) != 2 || recs[1].Seq != last || string(recs[1].Data) != `{"i":19}` {
		t.Fatalf("tail 2 of proxy* = %+v", recs)
	}
	var st store.Stats
	if err := h.Action("stats", nil, &st); err != nil {
		t.Fatal(err)
	}
	if st.RecordsWritten != 23 || st.MaxBytes != 1<<20 {
		t.Fatalf("stats %+v", st)
	}
	if m := h.Metrics(); !strings.Contains(m, "logcache_written_records_total 23") {
		t.Fatalf("metrics lack the record count:\n%s", m)
	}
	var rep store.VerifyReport
	if err := h.Action("verify", nil, &rep); err != nil || rep.Records != 23 || rep.Damaged != 0 {
		t.Fatalf("verify = %+v, %v", rep, err)
	}
}

func TestFollowSeesNewRecords(t *testing.T) {
	h := start(t, fmt.Sprintf(`{"dir": %q, "max_bytes": "1MiB", "sync": "never"}`, t.TempDir()))
	appendN(t, h, "old", 3)
	var wg sync.WaitGroup
	var got []json.RawMessage
	var err error
	wg.Add(1)
	go func() {
		defer wg.Done()
		got, err = h.StreamAction("tail", map[string]string{"lines": "0", "follow": "true"}, 4)
	}()
	// Keep appending until the follower has had four new records.
	deadline := time.Now().Add(10 * time.Second)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for {
		select {
		case <-done:
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range items(t, got) {
				if it.Source != "new" {
					t.Fatalf("follow from the end returned an old record: %+v", it)
				}
			}
			return
		case <-time.After(20 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("follower saw no new records")
			}
			appendN(t, h, "new", 1)
		}
	}
}

func TestAuditEvents(t *testing.T) {
	h := start(t, fmt.Sprintf(`{"dir": %q, "max_bytes": "1MiB", "sync": "always"}`, t.TempDir()))
	h.Publish(sdk.Event{Type: sdk.EventRole, Source: "vrrp", Attrs: map[string]string{"role": "MASTER"}, Message: "became master"})
	h.Publish(sdk.Event{Type: "unrelated", Source: "x"})
	h.Publish(sdk.Event{Type: sdk.EventTunnel, Source: "tunnel", Attrs: map[string]string{"state": "up"}})
	var recs []item
	deadline := time.Now().Add(10 * time.Second)
	for len(recs) < 2 && time.Now().Before(deadline) {
		got, err := h.StreamAction("tail", map[string]string{"source": AuditSource, "lines": "10"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		recs = items(t, got)
		time.Sleep(10 * time.Millisecond)
	}
	if len(recs) != 2 || !strings.Contains(string(recs[0].Data), `"role":"MASTER"`) || !strings.Contains(string(recs[1].Data), `"type":"tunnel"`) {
		t.Fatalf("audit records = %+v, want the role then the tunnel event", recs)
	}
}

func TestLiveReconfigureEvicts(t *testing.T) {
	dir := t.TempDir()
	h := start(t, fmt.Sprintf(`{"dir": %q, "max_bytes": "2MiB", "segment_bytes": "64KiB", "sync": "never"}`, dir))
	for i := 0; i < 40; i++ {
		appendN(t, h, "fill", 200)
	}
	var before store.Stats
	if err := h.Action("stats", nil, &before); err != nil {
		t.Fatal(err)
	}
	if before.Bytes < 512<<10 {
		t.Fatalf("filled only %d bytes", before.Bytes)
	}
	if err := h.Configure(fmt.Sprintf(`{"dir": %q, "max_bytes": "256KiB", "segment_bytes": "64KiB", "sync": "never"}`, dir)); err != nil {
		t.Fatal(err)
	}
	var after store.Stats
	if err := h.Action("stats", nil, &after); err != nil {
		t.Fatal(err)
	}
	if after.Bytes > 256<<10 || after.MaxBytes != 256<<10 || after.RecordsEvicted == 0 {
		t.Fatalf("after shrinking: %+v, want at most 256 KiB and evictions", after)
	}
}

func TestBadConfig(t *testing.T) {
	h := sdktest.New(t, New())
	for cfg, path := range map[string]string{
		`{"sync": "sometimes"}`:     "sync",
		`{"max_bytes": "ten"}`:      "",
		`{"max_bytes": 10}`:         "max_bytes",
		`{"sync_interval": "soon"}`: "sync_interval",
		`{"colour": "blue"}`:        "colour",
		`{"segment_bytes": "1KiB"}`: "segment_bytes",
	} {
		err := h.Validate(cfg)
		fes, ok := err.(sdk.FieldErrors)
		if !ok || len(fes) == 0 || (path != "" && fes[0].Path != path) {
			t.Errorf("config %s: error %v, want a field error at %q", cfg, err, path)
		}
	}
}
