package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/hostuser"
	"github.com/openvair/openvair/internal/testenv/libvirtd"
	"github.com/openvair/openvair/internal/testenv/tinyguest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	libvirtd.CleanupCache()
	os.Exit(code)
}

// TestDefaultStorageGuestOnSystemDaemon is the first thing a new user does on a host with the system
// libvirtd: start the server on its defaults (plus TCG, which these test hosts need), put an ISO on the
// default storage, create a VM with a new disk there and start it. QEMU runs as libvirt-qemu and must reach
// the files below the data directory; the guest boots, its console log is read through the API, and an
// ACPI stop ends it.
func TestDefaultStorageGuestOnSystemDaemon(t *testing.T) {
	d := libvirtd.StartSystem(t)
	iso := tinyguest.ISO(t)
	dataDir, err := os.MkdirTemp("/tmp", "ovsrv") // 0700, like a directory a user made
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dataDir) })
	conf := filepath.Join(t.TempDir(), "openvair.toml")
	require.NoError(t, os.WriteFile(conf, []byte("[libvirt_options]\nconsole_log_dir = \""+d.ConsoleLogDir()+"\"\n"), 0o600))
	s := startRun(t, []string{"-listen", "127.0.0.1:0", "-data-dir", dataDir, "-libvirt-socket", d.Socket(), "-config", conf},
		map[string]string{"OPENVAIR_DOMAIN_TYPE": "qemu", "OPENVAIR_CPU_MODE": "custom", "OPENVAIR_CPU_MODEL": "qemu64"})

	qemu, ok := hostuser.QEMU()
	require.True(t, ok, "the system daemon harness creates libvirt-qemu")
	for _, p := range []string{dataDir, filepath.Join(dataDir, "storage")} {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o710), fi.Mode().Perm(), "%s: traverse for the QEMU group, nothing for others", p)
		assert.Equal(t, uint32(qemu.GID), fi.Sys().(*syscall.Stat_t).Gid, p)
	}
	fi, err := os.Stat(filepath.Join(dataDir, "openvair.db"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the database stays private")

	tok, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	require.NoError(t, err)
	c := apiCaller{t: t, url: s.url, token: strings.TrimSpace(string(tok))}
	var storages struct {
		Items []struct{ ID string } `json:"items"`
	}
	c.call("GET", "/api/v1/storages", nil, 200, &storages)
	require.Len(t, storages.Items, 1)
	def := storages.Items[0].ID

	isoData, err := os.ReadFile(iso)
	require.NoError(t, err)
	var img struct{ ID string }
	c.call("POST", "/api/v1/images?storage_id="+def+"&name=tiny", isoData, 201, &img)
	var vm struct {
		ID         string
		PowerState string `json:"power_state"`
		Reason     string `json:"power_state_reason"`
		Disks      []struct {
			VolumeID string `json:"volume_id"`
		}
	}
	c.call("POST", "/api/v1/vms", map[string]any{"name": "tiny", "cpu": map[string]any{"sockets": 1, "cores": 1, "threads": 1},
		"memory": 256 << 20, "boot": []string{"cdrom", "hd"}, "cdroms": []map[string]any{{"image_id": img.ID}},
		"disks": []map[string]any{{"new": map[string]any{"name": "tiny-root", "storage_id": def, "format": "qcow2", "size": 64 << 20}}},
	}, 201, &vm)
	c.call("POST", "/api/v1/vms/"+vm.ID+"/start", nil, 200, &vm)
	require.Equal(t, "running", vm.PowerState)

	deadline := time.Now().Add(4 * time.Minute)
	for {
		log := c.consoleLog(vm.ID)
		if strings.Contains(log, tinyguest.LineMarker) {
			assert.Contains(t, log, tinyguest.LineBooted)
			break
		}
		require.True(t, time.Now().Before(deadline), "the guest did not write its marker; console:\n%s", log)
		time.Sleep(250 * time.Millisecond)
	}
	c.call("POST", "/api/v1/vms/"+vm.ID+"/stop", map[string]any{"timeout": 120}, 200, &vm)
	assert.Equal(t, "shut_off", vm.PowerState)
	assert.Equal(t, "shutdown", vm.Reason)

	boots, ok, err := tinyguest.ReadQCOW2Marker(filepath.Join(dataDir, "storage", "volume-"+vm.Disks[0].VolumeID))
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, 1, boots)
}

// apiCaller sends authenticated requests to a running server.
type apiCaller struct {
	t     *testing.T
	url   string
	token string
}

// call sends body ([]byte as is, anything else as JSON), requires the status and decodes into out.
func (c apiCaller) call(method, path string, body any, status int, out any) {
	c.t.Helper()
	var b []byte
	ct := "application/octet-stream"
	switch v := body.(type) {
	case nil:
	case []byte:
		b = v
	default:
		var err error
		b, err = json.Marshal(v)
		require.NoError(c.t, err)
		ct = "application/json"
	}
	req, err := http.NewRequest(method, c.url+path, bytes.NewReader(b))
	require.NoError(c.t, err)
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", ct)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(c.t, err)
	defer res.Body.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(res.Body)
	require.NoError(c.t, err)
	require.Equal(c.t, status, res.StatusCode, "%s %s: %s", method, path, buf.String())
	if out != nil {
		require.NoError(c.t, json.Unmarshal(buf.Bytes(), out))
	}
}

// consoleLog reads a VM's console log ("" while there is none).
func (c apiCaller) consoleLog(id string) string {
	req, err := http.NewRequest("GET", c.url+"/api/v1/vms/"+id+"/console/log", nil)
	require.NoError(c.t, err)
	req.Header.Set("Authorization", "Bearer "+c.token)
	res, err := http.DefaultClient.Do(req)
	require.NoError(c.t, err)
	defer res.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(res.Body)
	if res.StatusCode == 404 {
		return ""
	}
	require.Equal(c.t, 200, res.StatusCode, "%s", buf.String())
	return buf.String()
}
