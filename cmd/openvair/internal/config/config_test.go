package config

import (
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The file is 0600 in a 0700 directory, and survives a load.
func TestSaveModesAndRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cfg", "openvair", "config.yaml")
	c, err := Load(path)
	require.NoError(t, err)
	assert.Empty(t, c.Remotes, "a missing file is an empty configuration")
	require.NoError(t, c.Add("lab", Remote{URL: "http://10.0.0.5:8080/", TokenFile: "/etc/openvair/lab.token"}))
	require.NoError(t, c.Add("ci", Remote{URL: "https://ci.example:8443", Token: "s3cret"}))
	require.NoError(t, c.Save(path))

	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	di, err := os.Stat(filepath.Dir(path))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), di.Mode().Perm())

	got, err := Load(path)
	require.NoError(t, err)
	assert.Equal(t, "lab", got.Current, "the first remote added is current")
	assert.Equal(t, Remote{URL: "http://10.0.0.5:8080", TokenFile: "/etc/openvair/lab.token"}, got.Remotes["lab"])
	assert.Equal(t, []string{"ci", "lab"}, got.Names())
}

// A save replaces the file by rename: an existing file with looser permissions ends up 0600, no temporary
// file is left behind, and concurrent readers never see a partial file.
func TestSaveIsAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	require.NoError(t, os.WriteFile(path, []byte("current: old\n"), 0o644))
	old, err := os.Open(path) // keeps the original file: a rename leaves its content alone
	require.NoError(t, err)
	defer old.Close()

	c := &Config{}
	for i := 0; i < 50; i++ {
		require.NoError(t, c.Add("r"+string(rune('a'+i%26))+string(rune('a'+i/26)), Remote{URL: "http://h:1", TokenFile: "/t"}))
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			got, err := Load(path)
			if !assert.NoError(t, err) {
				return
			}
			if got.Current != "old" {
				assert.Len(t, got.Remotes, 50, "a reader sees the old file or the whole new one")
			}
		}
	}()
	for i := 0; i < 20; i++ {
		require.NoError(t, c.Save(path))
	}
	close(stop)
	wg.Wait()

	after, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), after.Mode().Perm())
	b, err := io.ReadAll(old)
	require.NoError(t, err)
	assert.Equal(t, "current: old\n", string(b), "replaced by rename, not rewritten in place")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file left")
}

// A write that cannot be completed (here the rename: the path is a non-empty directory) changes nothing and
// leaves no temporary file.
func TestWriteFileAtomicFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	require.NoError(t, os.Mkdir(path, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(path, "keep"), []byte("x"), 0o600))
	require.Error(t, WriteFileAtomic(path, []byte("current: b\n")))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file left")
	b, err := os.ReadFile(filepath.Join(path, "keep"))
	require.NoError(t, err)
	assert.Equal(t, "x", string(b))
}

func TestAddUseRemove(t *testing.T) {
	c := &Config{}
	require.Error(t, c.Add("bad name", Remote{URL: "http://h:1"}))
	require.Error(t, c.Add("x", Remote{URL: "ftp://h"}))
	require.Error(t, c.Add("x", Remote{URL: "localhost:8080"}))
	require.NoError(t, c.Add("a", Remote{URL: "http://a:1"}))
	require.NoError(t, c.Add("b", Remote{URL: "http://b:1"}))
	assert.Equal(t, "a", c.Current)
	require.NoError(t, c.Use("b"))
	assert.Equal(t, "b", c.Current)
	require.ErrorIs(t, c.Use("zz"), ErrNoRemote)
	require.NoError(t, c.Remove("b"))
	assert.Empty(t, c.Current)
	require.ErrorIs(t, c.Remove("b"), ErrNoRemote)
}

// The token file is read at each call, so a rotated token is picked up; a direct token wins.
func TestReadToken(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tok")
	require.NoError(t, os.WriteFile(p, []byte("one\n"), 0o600))
	r := Remote{URL: "http://h:1", TokenFile: p}
	tok, err := r.ReadToken()
	require.NoError(t, err)
	assert.Equal(t, "one", tok)
	require.NoError(t, os.WriteFile(p, []byte("two"), 0o600))
	tok, err = r.ReadToken()
	require.NoError(t, err)
	assert.Equal(t, "two", tok)
	r.Token = "direct"
	tok, err = r.ReadToken()
	require.NoError(t, err)
	assert.Equal(t, "direct", tok)
	_, err = Remote{TokenFile: p + ".missing"}.ReadToken()
	require.Error(t, err)
}
