package relay

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/sitelink/sitelink/plugins/proxy/clients"
	"github.com/sitelink/sitelink/plugins/sdk"
)

// The hand-built record JSON says the same as json.Marshal of a cacheRecord would.
func TestIngestRecordJSON(t *testing.T) {
	reg := clients.New()
	cl, _ := reg.Admit(netip.MustParseAddr("10.0.0.7"))
	in := &ingest{cn: &clientConn{addr: netip.MustParseAddr("10.0.0.7"), client: cl,
		l: &compiled{ListenerConfig: ListenerConfig{Name: `in"gest`}}}}
	before := time.Now()
	for _, raw := range []string{`{"a":1}`, "  {\n  \"pretty\": [1, 2]\n}  ", `plain text <&> "quoted"`, `"a string"`, `42`} {
		if err := in.add([]byte(raw)); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{`{"a":1}`, `{"pretty":[1,2]}`, `"plain text \u003c\u0026\u003e \"quoted\""`, `"a string"`, `42`}
	if len(in.batch) != len(want) {
		t.Fatalf("%d records", len(in.batch))
	}
	for i, r := range in.batch {
		var got cacheRecord
		if err := json.Unmarshal(r.Data, &got); err != nil {
			t.Fatalf("record %d is not JSON: %v: %s", i, err, r.Data)
		}
		var rec []byte
		if v := got.Record; json.Valid(v) {
			var x any
			_ = json.Unmarshal(v, &x)
			rec, _ = json.Marshal(x)
		}
		var w any
		_ = json.Unmarshal([]byte(want[i]), &w)
		wb, _ := json.Marshal(w)
		if got.Client != "10.0.0.7" || got.Listener != `in"gest` || got.Time.Before(before) || !got.Time.Equal(r.Time) ||
			string(rec) != string(wb) || r.Source != `proxy/in"gest` {
			t.Errorf("record %d: %+v (record %s, want %s), source %q", i, got, rec, wb, r.Source)
		}
	}
}

func TestSplitBatch(t *testing.T) {
	rec := func(n int) sdk.LogRecord { return sdk.LogRecord{Data: make([]byte, n)} }
	var rs []sdk.LogRecord
	for range 10 {
		rs = append(rs, rec(84)) // 100 bytes counted each
	}
	rs = append(rs, rec(5000)) // larger than max alone
	got := splitBatch(rs, 300)
	var sizes []int
	total := 0
	for _, c := range got {
		sizes = append(sizes, len(c))
		total += len(c)
	}
	if fmt.Sprint(sizes) != "[3 3 3 1 1]" || total != len(rs) {
		t.Fatalf("chunks of %v records", sizes)
	}
	if got := splitBatch(rs[:2], 300); len(got) != 1 || len(got[0]) != 2 {
		t.Fatalf("small batch split: %v", got)
	}
}
