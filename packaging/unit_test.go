package packaging

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// requireTool returns the path of a host tool; without it the test skips, or fails under
// OPENVAIR_REQUIRE_ALL=1.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := name + " not found (apt-get install " + pkg + ")"
	if os.Getenv("OPENVAIR_REQUIRE_ALL") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// stubUnit writes the unit into a fresh directory with ExecStart on a stub executable there (verify fails
// on a missing binary), and returns the directory and the unit's path.
func stubUnit(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	stub := filepath.Join(dir, "openvair-server")
	require.NoError(t, os.WriteFile(stub, []byte("#!/bin/sh\nexit 0\n"), 0o755))
	unit := bytes.ReplaceAll(Unit(), []byte(BinaryPath+" "), []byte(stub+" "))
	require.NotEqual(t, Unit(), unit, "ExecStart names "+BinaryPath)
	path := filepath.Join(dir, "openvair-server.service")
	require.NoError(t, os.WriteFile(path, unit, 0o644))
	return dir, path
}

// verify runs systemd-analyze verify on the unit and fails on any complaint about it. Lines about other
// units (the host's own libvirtd.service, say) are only logged.
func verify(t *testing.T, unitDir, unitPath string) {
	t.Helper()
	bin := requireTool(t, "systemd-analyze", "systemd")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "verify", unitPath)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_COLOR=0", "SYSTEMD_PAGER=")
	out, err := cmd.CombinedOutput()
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, "openvair-server") || strings.Contains(line, unitDir) {
			t.Errorf("systemd-analyze verify: %s", line)
		} else if strings.TrimSpace(line) != "" {
			t.Logf("systemd-analyze verify (another unit): %s", line)
		}
	}
	require.NoError(t, err, "systemd-analyze verify %s:\n%s", unitPath, out)
}

// TestUnitVerifies: systemd-analyze verify finds nothing to say about the unit, alone and with the optional
// hardening drop-in.
func TestUnitVerifies(t *testing.T) {
	t.Run("unit", func(t *testing.T) {
		dir, path := stubUnit(t)
		verify(t, dir, path)
	})
	t.Run("with hardening.conf", func(t *testing.T) {
		dir, path := stubUnit(t)
		require.NoError(t, os.Mkdir(filepath.Join(dir, "openvair-server.service.d"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "openvair-server.service.d", "hardening.conf"), Hardening(), 0o644))
		verify(t, dir, path)
	})
	t.Run("a bad key is caught", func(t *testing.T) {
		// The check itself: verify reads the drop-ins beside the unit and reports what it ignores.
		bin := requireTool(t, "systemd-analyze", "systemd")
		dir, path := stubUnit(t)
		require.NoError(t, os.Mkdir(filepath.Join(dir, "openvair-server.service.d"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "openvair-server.service.d", "x.conf"), []byte("[Service]\nProtectSytem=strict\n"), 0o644))
		out, _ := exec.Command(bin, "verify", path).CombinedOutput()
		assert.Contains(t, string(out), "ProtectSytem")
	})
}

// unitDirectives parses a unit file into section.key -> values (comments and blank lines skipped).
func unitDirectives(b []byte) map[string][]string {
	out := map[string][]string{}
	section := ""
	for line := range strings.SplitSeq(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, _ := strings.Cut(line, "=")
			out[section+"."+k] = append(out[section+"."+k], v)
		}
	}
	return out
}

// TestUnitContents pins what the unit promises: the command line, root, libvirtd ordering, restarts, the
// state directory, and no setting that gives the service a mount namespace of its own (mounts of
// device-mode storages would then stay invisible to QEMU).
func TestUnitContents(t *testing.T) {
	d := unitDirectives(Unit())
	assert.Equal(t, []string{BinaryPath + " -config " + ConfigPath}, d["Service.ExecStart"])
	assert.Equal(t, []string{"root"}, d["Service.User"])
	assert.Contains(t, d["Unit.After"][0], "libvirtd.service")
	assert.Contains(t, d["Unit.Wants"][0], "libvirtd.service")
	assert.Equal(t, []string{"on-failure"}, d["Service.Restart"])
	assert.Equal(t, []string{"openvair"}, d["Service.StateDirectory"])
	assert.Equal(t, []string{"yes"}, d["Service.NoNewPrivileges"])
	assert.Equal(t, []string{"AF_UNIX AF_INET AF_INET6 AF_NETLINK"}, d["Service.RestrictAddressFamilies"])
	assert.Contains(t, d["Service.CapabilityBoundingSet"][0], "CAP_SYS_ADMIN", "device-mode storages mount filesystems")
	assert.Contains(t, d["Service.SystemCallFilter"][0], "@mount")
	assert.Equal(t, []string{"multi-user.target"}, d["Install.WantedBy"])
	for _, k := range []string{"ProtectSystem", "ProtectHome", "PrivateTmp", "ReadWritePaths", "ReadOnlyPaths",
		"InaccessiblePaths", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
		"ProtectControlGroups", "ProtectProc", "PrivateDevices", "DevicePolicy", "ProtectClock",
		"TemporaryFileSystem", "PrivateMounts", "MountFlags", "UMask"} {
		assert.NotContains(t, d, "Service."+k, "the unit must not set %s (see its comments)", k)
	}
	h := unitDirectives(Hardening())
	assert.Equal(t, []string{"strict"}, h["Service.ProtectSystem"])
	assert.Equal(t, []string{"yes"}, h["Service.PrivateTmp"])
	assert.Equal(t, []string{"~@mount"}, h["Service.SystemCallFilter"])
}

// TestConfigFile: the shipped configuration names the data directory, the address and libvirt.
func TestConfigFile(t *testing.T) {
	c := string(Config())
	for _, want := range []string{`data_dir = "/var/lib/openvair"`, `listen = "127.0.0.1:8080"`, `libvirt_uri = "qemu:///system"`} {
		assert.Contains(t, c, "\n"+want+"\n")
	}
}
