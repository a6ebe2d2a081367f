package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSecretFilesArePrivate: whoever made the data directory and its files, the server's files that hold
// secrets are 0600 once it has started, and the directory lists nothing to others.
func TestSecretFilesArePrivate(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	require.NoError(t, os.Mkdir(dataDir, 0o755))
	for _, name := range []string{"admin.token", "tokens.json"} {
		content := "x\n"
		if name == "tokens.json" {
			content = "[]\n"
		}
		require.NoError(t, os.WriteFile(filepath.Join(dataDir, name), []byte(content), 0o644))
	}
	s := startRun(t, []string{"-listen", "127.0.0.1:0", "-data-dir", dataDir, "-libvirt-uri", "none"}, nil)
	s.stop(t)
	for _, name := range []string{"admin.token", "tokens.json", "openvair.db", "secret.key"} {
		fi, err := os.Stat(filepath.Join(dataDir, name))
		require.NoError(t, err, name)
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), name)
	}
	fi, err := os.Stat(dataDir)
	require.NoError(t, err)
	assert.Zero(t, fi.Mode().Perm()&0o007, "others get nothing in the data directory")
	assert.Zero(t, fi.Mode().Perm()&0o040, "nobody else lists it")
}
