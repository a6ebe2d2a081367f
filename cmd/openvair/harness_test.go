package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/fake"
	_ "github.com/openvair/openvair/driver/libvirt" // registers the "libvirt" hypervisor
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/internal/hostuser"
	"github.com/openvair/openvair/internal/testenv/libvirtd"
	"github.com/openvair/openvair/refserver"
	"github.com/openvair/openvair/storage"
)

// server is a reference server in this process, on loopback, with an admin token.
type server struct {
	URL   string
	Token string
	// Dir is a directory for LocalFS storages (traversable by QEMU on the system daemon).
	Dir    string
	daemon *libvirtd.Daemon
	// config is the CLI's XDG_CONFIG_HOME for this test.
	config string
}

type serverOptions struct {
	// libvirt runs VMs on a throwaway system-mode libvirtd with real QEMU (TCG); otherwise on the fake
	// hypervisor.
	libvirt bool
	// wrap, when set, wraps the handler (a slow upload for the terminal test).
	wrap func(http.Handler) http.Handler
}

// startServer opens an SDK on memory: with the real localfs backend, the fake storage backend (type "fake",
// 1 TiB per storage: deterministic sizes for golden files) and a hypervisor, and serves the reference API.
func startServer(t *testing.T, o serverOptions) *server {
	t.Helper()
	s := &server{config: t.TempDir()}
	var daemon *libvirtd.Daemon
	if o.libvirt {
		daemon = libvirtd.StartSystem(t) // first: on a fresh host it creates the QEMU user
		s.Dir = traversableDir(t)
	} else {
		s.Dir = t.TempDir()
	}
	lfs, err := localfs.New(driver.Config{DataDir: filepath.Join(s.Dir, "data")})
	require.NoError(t, err)
	cfg := openvair.Config{DSN: "memory:", DataDir: filepath.Join(s.Dir, "data"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		StorageBackends: map[storage.Type]driver.StorageBackend{"localfs": lfs, "fake": fake.NewStorage(1 << 40)},
		// Imports from the tests' loopback file servers.
		ImportAllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	if o.libvirt {
		s.daemon = daemon
		cfg.Hypervisor = "libvirt"
		cfg.HypervisorOptions = map[string]string{"uri": string(golibvirt.QEMUSystem), "socket": daemon.Socket(),
			"domain_type": "qemu", "console_log_dir": daemon.ConsoleLogDir()}
		cfg.DefaultCPUMode, cfg.DefaultCPUModel = "custom", "qemu64"
	} else {
		cfg.HypervisorInstance = fake.NewHypervisor()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sys, err := openvair.Open(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sys.Close() })

	s.Token, err = refserver.GenerateToken()
	require.NoError(t, err)
	tokens, err := refserver.NewTokens(refserver.Token{Name: "admin", Role: refserver.RoleAdmin, SHA256: refserver.HashToken(s.Token)})
	require.NoError(t, err)
	h, err := refserver.New(sys, refserver.Config{Tokens: tokens, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	if o.wrap != nil {
		h = o.wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// traversableDir is a directory QEMU (libvirt-qemu) may traverse, as openvair-server makes its data
// directory.
func traversableDir(t *testing.T) string {
	dir, err := os.MkdirTemp("/tmp", "ovcli")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if id, ok := hostuser.QEMU(); ok {
		require.NoError(t, hostuser.MkdirTraversable(dir, id.GID))
	}
	return dir
}

// result is what one run of the CLI did.
type result struct {
	Out, Err string
	Code     int
}

// run runs the CLI against the server (OPENVAIR_URL, OPENVAIR_TOKEN) with stdin and extra environment.
func (s *server) run(t *testing.T, stdin io.Reader, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.config, "XDG_CONFIG_HOME=" + s.config,
		"OPENVAIR_URL=" + s.URL, "OPENVAIR_TOKEN=" + s.Token}, env...)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return result{Out: out.String(), Err: errb.String(), Code: code}
}

// ok runs the CLI and requires success; it returns standard output.
func (s *server) ok(t *testing.T, args ...string) string {
	t.Helper()
	r := s.run(t, nil, nil, args...)
	require.Equal(t, 0, r.Code, "openvair %s\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.Out, r.Err)
	return r.Out
}

// fails runs the CLI and requires the exit code; it returns the result.
func (s *server) fails(t *testing.T, code int, args ...string) result {
	t.Helper()
	r := s.run(t, nil, nil, args...)
	require.Equal(t, code, r.Code, "openvair %s\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.Out, r.Err)
	require.NotEmpty(t, r.Err, "a failure says why on stderr")
	return r
}

// jsonOf runs the CLI with -o json and decodes its output.
func jsonOf[T any](t *testing.T, s *server, args ...string) T {
	t.Helper()
	out := s.ok(t, append(args, "-o", "json")...)
	var v T
	require.NoError(t, json.Unmarshal([]byte(out), &v), "output: %s", out)
	return v
}

var (
	uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	timeRE = regexp.MustCompile(`\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC`)
	macRE  = regexp.MustCompile(`52:54:00(:[0-9a-f]{2}){3}`)
)

// normalize makes output deterministic: ids become 00000000-0000-0000-0000-00000000000N in order of first
// appearance (same width, so columns stay aligned), times and generated MACs fixed values.
func normalize(s string) string {
	ids := map[string]string{}
	s = uuidRE.ReplaceAllStringFunc(s, func(id string) string {
		if r, ok := ids[id]; ok {
			return r
		}
		r := fmt.Sprintf("00000000-0000-0000-0000-%012d", len(ids)+1)
		ids[id] = r
		return r
	})
	s = timeRE.ReplaceAllString(s, "2000-01-01 00:00:00 UTC")
	return macRE.ReplaceAllString(s, "52:54:00:00:00:00")
}

// golden compares got, normalized, with testdata/name.golden, or rewrites the file with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	got = normalize(got)
	path := filepath.Join("testdata", name+".golden")
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run with -update to create it")
	require.Equal(t, string(want), got, "golden file %s differs (run go test -run %s -update to rewrite it)", path, t.Name())
}

// transcript collects commands and their outputs, as a terminal session shows them.
type transcript struct{ b strings.Builder }

func (tr *transcript) add(s *server, t *testing.T, args ...string) {
	t.Helper()
	out := s.ok(t, args...)
	fmt.Fprintf(&tr.b, "$ openvair %s\n%s\n", strings.Join(args, " "), out)
}
