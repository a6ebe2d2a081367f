package refserver_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver/libvirt"
	"github.com/openvair/openvair/internal/testenv/ganesha"
	"github.com/openvair/openvair/internal/testenv/tinyguest"
	"github.com/openvair/openvair/refserver"
)

// guestTimeout bounds a tiny guest's boot under TCG on a loaded 2-core machine.
const guestTimeout = 4 * time.Minute

// uploadFile streams a file into a storage as an image through the API.
func (e *env) uploadFile(storageID uuid.UUID, name, path string) refserver.Image {
	e.t.Helper()
	f, err := os.Open(path)
	require.NoError(e.t, err)
	defer f.Close()
	var img refserver.Image
	e.call("POST", "/api/v1/images?storage_id="+storageID.String()+"&name="+name, f, 201, &img)
	return img
}

// consoleLog reads the VM's serial console log through the API ("" while there is none).
func (e *env) consoleLog(id uuid.UUID) string {
	r := e.do("GET", "/api/v1/vms/"+id.String()+"/console/log", e.admin, nil)
	if r.Status == 404 {
		return ""
	}
	require.Equal(e.t, 200, r.Status, "%s", r.Body)
	return string(r.Body)
}

// awaitConsole waits until the VM's console log holds line.
func (e *env) awaitConsole(id uuid.UUID, line string) {
	e.t.Helper()
	deadline := time.Now().Add(guestTimeout)
	for !strings.Contains(e.consoleLog(id), line) {
		if time.Now().After(deadline) {
			require.Failf(e.t, "guest did not get there", "no %q within %s; console:\n%s\nQEMU log:\n%s", line, guestTimeout,
				e.consoleLog(id), e.daemon.QEMULog(libvirt.DomainName(id)))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// tinyGuestVM creates a VM that boots the tiny guest ISO with a new qcow2 volume on the storage.
func (e *env) tinyGuestVM(name string, storageID, imageID uuid.UUID) refserver.VM {
	e.t.Helper()
	var v refserver.VM
	e.call("POST", "/api/v1/vms", map[string]any{
		"name": name, "cpu": map[string]any{"sockets": 1, "cores": 1, "threads": 1}, "memory": 256 << 20,
		"boot":   []string{"cdrom", "hd"},
		"disks":  []map[string]any{{"new": map[string]any{"name": name + "-root", "storage_id": storageID, "format": "qcow2", "size": 64 << 20}}},
		"cdroms": []map[string]any{{"image_id": imageID}},
	}, 201, &v)
	return v
}

// readMarker reads the tiny guest's marker from sector 0 of a qcow2 volume file.
func readMarker(t *testing.T, path string) int {
	t.Helper()
	boots, ok, err := tinyguest.ReadQCOW2Marker(path)
	require.NoError(t, err)
	require.True(t, ok, "no marker in %s", path)
	return boots
}

// bootTinyGuest runs the whole life of a real guest through the API on the system daemon: start, the guest
// boots and writes its marker (seen in the console log), a graceful stop that the guest honours, and the
// marker read back from the volume file at volumePath(volume id).
func bootTinyGuest(t *testing.T, e *env, storageID uuid.UUID, volumePath func(uuid.UUID) string) {
	img := e.uploadFile(storageID, "tinyguest", tinyguest.ISO(t))
	assert.Equal(t, "iso", string(img.Format))
	v := e.tinyGuestVM("tiny", storageID, img.ID)
	id := v.ID.String()

	e.call("POST", "/api/v1/vms/"+id+"/start", nil, 200, &v)
	assert.Equal(t, "running", string(v.PowerState))
	assert.Equal(t, "booted", string(v.PowerStateReason))
	e.awaitConsole(v.ID, tinyguest.LineMarker)
	assert.Contains(t, e.consoleLog(v.ID), tinyguest.LineBooted)

	e.call("POST", "/api/v1/vms/"+id+"/stop", map[string]any{"timeout": 120}, 200, &v)
	assert.Equal(t, "shut_off", string(v.PowerState), "the guest honours ACPI")
	assert.Equal(t, "shutdown", string(v.PowerStateReason), "it shut down, it was not destroyed")
	assert.Contains(t, e.consoleLog(v.ID), tinyguest.LinePowerOff)
	assert.Equal(t, 1, readMarker(t, volumePath(v.Disks[0].VolumeID)), "the guest's write is on the volume")
}

// TestTinyGuestSystemLocalFS boots a real guest from an ISO on a LocalFS storage under the system
// daemon (QEMU as libvirt-qemu), with nothing chowned or chmodded by the test.
func TestTinyGuestSystemLocalFS(t *testing.T) {
	e := start(t, envOptions{system: true})
	dir := filepath.Join(e.dir, "pool")
	st := e.localStorage("pool", dir)
	bootTinyGuest(t, e, st.ID, func(vol uuid.UUID) string { return filepath.Join(dir, "volume-"+vol.String()) })
}

// TestTinyGuestSystemNFS boots a real guest whose ISO and disk are on nfs-ganesha (which enforces uids),
// opened by QEMU's own NFS client as the libvirt-qemu identity.
func TestTinyGuestSystemNFS(t *testing.T) {
	if !ganesha.InNamespace(t) {
		return
	}
	srv := ganesha.Start(t)
	e := start(t, envOptions{system: true})
	var st refserver.Storage
	e.call("POST", "/api/v1/storages", map[string]any{"name": "nfs", "type": "nfs",
		"nfs": map[string]any{"server": srv.Addr(), "export": srv.Export()}}, 201, &st)
	bootTinyGuest(t, e, st.ID, func(vol uuid.UUID) string {
		p := filepath.Join(srv.Dir(), "openvair-"+st.ID.String(), "volume-"+vol.String())
		fi, err := os.Stat(p)
		require.NoError(t, err)
		assert.Equal(t, uint32(e.daemon.UID()), fi.Sys().(*syscall.Stat_t).Uid, "the volume file belongs to QEMU's identity")
		return p
	})
}
