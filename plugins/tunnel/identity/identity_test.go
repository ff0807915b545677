package identity

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func TestCreateThenLoad(t *testing.T) {
	dir := t.TempDir()
	s := New(dir)
	k, res, err := s.LoadOrCreate()
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created || k == (wgtypes.Key{}) {
		t.Fatalf("first start: created=%v", res.Created)
	}
	st, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %04o, want 0600", st.Mode().Perm())
	}
	b, _ := os.ReadFile(s.Path())
	if strings.TrimSpace(string(b)) != k.String() {
		t.Fatal("file does not hold the key in wg genkey format")
	}
	// wg's clamping: a valid Curve25519 private key.
	if k[0]&7 != 0 || k[31]&128 != 0 || k[31]&64 == 0 {
		t.Fatal("key is not clamped")
	}
	k2, res, err := s.LoadOrCreate()
	if err != nil || res.Created || k2 != k {
		t.Fatalf("second start: %v created=%v same=%v", err, res.Created, k2 == k)
	}
	// No temporary files are left.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("state dir has %d entries, want only the key", len(ents))
	}
}

func TestRotate(t *testing.T) {
	s := New(t.TempDir())
	k1, _, err := s.LoadOrCreate()
	if err != nil {
		t.Fatal(err)
	}
	k2, err := s.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if k2 == k1 || k2.PublicKey() == k1.PublicKey() {
		t.Fatal("rotation kept the key")
	}
	k3, _, err := s.LoadOrCreate()
	if err != nil || k3 != k2 {
		t.Fatalf("after rotation the file holds another key: %v", err)
	}
}

func TestFixesMode(t *testing.T) {
	s := New(t.TempDir())
	k, _, _ := s.LoadOrCreate()
	if err := os.Chmod(s.Path(), 0o644); err != nil {
		t.Fatal(err)
	}
	k2, res, err := s.LoadOrCreate()
	if err != nil || !res.FixedMode || k2 != k {
		t.Fatalf("err=%v fixed=%v", err, res.FixedMode)
	}
	st, _ := os.Stat(s.Path())
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %04o", st.Mode().Perm())
	}
}

func TestBadFileIsAnError(t *testing.T) {
	dir := t.TempDir()
	s := New(dir)
	secret := "c2VjcmV0LXNlY3JldC1zZWNyZXQ="
	if err := os.WriteFile(s.Path(), []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := s.LoadOrCreate()
	if err == nil || !strings.Contains(err.Error(), "does not hold a WireGuard private key") {
		t.Fatalf("got %v", err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatal("the error shows the file's content")
	}
	// The bad file is left alone (not replaced by a new identity).
	b, _ := os.ReadFile(s.Path())
	if string(b) != secret+"\n" {
		t.Fatal("bad key file was replaced")
	}
	if err := os.WriteFile(s.Path(), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.LoadOrCreate(); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Fatalf("empty file: %v", err)
	}
}

func TestSymlinkRefused(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "other")
	k, _ := wgtypes.GeneratePrivateKey()
	os.WriteFile(other, []byte(k.String()), 0o600)
	s := New(dir)
	if err := os.Symlink(other, s.Path()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.LoadOrCreate(); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("got %v", err)
	}
}
