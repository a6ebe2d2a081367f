package hostuser

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/testenv"
)

func TestLookup(t *testing.T) {
	root, err := Lookup("root")
	require.NoError(t, err)
	assert.Equal(t, Identity{User: "root", UID: 0, GID: 0, Group: "root"}, root)
	byID, err := Lookup("0")
	require.NoError(t, err)
	assert.Equal(t, root, byID, "a numeric uid works too")
	_, err = Lookup("no-such-user-openvair")
	assert.Error(t, err)

	gid, err := LookupGroup("root")
	require.NoError(t, err)
	assert.Equal(t, 0, gid)
	gid, err = LookupGroup("4242")
	require.NoError(t, err)
	assert.Equal(t, 4242, gid, "a numeric gid need not exist")
	_, err = LookupGroup("no-such-group-openvair")
	assert.Error(t, err)
}

func TestDefaultQEMUOnlyForRoot(t *testing.T) {
	id, ok := DefaultQEMU()
	if os.Geteuid() != 0 {
		assert.False(t, ok, "a non-root process cannot give files to QEMU's identity")
		return
	}
	qid, qok := QEMU()
	assert.Equal(t, qok, ok)
	assert.Equal(t, qid, id)
}

func TestMkdirTraversable(t *testing.T) {
	testenv.RequireRoot(t) // changing a directory's group to another one needs root
	base := t.TempDir()
	cases := []struct {
		name     string
		existing os.FileMode // 0: the directory does not exist yet
		gid      int
		mode     os.FileMode
	}{
		{"new, with a group", 0, 4242, 0o710},
		{"new, without a group", 0, -1, 0o700},
		{"existing private directory gains group traverse", 0o700, 4242, 0o710},
		{"existing directory keeps its other bits", 0o755, 4242, 0o755},
		{"existing directory untouched without a group", 0o750, -1, 0o750},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(base, string(rune('a'+i)))
			if c.existing != 0 {
				require.NoError(t, os.Mkdir(dir, c.existing))
				require.NoError(t, os.Chmod(dir, c.existing))
			}
			require.NoError(t, MkdirTraversable(dir, c.gid))
			fi, err := os.Stat(dir)
			require.NoError(t, err)
			assert.Equal(t, c.mode, fi.Mode().Perm())
			if c.gid >= 0 {
				assert.Equal(t, uint32(c.gid), fi.Sys().(*syscall.Stat_t).Gid)
			}
		})
	}
	f := filepath.Join(base, "file")
	require.NoError(t, os.WriteFile(f, nil, 0o600))
	assert.Error(t, AllowTraverse(f, 4242), "only directories")
	assert.Error(t, MkdirTraversable(filepath.Join(base, "missing", "child"), 4242), "the parent must exist")
}
