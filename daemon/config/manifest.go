package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Manifest is a vendor plugin's plugins.d/NAME.yaml.
type Manifest struct {
	// Name is the plugin's name (the NAME under plugins: in sitelink.yaml).
	Name string
	// Path is the plugin binary (absolute).
	Path string
	// SHA256 is the binary's expected SHA-256, lower-case hex.
	SHA256 string
	// APIVersion is the plugin API version the plugin speaks (>= 1).
	APIVersion int
	// Capabilities are the Linux capabilities the plugin may have (CAP_…).
	Capabilities []string
	// User runs the plugin; "" means daemon.plugin_user.
	User string
	// Args are extra command-line arguments.
	Args []string
	// File is the manifest file.
	File string
}

var manifestKeys = []string{"name", "path", "sha256", "api_version", "capabilities", "user", "args"}

// sha256RE matches a SHA-256 in hex.
var sha256RE = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)

// capNames are the Linux capabilities by number (linux/capability.h), CAP_CHOWN (0) to
// CAP_CHECKPOINT_RESTORE (40).
var capNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
	"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
	"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// LoadManifests reads every *.yaml and *.yml file in dir (not hidden ones, in name
// order). A missing dir means no manifests. Problems in the files are one *Errors;
// two manifests with the same name are an error.
func LoadManifests(dir string) ([]Manifest, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read plugin manifests: %w", err)
	}
	var out []Manifest
	var all Errors
	dropped := 0
	byName := map[string]string{}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
			continue
		}
		path := filepath.Join(dir, name)
		if st, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("read plugin manifest: %w", err)
		} else if st.IsDir() {
			continue
		}
		data, err := readFile(path)
		if err != nil {
			return nil, fmt.Errorf("read plugin manifest: %w", err)
		}
		d := newDecoder(path)
		m, nameNode := d.manifest(data)
		if first, dup := byName[m.Name]; dup && m.Name != "" {
			line, col := 1, 1
			if nameNode != nil {
				line, col = nameNode.Line, nameNode.Column
			}
			d.add(line, col, "name: plugin %q already has a manifest: %s", m.Name, first)
		}
		if len(d.errs) > 0 {
			all = append(all, d.errs...)
			dropped += d.dropped
			continue
		}
		byName[m.Name] = path
		out = append(out, m)
	}
	if err := finish(all, dropped); err != nil {
		return nil, err
	}
	return out, nil
}

// ParseManifest parses and validates one manifest; file names it in errors.
func ParseManifest(file string, data []byte) (Manifest, error) {
	d := newDecoder(file)
	m, _ := d.manifest(data)
	if err := d.err(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// manifest decodes a manifest, returning it and its name's value node.
func (d *decoder) manifest(data []byte) (Manifest, *yaml.Node) {
	m := Manifest{File: d.file}
	root, ok := d.document(data)
	if !ok {
		return m, nil
	}
	var nameNode *yaml.Node
	if isNull(root) {
		d.add(1, 1, "the manifest is empty; required keys: name, path, sha256, api_version")
		return m, nil
	}
	root = deref(root)
	if root.Kind != yaml.MappingNode {
		d.errAt(root, "expected a mapping (name, path, sha256, api_version, …), got %s", describe(root))
		return m, nil
	}
	set := map[string]bool{}
	present := d.fields(root, known{"", manifestKeys}, func(name string, key, v *yaml.Node) {
		switch name {
		case "name":
			if s, ok := d.str(name, v); ok {
				if !nameRE.MatchString(s) {
					d.errAt(v, "name: invalid plugin name %q: must match ^[a-z][a-z0-9_-]{0,31}$", truncate(s))
					return
				}
				m.Name, nameNode, set[name] = s, v, true
			}
		case "path":
			if s, ok := d.absPath(name, v); ok {
				m.Path, set[name] = s, true
			}
		case "sha256":
			if s, ok := d.str(name, v); ok {
				if !sha256RE.MatchString(s) {
					d.errAt(v, "sha256: expected 64 hex digits (sha256sum of the binary), got %q", truncate(s))
					return
				}
				m.SHA256, set[name] = strings.ToLower(s), true
			}
		case "api_version":
			if n, ok := d.integer(name, v); ok {
				if n < 1 {
					d.errAt(v, "api_version: must be at least 1, got %d", n)
					return
				}
				m.APIVersion, set[name] = n, true
			}
		case "capabilities":
			m.Capabilities = []string{}
			d.seq(name, "capability names", v, func(i int, item, use *yaml.Node) {
				s, ok := d.str(fmt.Sprintf("capabilities[%d]", i), item)
				if !ok {
					return
				}
				if !slices.Contains(capNames, s) {
					msg := fmt.Sprintf("capabilities[%d]: unknown capability %q", i, truncate(s))
					if up := "CAP_" + strings.TrimPrefix(strings.ToUpper(s), "CAP_"); slices.Contains(capNames, up) {
						msg += fmt.Sprintf(" (write %s)", up)
					} else if c := closest(s, capNames); c != "" {
						msg += fmt.Sprintf(" (did you mean %s?)", c)
					}
					d.errAt(use, "%s", msg)
					return
				}
				if slices.Contains(m.Capabilities, s) {
					d.errAt(use, "capabilities[%d]: %s is listed twice", i, s)
					return
				}
				m.Capabilities = append(m.Capabilities, s)
			})
		case "user":
			setIf(&m.User)(d.user(name, v))
		case "args":
			m.Args = []string{}
			d.seq(name, "arguments", v, func(i int, item, use *yaml.Node) {
				if s, ok := d.arg(fmt.Sprintf("args[%d]", i), item); ok {
					m.Args = append(m.Args, s)
				}
			})
		}
	})
	for _, req := range []string{"name", "path", "sha256", "api_version"} {
		if set[req] {
			continue
		}
		if k, ok := present[req]; ok {
			if isNull(root.Content[slices.Index(root.Content, k)+1]) {
				d.errAt(k, "%s: a value is required", req)
			}
			continue
		}
		d.errAt(root, "missing required key %q", req)
	}
	if len(m.Capabilities) == 0 {
		m.Capabilities = nil
	}
	if len(m.Args) == 0 {
		m.Args = nil
	}
	return m, nameNode
}

// arg reads a command-line argument: any non-null scalar, as written.
func (d *decoder) arg(path string, n *yaml.Node) (string, bool) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		d.errAt(n, "%s: expected a string, got %s", path, describe(n))
		return "", false
	}
	if _, _, ok := d.scalar(path, n); !ok {
		return "", false
	}
	if strings.ContainsRune(n.Value, 0) {
		d.errAt(n, "%s: NUL bytes are not allowed", path)
		return "", false
	}
	return n.Value, true
}
