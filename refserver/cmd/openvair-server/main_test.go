package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// server is one run of the binary's run function.
type server struct {
	url    string
	cancel context.CancelFunc
	done   chan error
	logs   *lockedWriter
}

// startRun runs the server with args and env until stop is called.
func startRun(t *testing.T, args []string, env map[string]string) *server {
	t.Helper()
	return startRunOut(t, args, env, io.Discard)
}

// startRunOut is startRun with the server's standard output going to stdout.
func startRunOut(t *testing.T, args []string, env map[string]string, stdout io.Writer) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{cancel: cancel, done: make(chan error, 1), logs: &lockedWriter{w: &bytes.Buffer{}}}
	ready := make(chan net.Addr, 1)
	getenv := func(k string) string { return env[k] }
	logs := s.logs
	go func() { s.done <- run(ctx, args, getenv, stdout, logs, func(a net.Addr) { ready <- a }) }()
	select {
	case a := <-ready:
		s.url = "http://" + a.String()
	case err := <-s.done:
		cancel()
		t.Fatalf("server did not start: %v\n%s", err, logs.String())
	case <-time.After(time.Minute):
		cancel()
		t.Fatal("server did not start in a minute")
	}
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop shuts the server down gracefully and requires a clean exit.
func (s *server) stop(t *testing.T) {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("server did not stop")
	}
}

func request(t *testing.T, method, url, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, b
}

// TestFirstStart starts the binary's server on a fresh data directory: SQLite database, default LocalFS
// storage, 0600 admin token (never logged), reader tokens from -add-token, no libvirt (VM calls 503),
// graceful shutdown, and the same state after a restart.
func TestFirstStart(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	args := []string{"-listen", "127.0.0.1:0", "-data-dir", dataDir, "-libvirt-uri", "qemu:///system", "-libvirt-socket", filepath.Join(t.TempDir(), "no-libvirtd.sock")}
	s := startRun(t, args, nil)

	info, err := os.Stat(filepath.Join(dataDir, "admin.token"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	b, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	require.NoError(t, err)
	admin := strings.TrimSpace(string(b))
	require.NotEmpty(t, admin)
	_, err = os.Stat(filepath.Join(dataDir, "openvair.db"))
	require.NoError(t, err, "the SQLite database is in the data directory")

	code, body := request(t, "GET", s.url+"/api/v1/storages", admin, "")
	require.Equal(t, 200, code, "%s", body)
	var page struct {
		Items []struct {
			ID      string `json:"id"`
			Name    string `json:"name"`
			Status  string `json:"status"`
			LocalFS struct {
				Path string `json:"path"`
			} `json:"localfs"`
		} `json:"items"`
	}
	require.NoError(t, json.Unmarshal(body, &page))
	require.Len(t, page.Items, 1)
	assert.Equal(t, "default", page.Items[0].Name)
	assert.Equal(t, "available", page.Items[0].Status)
	assert.Equal(t, filepath.Join(dataDir, "storage"), page.Items[0].LocalFS.Path)

	code, body = request(t, "POST", s.url+"/api/v1/volumes", admin, `{"name":"disk","storage_id":"`+page.Items[0].ID+`","format":"qcow2","size":1073741824}`)
	require.Equal(t, 201, code, "%s", body)
	code, body = request(t, "POST", s.url+"/api/v1/vms", admin, `{"name":"web","cpu":{"sockets":1,"cores":1,"threads":1},"memory":67108864}`)
	require.Equal(t, 503, code, "%s", body)
	assert.Contains(t, string(body), "libvirt")
	code, body = request(t, "GET", s.url+"/readyz", "", "")
	assert.Equal(t, 503, code, "not ready while the configured libvirtd is unreachable")
	assert.Contains(t, string(body), "hypervisor: ")
	code, _ = request(t, "GET", s.url+"/healthz", "", "")
	assert.Equal(t, 200, code, "alive all the same")
	code, _ = request(t, "GET", s.url+"/api/v1/volumes", "", "")
	assert.Equal(t, 401, code)
	s.stop(t)
	assert.NotContains(t, s.logs.String(), admin, "the token never appears in a log line")
	assert.Contains(t, s.logs.String(), "admin.token")

	// -add-token prints a reader token once and stores only its hash.
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"-data-dir", dataDir, "-add-token", "reader", "-token-name", "ci"},
		func(string) string { return "" }, &out, io.Discard, nil))
	reader := strings.TrimSpace(out.String())
	require.NotEmpty(t, reader)
	stored, err := os.ReadFile(filepath.Join(dataDir, "tokens.json"))
	require.NoError(t, err)
	assert.NotContains(t, string(stored), reader)
	assert.Contains(t, string(stored), `"ci"`)

	// Restart on the same directory: same admin token, same data, the reader reads and cannot write.
	s = startRun(t, args, nil)
	code, body = request(t, "GET", s.url+"/api/v1/volumes?name=disk", reader, "")
	require.Equal(t, 200, code, "%s", body)
	assert.Contains(t, string(body), `"disk"`)
	code, _ = request(t, "DELETE", s.url+"/api/v1/storages/"+page.Items[0].ID, reader, "")
	assert.Equal(t, 403, code)
	code, body = request(t, "GET", s.url+"/api/v1/storages", admin, "")
	require.Equal(t, 200, code)
	require.NoError(t, json.Unmarshal(body, &page))
	assert.Len(t, page.Items, 1, "no second default storage")
	s.stop(t)
	assert.NotContains(t, s.logs.String(), reader)
}

// TestConfigSources checks the precedence defaults < TOML < environment < flags.
func TestConfigSources(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "openvair.toml")
	require.NoError(t, os.WriteFile(file, []byte(`
listen = "127.0.0.1:9000"
data_dir = "`+dir+`/from-file"
libvirt_uri = "test:///default"
upload_timeout = "1h"
max_image_size = 1048576
[[tokens]]
name = "ci"
role = "reader"
sha256 = "`+strings.Repeat("ab", 32)+`"
`), 0o600))
	env := map[string]string{"OPENVAIR_DATA_DIR": dir + "/from-env", "OPENVAIR_ADMIN_TOKEN": "secret"}
	cfg, _, err := loadConfig([]string{"-config", file, "-libvirt-uri", "qemu:///session"}, func(k string) string { return env[k] }, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:9000", cfg.Listen, "from the file")
	assert.Equal(t, dir+"/from-env", cfg.DataDir, "the environment beats the file")
	assert.Equal(t, "qemu:///session", cfg.LibvirtURI, "a flag beats the file")
	assert.Equal(t, "sqlite://"+dir+"/from-env/openvair.db", cfg.DSN, "SQLite in the data directory by default")
	assert.Equal(t, time.Hour, cfg.UploadTimeout.Duration)
	assert.EqualValues(t, 1<<20, cfg.MaxImageSize)
	assert.Equal(t, "secret", cfg.AdminToken)
	require.Len(t, cfg.Tokens, 1)

	cfg, _, err = loadConfig(nil, func(k string) string { return map[string]string{"XDG_DATA_HOME": dir}[k] }, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "openvair"), cfg.DataDir)
	assert.Equal(t, "127.0.0.1:8080", cfg.Listen)
	assert.Equal(t, "qemu:///system", cfg.LibvirtURI)

	require.NoError(t, os.WriteFile(file, []byte("lisen = \"x\"\n"), 0o600))
	_, _, err = loadConfig([]string{"-config", file}, func(string) string { return "" }, io.Discard)
	assert.ErrorContains(t, err, "unknown keys")
}

// lockedWriter is a log sink safe for the server's goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

// import_allow takes CIDR ranges, single addresses and host names; anything else is refused.
func TestImportAllow(t *testing.T) {
	cidrs, hosts, err := importAllow([]string{"10.20.0.0/16", "192.168.1.7", "fd00::1", "Mirror.LAN"})
	require.NoError(t, err)
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("192.168.1.7/32"),
		netip.MustParsePrefix("fd00::1/128")}, cidrs)
	assert.Equal(t, []string{"mirror.lan"}, hosts)
	for _, bad := range []string{"", "http://mirror", "10.0.0.0/99", "a b"} {
		_, _, err := importAllow([]string{bad})
		assert.Error(t, err, bad)
	}
}
