package supervisor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sitelink/sitelink/daemon/proc"
	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/sdk/pluginpb"
)

// ErrRefused marks a plugin binary the supervisor will not run (tampered, unsafe
// permissions, incompatible API); restarting does not help, so it fails at once.
var ErrRefused = errors.New("refused")

// checkBinary refuses a binary that others than its owner could have replaced: the file
// or a directory above it writable by everyone (sticky directories like /tmp aside, as
// only the owner may replace a file there).
func checkBinary(path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("%w: plugin binary %s: not an absolute path", ErrRefused, path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%w: plugin binary: %w", ErrRefused, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: plugin binary %s is not a regular file", ErrRefused, path)
	}
	if fi.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("%w: plugin binary %s is world-writable (mode %v); fix with chmod o-w", ErrRefused, path, fi.Mode().Perm())
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%w: plugin binary %s is not executable", ErrRefused, path)
	}
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		di, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("%w: plugin directory: %w", ErrRefused, err)
		}
		if di.Mode().Perm()&0o002 != 0 && di.Mode()&os.ModeSticky == 0 {
			return fmt.Errorf("%w: plugin binary %s is in world-writable directory %s (mode %v); fix with chmod o-w", ErrRefused, path, dir, di.Mode().Perm())
		}
		if dir == "/" || dir == "." {
			return nil
		}
	}
}

// verifySHA256 checks a binary against the checksum of its manifest, using go-plugin's
// SecureConfig.
func verifySHA256(path, want string) error {
	sum, err := hex.DecodeString(want)
	if err != nil || len(sum) != sha256.Size {
		return fmt.Errorf("%w: manifest sha256 %q is not 64 hex digits", ErrRefused, want)
	}
	ok, err := (&plugin.SecureConfig{Checksum: sum, Hash: sha256.New()}).Check(path)
	if err != nil {
		return fmt.Errorf("%w: checksum %s: %w", ErrRefused, path, err)
	}
	if !ok {
		return fmt.Errorf("%w: plugin binary %s does not match the sha256 in its manifest (modified or tampered with?)", ErrRefused, path)
	}
	return nil
}

// prober learns what a plugin binary is (its Info) by running it with sdk.InfoFlag,
// without privileges, and caches the answer per file version.
type prober struct {
	self string
	user string
	mu   sync.Mutex
	memo map[probeKey]*pluginpb.InfoResponse
}

func newProber(self, user string) *prober {
	return &prober{self: self, user: user, memo: map[probeKey]*pluginpb.InfoResponse{}}
}

type probeKey struct {
	path  string
	args  string
	size  int64
	mtime time.Time
}

func (p *prober) info(ctx context.Context, binary string, args []string, user string) (*pluginpb.InfoResponse, error) {
	fi, err := os.Stat(binary)
	if err != nil {
		return nil, fmt.Errorf("%w: plugin binary: %w", ErrRefused, err)
	}
	key := probeKey{binary, strings.Join(args, "\x00"), fi.Size(), fi.ModTime()}
	p.mu.Lock()
	if info, ok := p.memo[key]; ok {
		p.mu.Unlock()
		return info, nil
	}
	p.mu.Unlock()
	if user == "" {
		user = p.user
	}
	cmd, err := proc.Launch{Self: p.self, Binary: binary, Args: append(slices.Clip(args), sdk.InfoFlag), Priv: proc.Privileges{User: user}}.Command()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s %s: %w", binary, sdk.InfoFlag, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		err = ctx.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not a Sitelink plugin (%s %s: %v: %s)", ErrRefused, binary, binary, sdk.InfoFlag, err, bytes.TrimSpace(errb.Bytes()))
	}
	info := &pluginpb.InfoResponse{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(bytes.TrimSpace(out.Bytes()), info); err != nil {
		return nil, fmt.Errorf("%w: %s is not a Sitelink plugin (bad %s answer: %v)", ErrRefused, binary, sdk.InfoFlag, err)
	}
	p.mu.Lock()
	p.memo[key] = info
	p.mu.Unlock()
	return info, nil
}

// negotiate picks the highest API version both sides speak.
func negotiate(name string, info *pluginpb.InfoResponse, pinned int) (int, error) {
	best := 0
	for _, v := range info.GetApiVersions() {
		if int(v) == sdk.APIVersion && int(v) > best {
			best = int(v)
		}
	}
	if best == 0 {
		return 0, fmt.Errorf("%w: plugin %q speaks API version %v; sitelinkd %s speaks [%d]", ErrRefused, name, info.GetApiVersions(), "v1", sdk.APIVersion)
	}
	if pinned != 0 && pinned != best {
		return 0, fmt.Errorf("%w: plugin %q: manifest says API version %d, the binary speaks %v; sitelinkd speaks [%d]", ErrRefused, name, pinned, info.GetApiVersions(), sdk.APIVersion)
	}
	return best, nil
}

// grantedCaps decides the capabilities a plugin runs with: what its binary declares; a
// vendor plugin's manifest must allow every one of them.
func grantedCaps(spec Spec, info *pluginpb.InfoResponse) (proc.CapSet, error) {
	want, err := proc.ParseCaps(info.GetCapabilities())
	if err != nil {
		return 0, fmt.Errorf("%w: plugin %q declares %w", ErrRefused, spec.Name, err)
	}
	if !spec.Vendor {
		return want, nil
	}
	allowed, err := proc.ParseCaps(spec.Caps)
	if err != nil {
		return 0, fmt.Errorf("%w: plugin %q manifest: %w", ErrRefused, spec.Name, err)
	}
	if extra := want &^ allowed; extra != 0 {
		return 0, fmt.Errorf("%w: plugin %q needs %s, which its manifest does not grant", ErrRefused, spec.Name, extra)
	}
	return want, nil
}
