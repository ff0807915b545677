package sdk

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

type testInner struct {
	Port int `json:"port"`
}

type testConfig struct {
	Name  string      `json:"name"`
	Inner testInner   `json:"inner"`
	List  []testInner `json:"list"`
}

func TestDecodeConfigEmptyKeepsDefaults(t *testing.T) {
	for _, raw := range []string{"", "  \n", "null", " null "} {
		c := testConfig{Name: "default", Inner: testInner{Port: 80}}
		if err := DecodeConfig(json.RawMessage(raw), &c); err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		if c.Name != "default" || c.Inner.Port != 80 {
			t.Fatalf("%q changed the defaults: %+v", raw, c)
		}
	}
	if err := DecodeConfig(nil, &testConfig{}); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeConfigGood(t *testing.T) {
	c := testConfig{Name: "default"}
	if err := DecodeConfig(json.RawMessage(`{"inner":{"port":8080},"list":[{"port":1}]}`), &c); err != nil {
		t.Fatal(err)
	}
	want := testConfig{Name: "default", Inner: testInner{Port: 8080}, List: []testInner{{Port: 1}}}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("decoded %+v, want %+v", c, want)
	}
}

func TestDecodeConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		raw         string
		path, msg   string
		msgContains bool
	}{
		{raw: `{"bogus":1}`, path: "bogus", msg: "unknown field"},
		{raw: `{"name":5}`, path: "name", msg: "expected string, got number"},
		{raw: `{"inner":{"port":"x"}}`, path: "inner.port", msg: "expected int, got string"},
		// encoding/json gives no index for array elements.
		{raw: `{"list":[{"port":1},{"port":true}]}`, path: "list.port", msg: "expected int, got bool"},
		{raw: `{"name":"a"`, msg: "unexpected EOF"},
		{raw: `{"name":}`, msg: "invalid character", msgContains: true},
	} {
		var c testConfig
		err := DecodeConfig(json.RawMessage(tc.raw), &c)
		var fes FieldErrors
		if !errors.As(err, &fes) || len(fes) != 1 {
			t.Errorf("%s: err = %#v, want one FieldError", tc.raw, err)
			continue
		}
		if fes[0].Path != tc.path {
			t.Errorf("%s: path = %q, want %q", tc.raw, fes[0].Path, tc.path)
		}
		if got := fes[0].Message; (tc.msgContains && !strings.Contains(got, tc.msg)) || (!tc.msgContains && got != tc.msg) {
			t.Errorf("%s: message = %q, want %q", tc.raw, got, tc.msg)
		}
	}
}

func TestFieldErrors(t *testing.T) {
	var fes FieldErrors
	if fes.Err() != nil {
		t.Fatal("empty FieldErrors is an error")
	}
	fes.Add("gateways[1].endpoint", "must be host:port, got %q", "x")
	fes.Add("", "config is empty")
	err := fes.Err()
	if err == nil || err.Error() != `gateways[1].endpoint: must be host:port, got "x"; config is empty` {
		t.Fatalf("err = %v", err)
	}
	var back FieldErrors
	if !errors.As(error(fes), &back) || len(back) != 2 {
		t.Fatal("FieldErrors does not unwrap to itself")
	}
	if (FieldError{Message: "m"}).Error() != "m" {
		t.Fatal("a FieldError without a path")
	}
}
