package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/hostuser"
	"github.com/openvair/openvair/internal/testenv/libvirtd"
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

// TestDefaultStorageReachableAfterLibvirtArrives: a data directory and default storage made before the host
// had a QEMU user (0700, root's group) are made traversable by QEMU's group at the next start.
func TestDefaultStorageReachableAfterLibvirtArrives(t *testing.T) {
	libvirtd.EnsureQEMUUser(t)
	qemu, ok := hostuser.DefaultQEMU()
	require.True(t, ok)
	dataDir := filepath.Join(t.TempDir(), "data")
	args := []string{"-listen", "127.0.0.1:0", "-data-dir", dataDir, "-libvirt-uri", "none"}
	startRun(t, args, nil).stop(t) // first start: the default storage is recorded
	dirs := []string{dataDir, filepath.Join(dataDir, "storage")}
	for _, p := range dirs { // as a start before libvirt was installed left them
		require.NoError(t, os.Chown(p, 0, 0))
		require.NoError(t, os.Chmod(p, 0o700))
	}
	startRun(t, args, nil).stop(t)
	for _, p := range dirs {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o010), fi.Mode().Perm()&0o070, "%s: the QEMU group may traverse", p)
		assert.Zero(t, fi.Mode().Perm()&0o007, "%s: nothing for others", p)
		assert.Equal(t, uint32(qemu.GID), fi.Sys().(*syscall.Stat_t).Gid, p)
	}
}
