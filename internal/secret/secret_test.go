package secret

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSealOpen(t *testing.T) {
	b := Ephemeral()
	s, err := b.Seal("s3cret")
	require.NoError(t, err)
	assert.True(t, IsSealed(s))
	assert.NotContains(t, s, "s3cret")
	s2, err := b.Seal("s3cret")
	require.NoError(t, err)
	assert.NotEqual(t, s, s2, "a fresh nonce each time")
	again, err := b.Seal(s)
	require.NoError(t, err)
	assert.Equal(t, s, again, "sealing a sealed value is a no-op")
	p, err := b.Open(s)
	require.NoError(t, err)
	assert.Equal(t, "s3cret", p)

	empty, err := b.Seal("")
	require.NoError(t, err)
	assert.Empty(t, empty)
	legacy, err := b.Open("plain")
	require.NoError(t, err)
	assert.Equal(t, "plain", legacy, "values stored before sealing read as they are")

	_, err = Ephemeral().Open(s)
	assert.Error(t, err, "another key cannot open it")
	_, err = b.Open(prefix + "!!!")
	assert.Error(t, err)
	_, err = b.Open(prefix + "AAAA")
	assert.Error(t, err)
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	boxes := make([]*Box, 8)
	for i := range boxes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := LoadOrCreate(dir)
			assert.NoError(t, err)
			boxes[i] = b
		}()
	}
	wg.Wait()
	s, err := boxes[0].Seal("pw")
	require.NoError(t, err)
	for _, b := range boxes {
		p, err := b.Open(s)
		require.NoError(t, err, "every concurrent opener got the same key")
		assert.Equal(t, "pw", p)
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFile))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	entries, _ := os.ReadDir(dir)
	assert.Len(t, entries, 1, "no temporary file left")

	require.NoError(t, os.Chmod(filepath.Join(dir, KeyFile), 0o644))
	b, err := LoadOrCreate(dir)
	require.NoError(t, err)
	p, err := b.Open(s)
	require.NoError(t, err)
	assert.Equal(t, "pw", p)
	fi, err = os.Stat(filepath.Join(dir, KeyFile))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "a readable key file is made private")

	require.NoError(t, os.WriteFile(filepath.Join(dir, KeyFile), []byte("short"), 0o600))
	_, err = LoadOrCreate(dir)
	assert.Error(t, err)
}
