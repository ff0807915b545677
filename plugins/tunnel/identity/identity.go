// Package identity owns the connector's WireGuard private key: a file in the plugin's
// state directory (mode 0600, in `wg genkey` format), generated on first start, rotated
// on request, written atomically (temporary file, fsync, rename, fsync of the
// directory). The key itself is never logged or returned; only its public half is.
package identity

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// FileName is the key file's name in the state directory.
const FileName = "private.key"

// Store is the key file.
type Store struct {
	path string
}

// New returns the store of the key in dir.
func New(dir string) *Store { return &Store{path: filepath.Join(dir, FileName)} }

// Path is the key file's path.
func (s *Store) Path() string { return s.path }

// Result says what Load found.
type Result struct {
	// Created: there was no key file, a new key was generated.
	Created bool
	// FixedMode: the file was readable by others and was made 0600 (the key may have
	// leaked: rotate it).
	FixedMode bool
}

// LoadOrCreate reads the key, or generates and stores one when there is no file. A file
// that exists but does not hold a key is an error, never silently replaced: the
// gateways know the connector by its public key.
func (s *Store) LoadOrCreate() (wgtypes.Key, Result, error) {
	k, res, err := s.load()
	if err == nil {
		return k, res, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return wgtypes.Key{}, res, err
	}
	k, err = s.generate()
	if err != nil {
		return wgtypes.Key{}, res, err
	}
	return k, Result{Created: true}, nil
}

// Rotate replaces the key with a new one and returns it. The previous key is gone:
// register the new public key with the gateways.
func (s *Store) Rotate() (wgtypes.Key, error) { return s.generate() }

func (s *Store) load() (wgtypes.Key, Result, error) {
	var res Result
	f, err := os.OpenFile(s.path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return wgtypes.Key{}, res, fmt.Errorf("private key file %s is a symbolic link: refusing it", s.path)
		}
		return wgtypes.Key{}, res, fmt.Errorf("open private key file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return wgtypes.Key{}, res, fmt.Errorf("stat private key file %s: %w", s.path, err)
	}
	if !st.Mode().IsRegular() {
		return wgtypes.Key{}, res, fmt.Errorf("private key file %s is not a regular file", s.path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		if err := f.Chmod(0o600); err != nil {
			return wgtypes.Key{}, res, fmt.Errorf("private key file %s is readable by others (mode %04o) and cannot be fixed: %w",
				s.path, st.Mode().Perm(), err)
		}
		res.FixedMode = true
	}
	buf := make([]byte, 256)
	n, err := f.Read(buf)
	if err != nil && n == 0 {
		return wgtypes.Key{}, res, fmt.Errorf("private key file %s is empty: fix or remove it (a new key must then be registered with the gateways)", s.path)
	}
	k, err := wgtypes.ParseKey(string(bytes.TrimSpace(buf[:n])))
	if err != nil {
		// Never include the content: it may be (part of) a key.
		return wgtypes.Key{}, res, fmt.Errorf("private key file %s does not hold a WireGuard private key (44 characters of base64, as `wg genkey` writes): fix or remove it (a new key must then be registered with the gateways)", s.path)
	}
	return k, res, nil
}

// generate makes a new key and stores it atomically.
func (s *Store) generate() (wgtypes.Key, error) {
	var k wgtypes.Key
	if _, err := rand.Read(k[:]); err != nil {
		return wgtypes.Key{}, fmt.Errorf("generate private key: %w", err)
	}
	// Clamp as Curve25519 wants (wgtypes.GeneratePrivateKey does the same).
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	if err := s.write(k); err != nil {
		return wgtypes.Key{}, err
	}
	return k, nil
}

func (s *Store) write(k wgtypes.Key) error {
	dir := filepath.Dir(s.path)
	tmp, err := os.CreateTemp(dir, "."+FileName+".tmp-")
	if err != nil {
		return fmt.Errorf("store private key: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("store private key: chmod %s: %w", tmp.Name(), err)
	}
	if _, err := tmp.WriteString(k.String() + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("store private key: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("store private key: fsync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("store private key: close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("store private key: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("store private key: open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("store private key: fsync %s: %w", dir, err)
	}
	return nil
}
