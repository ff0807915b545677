package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	good := map[string]int64{
		"10GB":    10_000_000_000,
		"10GiB":   10 << 30,
		"512MiB":  512 << 20,
		"64 MiB":  64 << 20,
		"1.5GiB":  3 << 29,
		"4096":    4096,
		"100b":    100,
		"2kb":     2000,
		"2KiB":    2048,
		"1TB":     1_000_000_000_000,
		" 3 gib ": 3 << 30,
	}
	for in, want := range good {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GB", "10XB", "-1GB", "1e3", "1..2", "99999999999TiB"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	for in, want := range map[string]Policy{"always": PolicyAlways, "Interval": PolicyInterval, "": PolicyInterval, "NEVER": PolicyNever} {
		got, err := ParsePolicy(in)
		if err != nil || got != want {
			t.Errorf("ParsePolicy(%q) = %v, %v; want %v", in, got, err, want)
		}
		var p Policy
		if err := p.UnmarshalText([]byte(in)); err != nil || p != want {
			t.Errorf("UnmarshalText(%q) = %v, %v", in, p, err)
		}
		if b, err := want.MarshalText(); err != nil || string(b) != want.String() {
			t.Errorf("MarshalText(%v) = %q, %v", want, b, err)
		}
	}
	if _, err := ParsePolicy("sometimes"); err == nil {
		t.Error("ParsePolicy(sometimes) succeeded")
	}
}

func TestCheckJSONAgreesWithEncodingJSON(t *testing.T) {
	cases := []string{
		`{}`, `[]`, `null`, `true`, `false`, `0`, `-0`, `1.5e-3`, `"text"`, `"\u00e9\n\"x\""`,
		`{"a":[1,2,{"b":null}],"c":"d"}`, ` {"a" : 1 } `, "[1,\n2]", `"é日本"`,
		// invalid
		``, `{`, `{"a"}`, `{"a":}`, `[1,]`, `01`, `1.`, `.5`, `-`, `1e`, `tru`, `nul`, `"abc`,
		`"\x"`, `"\u12"`, "\"a\x01\"", `{} {}`, `{"a":1,}`, `[1 2]`, "\"\xff\"", `{1:2}`,
	}
	for _, c := range cases {
		compact, err := checkJSON([]byte(c))
		// encoding/json accepts invalid UTF-8 inside strings; the store does not.
		want := json.Valid([]byte(c)) && !strings.Contains(c, "\xff")
		if (err == nil) != want {
			t.Errorf("checkJSON(%q) err = %v, want valid = %v", c, err, want)
		}
		if err == nil {
			var buf bytes.Buffer
			json.Compact(&buf, []byte(c))
			if compact != (buf.String() == c) {
				t.Errorf("checkJSON(%q) compact = %v, json.Compact gives %q", c, compact, buf.String())
			}
		}
	}
	deep := strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1)
	if _, err := checkJSON([]byte(deep)); err == nil {
		t.Error("checkJSON accepted nesting beyond the limit")
	}
}

func TestRecordRoundTripAndCRC(t *testing.T) {
	var enc encoder
	var lp lineParser
	ts := time.Date(2026, 11, 22, 5, 0, 0, 123456789, time.UTC)
	for _, src := range []string{"proxy", "proxy/agent 10.0.0.5", `q"uote\`, "tab\there", "bad\xffutf8", ""} {
		for _, data := range []string{`{"msg":"up","n":1}`, `"plain text"`, `null`, `[1,2,3]`} {
			line := enc.appendRecord(nil, ts, appendJSONString(nil, src), 42, []byte(data))
			if line[len(line)-1] != '\n' || bytes.Count(line, []byte{'\n'}) != 1 {
				t.Fatalf("line %q is not one line", line)
			}
			// The line is JSON that standard tools read.
			var v struct {
				TS   string          `json:"ts"`
				Src  string          `json:"src"`
				Seq  uint64          `json:"seq"`
				Data json.RawMessage `json:"data"`
				CRC  string          `json:"crc"`
			}
			if err := json.Unmarshal(line, &v); err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			wantSrc := strings.ToValidUTF8(src, "\uFFFD")
			if v.Src != wantSrc || v.Seq != 42 || string(v.Data) != data || v.TS != "2026-11-22T05:00:00.123456789Z" {
				t.Fatalf("decoded %+v from %q", v, line)
			}
			p, ok := lp.parse(line[:len(line)-1])
			if !ok || p.seq != 42 || !p.time.Equal(ts) || p.source() != wantSrc || string(p.data) != data {
				t.Fatalf("parse(%q) = %+v, %v", line, p, ok)
			}
			// Any single changed byte is caught.
			body := line[:len(line)-1]
			for i := range body {
				mut := bytes.Clone(body)
				mut[i] ^= 0x20
				if _, ok := lp.parse(mut); ok {
					t.Fatalf("parse accepted %q (byte %d flipped)", mut, i)
				}
			}
		}
	}
}

func TestCheckEntries(t *testing.T) {
	compacted, err := checkEntries([]Entry{
		{Source: "a", Data: json.RawMessage(`{"already":"compact"}`)},
		{Source: "a", Data: json.RawMessage(`{ "x" : [1, 2] }`)},
		{Source: "b", Data: nil},
	}, MaxLineBytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(compacted) != 1 || string(compacted[1]) != `{"x":[1,2]}` {
		t.Fatalf("compacted %v", compacted)
	}
	if _, err := checkEntries([]Entry{{Data: json.RawMessage(`{}`)}, {Data: json.RawMessage(`{bad`)}}, MaxLineBytes); err == nil || !strings.Contains(err.Error(), "entry 1") {
		t.Fatalf("invalid data: err = %v", err)
	}
	if _, err := checkEntries([]Entry{{Data: json.RawMessage(`"` + strings.Repeat("x", 5000) + `"`)}}, 4096); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("large entry: err = %v", err)
	}
	if _, err := checkEntries([]Entry{{Source: strings.Repeat("\x01", 700), Data: json.RawMessage(`1`)}}, 4096); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("large escaped source: err = %v", err)
	}
	if _, err := checkEntries([]Entry{{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), Data: json.RawMessage(`1`)}}, MaxLineBytes); err == nil {
		t.Fatal("year 10000 accepted")
	}
	for _, src := range []string{"", "plain", `q"\`, "\x00\x1f\t\n", "é日本", "bad\xffutf8\xc3"} {
		if got, want := jsonStringLen(src), len(appendJSONString(nil, src)); got != want {
			t.Errorf("jsonStringLen(%q) = %d, want %d", src, got, want)
		}
	}
}

func TestPlainWord(t *testing.T) {
	for c := range 256 {
		for pos := range 8 {
			w := []byte("abcdefgh")
			w[pos] = byte(c)
			want := true
			for _, x := range w {
				want = want && plainString[x]
			}
			if got := plainWord(binary.LittleEndian.Uint64(w)); got != want {
				t.Fatalf("plainWord(%q) = %v", w, got)
			}
		}
	}
}
