package packaging

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testBinary is a small ELF executable of the host to package: true(1). (The test binary itself would do,
// but compressing tens of MiB under the race detector takes minutes.)
func testBinary(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("true")
	require.NoError(t, err)
	p, err = filepath.EvalSymlinks(p)
	require.NoError(t, err)
	return p
}

// TestBuildDeb builds the package into a temporary directory and inspects it with dpkg-deb: name, fields,
// files with their modes and owners, the conffile, the scripts, and contents equal to the sources.
func TestBuildDeb(t *testing.T) {
	dpkgDeb := requireTool(t, "dpkg-deb", "dpkg")
	out := t.TempDir()
	path, err := BuildDeb(Options{Binary: testBinary(t), Version: "v1.2.3-rc1", OutDir: out, MTime: time.Unix(1_700_000_000, 0)})
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(out, "openvair-server_1.2.3~rc1_amd64.deb"), path)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), fi.Mode().Perm())
	entries, err := os.ReadDir(out)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary file left")

	dpkg := func(args ...string) string {
		b, err := exec.Command(dpkgDeb, args...).CombinedOutput()
		require.NoError(t, err, "dpkg-deb %v: %s", args, b)
		return string(b)
	}
	fields := map[string]string{"Package": "openvair-server", "Version": "1.2.3~rc1", "Architecture": "amd64",
		"Recommends": "libvirt-daemon-system, qemu-system-x86, qemu-utils", "Depends": "", "Pre-Depends": "", "Section": "admin"}
	for k, want := range fields {
		assert.Equal(t, want, strings.TrimSpace(dpkg("-f", path, k)), k)
	}
	assert.Contains(t, dpkg("-f", path, "Maintainer"), "openvair")

	// dpkg-deb -c: "-rwxr-xr-x root/root 43002112 2026-12-02 14:40 ./usr/bin/openvair-server"
	listed := map[string][2]string{} // path -> mode, owner
	for line := range strings.SplitSeq(strings.TrimSpace(dpkg("-c", path)), "\n") {
		f := strings.Fields(line)
		require.GreaterOrEqual(t, len(f), 6, line)
		listed[strings.TrimPrefix(f[len(f)-1], ".")] = [2]string{f[0], f[1]}
	}
	for p, want := range map[string][2]string{
		BinaryPath:       {"-rwxr-xr-x", "root/root"},
		UnitPath:         {"-rw-r--r--", "root/root"},
		ConfigPath:       {"-rw-------", "root/root"},
		HardeningPath:    {"-rw-r--r--", "root/root"},
		"/etc/openvair/": {"drwxr-xr-x", "root/root"},
	} {
		assert.Equal(t, want, listed[p], p)
	}
	for p := range listed {
		assert.False(t, strings.HasPrefix(p, "/var/lib/openvair"), "the data directory is not the package's: %s", p)
	}

	ctl := filepath.Join(t.TempDir(), "control")
	dpkg("-e", path, ctl)
	conffiles, err := os.ReadFile(filepath.Join(ctl, "conffiles"))
	require.NoError(t, err)
	assert.Equal(t, ConfigPath, strings.TrimSpace(string(conffiles)), "the configuration is a conffile (kept on upgrade and remove)")
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		fi, err := os.Stat(filepath.Join(ctl, s))
		require.NoError(t, err, s)
		assert.Equal(t, os.FileMode(0o755), fi.Mode().Perm(), s)
		b, err := exec.Command("sh", "-n", filepath.Join(ctl, s)).CombinedOutput()
		assert.NoError(t, err, "%s: %s", s, b)
	}
	postrm, err := os.ReadFile(filepath.Join(ctl, "postrm"))
	require.NoError(t, err)
	assert.NotContains(t, string(postrm), "/var/lib/openvair\n", "purge keeps the data directory")

	root := filepath.Join(t.TempDir(), "root")
	dpkg("-x", path, root)
	for p, want := range map[string][]byte{UnitPath: Unit(), ConfigPath: Config(), HardeningPath: Hardening()} {
		got, err := os.ReadFile(filepath.Join(root, p))
		require.NoError(t, err, p)
		assert.Equal(t, string(want), string(got), p)
	}
	bin, err := os.ReadFile(filepath.Join(root, BinaryPath))
	require.NoError(t, err)
	orig, err := os.ReadFile(testBinary(t))
	require.NoError(t, err)
	assert.True(t, bytes.Equal(orig, bin), "the binary is packaged as given")
}

// TestBuildDebErrors: what BuildDeb refuses, as *Error naming the step.
func TestBuildDebErrors(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "script")
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755))
	plain := filepath.Join(dir, "plain")
	require.NoError(t, os.WriteFile(plain, []byte("x"), 0o644))
	cases := []struct {
		name string
		opt  Options
		is   error // errors.Is target, if any
		want string
	}{
		{"no version", Options{Binary: testBinary(t)}, nil, "version is required"},
		{"no binary", Options{Version: "1.0.0"}, nil, "binary's path is required"},
		{"missing binary", Options{Version: "1.0.0", Binary: filepath.Join(dir, "nope")}, os.ErrNotExist, "nope"},
		{"not executable", Options{Version: "1.0.0", Binary: plain}, ErrNotExecutable, "plain"},
		{"not ELF", Options{Version: "1.0.0", Binary: script}, ErrNotExecutable, "script"},
		{"a directory", Options{Version: "1.0.0", Binary: dir}, ErrNotExecutable, ""},
		{"other architecture", Options{Version: "1.0.0", Binary: testBinary(t), Arch: "arm64"}, ErrWrongArch, "EM_AARCH64"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.opt.OutDir = t.TempDir()
			_, err := BuildDeb(c.opt)
			require.Error(t, err)
			var e *Error
			require.True(t, errors.As(err, &e), "%T", err)
			assert.ErrorContains(t, err, c.want)
			if c.is != nil {
				assert.ErrorIs(t, err, c.is)
			}
			entries, _ := os.ReadDir(c.opt.OutDir)
			assert.Empty(t, entries, "nothing written")
		})
	}
}
