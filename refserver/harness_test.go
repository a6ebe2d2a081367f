package refserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/driver"
	_ "github.com/openvair/openvair/driver/libvirt" // registers the "libvirt" hypervisor
	_ "github.com/openvair/openvair/driver/localfs" // registers the "localfs" storage backend
	_ "github.com/openvair/openvair/driver/nfs"     // registers the "nfs" storage backend
	"github.com/openvair/openvair/internal/hostuser"
	"github.com/openvair/openvair/internal/testenv/libvirtd"
	"github.com/openvair/openvair/internal/testenv/pg"
	"github.com/openvair/openvair/refserver"
	_ "github.com/openvair/openvair/repo/sql" // registers the "sqlite:", "postgres:" and "postgresql:" stores
	"github.com/openvair/openvair/storage"
)

func TestMain(m *testing.M) {
	code := pg.Main(m, libvirtd.CleanupCache)
	os.Exit(code)
}

// env is a real server on loopback over the SQLite store, with an admin and a reader token.
type env struct {
	t      testing.TB
	URL    string
	admin  string
	reader string
	sys    *openvair.System
	dir    string
	daemon *libvirtd.Daemon
}

type envOptions struct {
	// libvirt: "" for no hypervisor, else a URI served by a throwaway libvirtd.
	libvirt        golibvirt.ConnectURI
	maxImageSize   int64
	maxBodyBytes   int64
	storageOptions map[string]string
	// postgres runs the server on a throwaway PostgreSQL database instead of SQLite.
	postgres bool
	// system runs a throwaway system-mode libvirtd (qemu:///system, QEMU as libvirt-qemu, TCG) as a
	// real host does; libvirt is then ignored. The data directory is where a server would keep it:
	// traversable by the QEMU group only.
	system bool
	// storageBackends adds storage types served by these backends, as an embedding program does.
	storageBackends map[storage.Type]driver.StorageBackend
	// importAllow opens image imports to these ranges (loopback file servers of the tests).
	importAllow []netip.Prefix
}

// start opens an SDK on SQLite in a temp dir and serves the API on 127.0.0.1:0.
func start(t testing.TB, o envOptions) *env {
	t.Helper()
	dir := t.TempDir()
	var daemon *libvirtd.Daemon
	if o.system {
		daemon = libvirtd.StartSystem(t) // first: on a fresh host it creates the QEMU user the data directory is for
		dir = systemDataDir(t)
	}
	e := &env{t: t, dir: dir}
	dsn := "sqlite://" + filepath.Join(dir, "openvair.db")
	if o.postgres {
		dsn = pg.Start(t)
	}
	cfg := openvair.Config{DSN: dsn, DataDir: dir,
		StorageOptions: o.storageOptions, MaxImageSize: o.maxImageSize, Logger: quietLogger(), StorageBackends: o.storageBackends,
		ImportAllowCIDRs: o.importAllow}
	if o.libvirt != "" && !o.system {
		e.daemon = libvirtd.Start(t)
		cfg.Hypervisor = "libvirt"
		cfg.HypervisorOptions = map[string]string{"uri": string(o.libvirt), "socket": e.daemon.Socket()}
	}
	if o.system {
		e.daemon = daemon
		cfg.Hypervisor = "libvirt"
		// TCG: nested KVM on the test machines cannot run a Linux guest; qemu64 is a CPU TCG runs.
		// Console logs go to the daemon's own log directory, seen at its host path.
		cfg.HypervisorOptions = map[string]string{"uri": string(golibvirt.QEMUSystem), "socket": e.daemon.Socket(),
			"domain_type": "qemu", "console_log_dir": e.daemon.ConsoleLogDir()}
		cfg.DefaultCPUMode, cfg.DefaultCPUModel = "custom", "qemu64"
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sys, err := openvair.Open(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sys.Close() })
	e.sys = sys

	e.admin, err = refserver.GenerateToken()
	require.NoError(t, err)
	e.reader, err = refserver.GenerateToken()
	require.NoError(t, err)
	tokens, err := refserver.NewTokens(
		refserver.Token{Name: "admin", Role: refserver.RoleAdmin, SHA256: refserver.HashToken(e.admin)},
		refserver.Token{Name: "reader", Role: refserver.RoleReader, SHA256: refserver.HashToken(e.reader)})
	require.NoError(t, err)
	h, err := refserver.New(sys, refserver.Config{Tokens: tokens, Logger: quietLogger(), MaxImageSize: o.maxImageSize,
		MaxBodyBytes: o.maxBodyBytes})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	e.URL = srv.URL
	return e
}

// systemDataDir is a data directory as openvair-server makes it: under a world-traversable parent (/tmp),
// mode 0710 with the group of the host's QEMU user, removed when the test ends.
func systemDataDir(t testing.TB) string {
	dir, err := os.MkdirTemp("/tmp", "ovdata")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if id, ok := hostuser.QEMU(); ok {
		require.NoError(t, hostuser.MkdirTraversable(dir, id.GID))
	}
	return dir
}

// quietLogger drops the request logs (set OPENVAIR_TEST_LOG=1 to see them).
func quietLogger() *slog.Logger {
	if os.Getenv("OPENVAIR_TEST_LOG") == "1" {
		return slog.Default()
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// resp is an HTTP response with its body read.
type resp struct {
	Status int
	Header http.Header
	Body   []byte
}

// problem decodes an error body and checks that it is problem+json with the response's status.
func (r resp) problem(t testing.TB) refserver.Problem {
	t.Helper()
	require.Equal(t, "application/problem+json", r.Header.Get("Content-Type"), "body: %s", r.Body)
	var p refserver.Problem
	require.NoError(t, json.Unmarshal(r.Body, &p), "body: %s", r.Body)
	require.Equal(t, r.Status, p.Status, "body: %s", r.Body)
	return p
}

// do sends a request with a token ("" for none) and a body: nil, []byte / io.Reader (sent as is) or a
// value encoded as JSON.
func (e *env) do(method, path, token string, body any, hdr ...string) resp {
	e.t.Helper()
	var rd io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case []byte:
		rd, ct = bytes.NewReader(b), "application/octet-stream"
	case io.Reader:
		rd, ct = b, "application/octet-stream"
	case string:
		rd, ct = strings.NewReader(b), "application/json"
	default:
		j, err := json.Marshal(b)
		require.NoError(e.t, err)
		rd, ct = bytes.NewReader(j), "application/json"
	}
	req, err := http.NewRequest(method, e.URL+path, rd)
	require.NoError(e.t, err)
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer res.Body.Close()
	if res.StatusCode == http.StatusOK && strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		return resp{Status: res.StatusCode, Header: res.Header} // an event stream never ends: its answer is its status
	}
	b, err := io.ReadAll(res.Body)
	require.NoError(e.t, err)
	return resp{Status: res.StatusCode, Header: res.Header, Body: b}
}

// call is do with the admin token that requires the status and decodes the body into out (when not nil).
func (e *env) call(method, path string, body any, status int, out any) resp {
	e.t.Helper()
	r := e.do(method, path, e.admin, body)
	require.Equal(e.t, status, r.Status, "%s %s: %s", method, path, r.Body)
	if out != nil {
		require.NoError(e.t, json.Unmarshal(r.Body, out), "%s", r.Body)
	}
	return r
}

// storageDir returns a directory for a LocalFS storage.
func (e *env) storageDir(name string) string {
	p := filepath.Join(e.dir, name)
	require.NoError(e.t, os.MkdirAll(p, 0o755))
	return p
}

// localStorage creates a LocalFS directory storage through the API.
func (e *env) localStorage(name, dir string) refserver.Storage {
	e.t.Helper()
	var st refserver.Storage
	e.call("POST", "/api/v1/storages", map[string]any{"name": name, "type": "localfs", "localfs": map[string]any{"path": dir}}, 201, &st)
	return st
}

// volume creates a volume through the API.
func (e *env) volume(storageID uuid.UUID, name string, size int64) refserver.Volume {
	e.t.Helper()
	var v refserver.Volume
	e.call("POST", "/api/v1/volumes", map[string]any{"name": name, "storage_id": storageID, "format": "qcow2", "size": size}, 201, &v)
	return v
}

// iso returns a small ISO 9660 image (a volume descriptor at 32 KiB).
func iso() []byte {
	b := make([]byte, 64<<10)
	copy(b[32768:], "\x01CD001\x01")
	return b
}

// image uploads an ISO through the API.
func (e *env) image(storageID uuid.UUID, name string) refserver.Image {
	e.t.Helper()
	var img refserver.Image
	e.call("POST", "/api/v1/images?storage_id="+storageID.String()+"&name="+name, iso(), 201, &img)
	return img
}

// problemIs requires an error response with the status and, when kind is not empty, the problem kind.
func (r resp) problemIs(t testing.TB, status int, kind string) refserver.Problem {
	t.Helper()
	require.Equal(t, status, r.Status, "body: %s", r.Body)
	p := r.problem(t)
	if kind != "" {
		require.Equal(t, kind, p.Kind, "body: %s", r.Body)
	}
	return p
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
