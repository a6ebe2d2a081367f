package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// noEnv clears the OPENVAIR_URL/OPENVAIR_TOKEN overrides so that the configured remotes are used.
var noEnv = []string{"OPENVAIR_URL=", "OPENVAIR_TOKEN="}

// Remotes are kept in $XDG_CONFIG_HOME/openvair/config.yaml (0600, in a 0700 directory); a token file is
// read at every call, a token given on stdin is stored; --remote and the environment override the current
// remote.
func TestRemotes(t *testing.T) {
	s := startServer(t, serverOptions{})
	tokFile := filepath.Join(t.TempDir(), "admin.token")
	require.NoError(t, os.WriteFile(tokFile, []byte(s.Token+"\n"), 0o600))

	r := s.run(t, nil, noEnv, "storage", "list")
	assert.Equal(t, 2, r.Code, "no remote yet: %s", r.Err)
	assert.Contains(t, r.Err, "openvair remote add")

	r = s.run(t, nil, noEnv, "remote", "add", "lab", s.URL, "--token-file", tokFile)
	require.Equal(t, 0, r.Code, r.Err)
	path := filepath.Join(s.config, "openvair", "config.yaml")
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	di, err := os.Stat(filepath.Dir(path))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), di.Mode().Perm())
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.NotContains(t, string(raw), s.Token, "the path is stored, not the token")
	var cfg struct {
		Current string `yaml:"current"`
		Remotes map[string]struct {
			URL       string `yaml:"url"`
			TokenFile string `yaml:"token_file"`
		} `yaml:"remotes"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &cfg))
	assert.Equal(t, "lab", cfg.Current)
	assert.Equal(t, tokFile, cfg.Remotes["lab"].TokenFile)

	r = s.run(t, nil, noEnv, "storage", "list")
	require.Equal(t, 0, r.Code, r.Err)
	assert.Contains(t, r.Out, "NAME")

	// The token file is read at call time: a rotated (here: wrong) token is used at once.
	require.NoError(t, os.WriteFile(tokFile, []byte("rotated"), 0o600))
	r = s.run(t, nil, noEnv, "storage", "list")
	assert.Equal(t, 6, r.Code, r.Err)
	require.NoError(t, os.WriteFile(tokFile, []byte(s.Token), 0o600))

	// A token on standard input is stored.
	r = s.run(t, strings.NewReader(s.Token+"\n"), noEnv, "remote", "add", "direct", s.URL+"/", "--token-stdin")
	require.Equal(t, 0, r.Code, r.Err)
	raw, err = os.ReadFile(path)
	require.NoError(t, err)
	assert.Contains(t, string(raw), s.Token)
	r = s.run(t, nil, noEnv, "remote", "add", "broken", "http://127.0.0.1:1", "--token", "x")
	require.Equal(t, 0, r.Code, r.Err)

	r = s.run(t, nil, noEnv, "remote", "list")
	require.Equal(t, 0, r.Code, r.Err)
	assert.Contains(t, r.Out, "lab")
	r = s.run(t, nil, noEnv, "remote", "list", "-o", "json")
	require.Equal(t, 0, r.Code, r.Err)
	assert.NotContains(t, r.Out, s.Token, "tokens are never printed")

	r = s.run(t, nil, noEnv, "--remote", "broken", "storage", "list", "--timeout", "2s")
	assert.Equal(t, 5, r.Code, "--remote wins: %s", r.Err)
	r = s.run(t, nil, append(noEnv, "OPENVAIR_REMOTE=broken"), "storage", "list", "--timeout", "2s")
	assert.Equal(t, 5, r.Code, "OPENVAIR_REMOTE: %s", r.Err)
	r = s.run(t, nil, []string{"OPENVAIR_URL=http://127.0.0.1:1"}, "storage", "list", "--timeout", "2s")
	assert.Equal(t, 5, r.Code, "OPENVAIR_URL overrides the current remote: %s", r.Err)
	r = s.run(t, nil, noEnv, "--remote", "direct", "storage", "list")
	assert.Equal(t, 0, r.Code, r.Err)
	r = s.run(t, nil, noEnv, "--remote", "nope", "storage", "list")
	assert.Equal(t, 2, r.Code, r.Err)

	r = s.run(t, nil, noEnv, "remote", "use", "direct")
	require.Equal(t, 0, r.Code, r.Err)
	r = s.run(t, nil, noEnv, "remote", "show")
	require.Equal(t, 0, r.Code, r.Err)
	assert.Contains(t, r.Out, "name:    direct")
	assert.Contains(t, r.Out, "token:   given directly")
	r = s.run(t, nil, noEnv, "remote", "use", "nope")
	assert.Equal(t, 3, r.Code, r.Err)
	r = s.run(t, nil, noEnv, "remote", "remove", "direct")
	require.Equal(t, 0, r.Code, r.Err)
	r = s.run(t, nil, noEnv, "storage", "list")
	assert.Equal(t, 2, r.Code, "the current remote was removed: %s", r.Err)
	r = s.run(t, nil, noEnv, "remote", "add", "bad", "localhost:8080")
	assert.Equal(t, 2, r.Code, r.Err)
	fi, err = os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "still 0600 after rewrites")
}

// remote list shows each remote's URL, where its token comes from, and which is current.
func TestRemoteListGolden(t *testing.T) {
	s := startServer(t, serverOptions{})
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	s.ok(t, "--config", cfg, "remote", "add", "lab", "http://10.0.0.5:8080", "--token-file", "/etc/openvair/lab.token")
	r := s.run(t, strings.NewReader("s3cret\n"), nil, "--config", cfg, "remote", "add", "ci", "https://ci.example:8443/", "--token", "-")
	require.Equal(t, 0, r.Code, r.Err)
	s.ok(t, "--config", cfg, "remote", "add", "anon", "http://127.0.0.1:8080")
	var tr transcript
	tr.add(s, t, "--config", cfg, "remote", "list")
	tr.add(s, t, "--config", cfg, "remote", "show", "ci")
	tr.add(s, t, "--config", cfg, "remote", "list", "-o", "yaml")
	golden(t, "remote-list", strings.ReplaceAll(tr.b.String(), cfg, "/home/user/.config/openvair/config.yaml"))
}

// The completion command writes scripts for bash, zsh and fish, and show/delete complete names.
func TestCompletion(t *testing.T) {
	s := startServer(t, serverOptions{})
	for _, sh := range []string{"bash", "zsh", "fish"} {
		out := s.ok(t, "completion", sh)
		assert.Contains(t, out, "openvair", sh)
	}
	s.ok(t, "storage", "create", "pool", "--type", "fake", "--config", "name=pool")
	s.ok(t, "storage", "create", "pond", "--type", "fake", "--config", "name=pond")
	out := s.ok(t, "__complete", "storage", "show", "po")
	assert.Contains(t, out, "pool\t")
	assert.Contains(t, out, "pond\t")
	out = s.ok(t, "__complete", "storage", "delete", "poo")
	assert.Contains(t, out, "pool\t")
	assert.NotContains(t, out, "pond")
	out = s.ok(t, "__complete", "volume", "create", "x", "--storage", "")
	assert.Contains(t, out, "pool")
	out = s.ok(t, "__complete", "storage", "create", "x", "--type", "")
	assert.Contains(t, out, "localfs")
	assert.Contains(t, out, "fake")
}
