// Package secret keeps secrets (VNC and SPICE passwords) encrypted at rest: AES-256-GCM with a key kept in
// a 0600 file of the data directory. A sealed value is "sealed:v1:" followed by the base64 of the nonce and
// the ciphertext; anything else is a plaintext value stored before sealing existed, and Open returns it as
// it is (it is sealed at its next change).
package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// prefix starts every sealed value.
const prefix = "sealed:v1:"

// KeyFile is the name of the key file in a data directory.
const KeyFile = "secret.key"

// keySize is the AES-256 key size.
const keySize = 32

// Box seals and opens secrets with one key. It is safe for concurrent use.
type Box struct{ aead cipher.AEAD }

// New returns a Box for a 32-byte key.
func New(key []byte) (*Box, error) {
	if len(key) != keySize {
		return nil, fmt.Errorf("secret: key is %d bytes, want %d", len(key), keySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Box{aead: aead}, nil
}

// Ephemeral returns a Box with a random key that lives only as long as the process: for stores that do not
// outlive it (memory:), or when there is no data directory to keep a key in.
func Ephemeral() *Box {
	key := make([]byte, keySize)
	if _, err := rand.Read(key); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	b, _ := New(key)
	return b
}

// LoadOrCreate reads the key in dir/KeyFile, creating it (random, mode 0600) when missing. Several
// processes opening the same directory at once end up with the same key. An existing key file readable by
// others is made 0600.
func LoadOrCreate(dir string) (*Box, error) {
	path := filepath.Join(dir, KeyFile)
	key, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key, err = create(path)
	}
	if err != nil {
		return nil, fmt.Errorf("secret key %s: %w", path, err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return nil, fmt.Errorf("secret key %s: %w", path, err)
		}
	}
	return New(key)
}

// create writes a new random key to a temporary file and links it into place, so a concurrent creator's
// key wins or ours does, never a half-written one.
func create(path string) ([]byte, error) {
	key := make([]byte, keySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".secret-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, err
	}
	if _, err := tmp.Write(key); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return os.ReadFile(path)
		}
		return nil, err
	}
	return key, nil
}

// Seal encrypts a secret; the empty string stays empty, and a sealed value is returned as it is.
func (b *Box) Seal(plain string) (string, error) {
	if plain == "" || IsSealed(plain) {
		return plain, nil
	}
	nonce := make([]byte, b.aead.NonceSize())
	if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
		return "", err
	}
	out := b.aead.Seal(nonce, nonce, []byte(plain), []byte(prefix))
	return prefix + base64.RawStdEncoding.EncodeToString(out), nil
}

// Open decrypts a sealed value; a value that is not sealed is returned as it is.
func (b *Box) Open(sealed string) (string, error) {
	if !IsSealed(sealed) {
		return sealed, nil
	}
	raw, err := base64.RawStdEncoding.DecodeString(strings.TrimPrefix(sealed, prefix))
	if err != nil {
		return "", fmt.Errorf("secret: malformed sealed value: %w", err)
	}
	n := b.aead.NonceSize()
	if len(raw) < n {
		return "", errors.New("secret: sealed value too short")
	}
	plain, err := b.aead.Open(nil, raw[:n], raw[n:], []byte(prefix))
	if err != nil {
		return "", fmt.Errorf("secret: cannot open a sealed value (was the key file replaced?): %w", err)
	}
	return string(plain), nil
}

// IsSealed reports whether s is a sealed value.
func IsSealed(s string) bool { return strings.HasPrefix(s, prefix) }
