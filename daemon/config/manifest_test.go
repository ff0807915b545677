package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const goodSHA = "3b1f0a2e4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7"

func writeManifests(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadManifestsGood(t *testing.T) {
	dir := writeManifests(t, map[string]string{
		"hello.yaml": "name: hello\npath: /opt/acme/hello\nsha256: " + strings.ToUpper(goodSHA) +
			"\napi_version: 1\ncapabilities: [CAP_NET_ADMIN, CAP_NET_RAW]\nuser: acme\nargs: [--port, 80, -v]\n",
		"min.yml":      "name: min\npath: /opt/min\nsha256: " + goodSHA + "\napi_version: 2\ncapabilities: []\n",
		".hidden.yaml": "not: a manifest\n",
		"README":       "ignored",
		"notes.txt":    "ignored",
	})
	if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	ms, err := LoadManifests(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Manifest{
		{Name: "hello", Path: "/opt/acme/hello", SHA256: goodSHA, APIVersion: 1,
			Capabilities: []string{"CAP_NET_ADMIN", "CAP_NET_RAW"}, User: "acme", Args: []string{"--port", "80", "-v"},
			File: filepath.Join(dir, "hello.yaml")},
		{Name: "min", Path: "/opt/min", SHA256: goodSHA, APIVersion: 2, File: filepath.Join(dir, "min.yml")},
	}
	if !reflect.DeepEqual(ms, want) {
		t.Errorf("LoadManifests =\n%+v\nwant\n%+v", ms, want)
	}
}

func TestLoadManifestsMissingDir(t *testing.T) {
	ms, err := LoadManifests(filepath.Join(t.TempDir(), "plugins.d"))
	if err != nil || ms != nil {
		t.Errorf("LoadManifests(missing) = %v, %v; want nothing", ms, err)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadManifests(file); err == nil {
		t.Error("LoadManifests(a file) succeeded")
	}
}

func TestLoadManifestsBad(t *testing.T) {
	ok := "path: /opt/x\nsha256: " + goodSHA + "\napi_version: 1\n"
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"bad sha256", map[string]string{"a.yaml": "name: a\npath: /opt/a\nsha256: abc123\napi_version: 1\n"},
			[]string{`a.yaml:3:9: sha256: expected 64 hex digits (sha256sum of the binary), got "abc123"`}},
		{"sha256 not hex", map[string]string{"a.yaml": "name: a\npath: /opt/a\nsha256: " + strings.Repeat("g", 64) + "\napi_version: 1\n"},
			[]string{`a.yaml:3:9: sha256: expected 64 hex digits`}},
		{"unknown capability", map[string]string{"a.yaml": "name: a\n" + ok + "capabilities: [CAP_NET_ADMIN, CAP_NET_ADMN, net_raw, CAP_FLY]\n"},
			[]string{
				`a.yaml:5:31: capabilities[1]: unknown capability "CAP_NET_ADMN" (did you mean CAP_NET_ADMIN?)`,
				`a.yaml:5:45: capabilities[2]: unknown capability "net_raw" (write CAP_NET_RAW)`,
				`a.yaml:5:54: capabilities[3]: unknown capability "CAP_FLY"`,
			}},
		{"capability twice", map[string]string{"a.yaml": "name: a\n" + ok + "capabilities: [CAP_BPF, CAP_BPF]\n"},
			[]string{`a.yaml:5:25: capabilities[1]: CAP_BPF is listed twice`}},
		{"duplicate names", map[string]string{
			"a.yaml": "name: same\n" + ok,
			"b.yaml": "name: same\n" + ok,
		}, []string{`b.yaml:1:7: name: plugin "same" already has a manifest: `}},
		{"missing keys", map[string]string{"a.yaml": "name: a\nsha256:\n"},
			[]string{
				`a.yaml:1:1: missing required key "path"`,
				`a.yaml:1:1: missing required key "api_version"`,
				`a.yaml:2:1: sha256: a value is required`,
			}},
		{"empty file", map[string]string{"a.yaml": "# nothing\n"},
			[]string{`a.yaml:1:1: the manifest is empty; required keys: name, path, sha256, api_version`}},
		{"unknown key", map[string]string{"a.yaml": "name: a\n" + ok + "caps: []\n"},
			[]string{`a.yaml:5:1: unknown top-level key "caps"; known keys: name, path, sha256, api_version, capabilities, user, args`}},
		{"bad name, relative path, api_version 0", map[string]string{"a.yaml": "name: A\npath: opt/a\nsha256: " + goodSHA + "\napi_version: 0\n"},
			[]string{
				`a.yaml:1:7: name: invalid plugin name "A"`,
				`a.yaml:2:7: path: must be an absolute path, got "opt/a"`,
				`a.yaml:4:14: api_version: must be at least 1, got 0`,
			}},
		{"api_version as text", map[string]string{"a.yaml": "name: a\npath: /a\nsha256: " + goodSHA + "\napi_version: v1\n"},
			[]string{`a.yaml:4:14: api_version: expected a whole number, got "v1"`}},
		{"errors in two files", map[string]string{
			"a.yaml": "name: a\n" + ok + "user: \"bad user\"\n",
			"b.yaml": "name: b\n" + ok + "args: [[nested]]\n",
		}, []string{
			`a.yaml:5:7: user: "bad user" is not a valid user name`,
			`b.yaml:5:8: args[0]: expected a string, got a list`,
		}},
		{"syntax error", map[string]string{"a.yaml": "name: a\npath: [\n"},
			[]string{`a.yaml:2:7: YAML syntax error: `}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeManifests(t, tc.files)
			ms, err := LoadManifests(dir)
			if err == nil {
				t.Fatalf("LoadManifests accepted them: %+v", ms)
			}
			var got []string
			for _, l := range errorLines(t, err) {
				got = append(got, strings.TrimPrefix(l, dir+"/"))
			}
			ok := len(got) == len(tc.want)
			for i := 0; ok && i < len(got); i++ {
				ok = strings.HasPrefix(got[i], tc.want[i])
			}
			if !ok {
				t.Errorf("got:\n  %s\nwant (prefixes):\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func TestParseManifest(t *testing.T) {
	m, err := ParseManifest("m.yaml", []byte("name: a\npath: /a\nsha256: "+goodSHA+"\napi_version: 1\n"))
	if err != nil || m.Name != "a" || m.File != "m.yaml" || m.User != "" || m.Capabilities != nil {
		t.Errorf("ParseManifest = %+v, %v", m, err)
	}
	_, err = ParseManifest("m.yaml", []byte("name: a\n"))
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Errorf("ParseManifest(incomplete) = %v", err)
	}
}

func TestLoadManifestsUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		// root reads anything; use a dangling symlink instead.
		dir := t.TempDir()
		if err := os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "x.yaml")); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadManifests(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("LoadManifests(dangling symlink) = %v", err)
		}
		return
	}
	dir := writeManifests(t, map[string]string{"x.yaml": "name: x\n"})
	if err := os.Chmod(filepath.Join(dir, "x.yaml"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadManifests(dir); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("LoadManifests(unreadable) = %v", err)
	}
}

func TestCapNames(t *testing.T) {
	if len(capNames) != 41 || capNames[0] != "CAP_CHOWN" || capNames[12] != "CAP_NET_ADMIN" || capNames[40] != "CAP_CHECKPOINT_RESTORE" {
		t.Errorf("capability table is off: %d entries", len(capNames))
	}
}
