package refserver_test

import (
	"encoding/json"
	"path/filepath"
	"testing"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/refserver"
)

func vmBody(name string, extra map[string]any) map[string]any {
	b := map[string]any{"name": name, "cpu": map[string]any{"sockets": 1, "cores": 1, "threads": 1}, "memory": 64 << 20}
	for k, v := range extra {
		b[k] = v
	}
	return b
}

// TestVMFlowTestDriver drives every VM endpoint through libvirt's test driver (test:///default), with a
// disk from an existing volume, a disk created with the VM and an image as cdrom.
func TestVMFlowTestDriver(t *testing.T) {
	e := start(t, envOptions{libvirt: golibvirt.TestDefault})
	st := e.localStorage("local", e.storageDir("pool"))
	vol := e.volume(st.ID, "root", 1<<30)
	spare := e.volume(st.ID, "spare", 1<<30)
	img := e.image(st.ID, "installer")

	r := e.do("POST", "/api/v1/vms", e.admin, vmBody("web", map[string]any{
		"disks": []map[string]any{
			{"volume_id": vol.ID},
			{"new": map[string]any{"name": "web-data", "storage_id": st.ID, "format": "qcow2", "size": 1 << 30}, "bus": "sata"},
		},
		"cdroms":   []map[string]any{{"image_id": img.ID}},
		"graphics": map[string]any{"type": "vnc", "password": "secret"},
	}))
	require.Equal(t, 201, r.Status, "%s", r.Body)
	var v refserver.VM
	require.NoError(t, json.Unmarshal(r.Body, &v))
	assert.Equal(t, "/api/v1/vms/"+v.ID.String(), r.Header.Get("Location"))
	assert.NotContains(t, string(r.Body), "secret", "the graphics password is never returned")
	assert.True(t, v.Graphics.PasswordSet)
	assert.Equal(t, "shut_off", string(v.PowerState))
	require.Len(t, v.Disks, 2)
	require.Len(t, v.CDROMs, 1)
	newVol := v.Disks[1].VolumeID
	vid := v.ID.String()

	// Reads after the write.
	var got refserver.VM
	e.call("GET", "/api/v1/vms/"+vid, nil, 200, &got)
	assert.Equal(t, "web", got.Name)
	var page refserver.VMPage
	e.call("GET", "/api/v1/vms?name=web&power_state=shut_off&status=available&limit=10", nil, 200, &page)
	require.Len(t, page.Items, 1)
	var vv refserver.Volume
	e.call("GET", "/api/v1/volumes/"+vol.ID.String(), nil, 200, &vv)
	require.Len(t, vv.Attachments, 1)
	assert.Equal(t, v.ID, vv.Attachments[0].VMID)
	var vp refserver.VolumePage
	e.call("GET", "/api/v1/volumes?attached=false", nil, 200, &vp)
	require.Len(t, vp.Items, 1)
	assert.Equal(t, spare.ID, vp.Items[0].ID)

	// Stopped: console and reboot are refused; attach and detach work; edit works.
	e.do("GET", "/api/v1/vms/"+vid+"/console", e.admin, nil).problemIs(t, 409, "wrong_state")
	e.do("POST", "/api/v1/vms/"+vid+"/reboot", e.admin, nil).problemIs(t, 409, "wrong_state")
	e.call("POST", "/api/v1/vms/"+vid+"/volumes", map[string]any{"volume_id": spare.ID}, 200, &got)
	assert.Len(t, got.Disks, 3)
	e.do("POST", "/api/v1/vms/"+vid+"/volumes", e.admin, map[string]any{"volume_id": spare.ID}).problemIs(t, 409, "already_exists")
	e.call("DELETE", "/api/v1/vms/"+vid+"/volumes/"+spare.ID.String(), nil, 200, &got)
	assert.Len(t, got.Disks, 2)
	e.do("DELETE", "/api/v1/vms/"+vid+"/volumes/"+spare.ID.String(), e.admin, nil).problemIs(t, 404, "not_found")
	e.call("PATCH", "/api/v1/vms/"+vid, map[string]any{"description": "front end", "memory": 128 << 20}, 200, &got)
	assert.Equal(t, "front end", got.Description)
	assert.EqualValues(t, 128<<20, got.Memory)
	e.do("PATCH", "/api/v1/vms/"+vid, e.admin, map[string]any{"memory": 1000}).problemIs(t, 422, "invalid")

	// Start, then everything a running VM refuses.
	e.call("POST", "/api/v1/vms/"+vid+"/start", nil, 200, &got)
	assert.Equal(t, "running", string(got.PowerState))
	e.call("GET", "/api/v1/vms/"+vid, nil, 200, &got)
	assert.Equal(t, "running", string(got.PowerState))
	// The test driver gives VNC no port: the console endpoint says so (qemu:///session shows a real one).
	e.do("GET", "/api/v1/vms/"+vid+"/console", e.admin, nil).problemIs(t, 409, "wrong_state")
	e.do("POST", "/api/v1/vms/"+vid+"/start", e.admin, nil).problemIs(t, 409, "wrong_state")
	e.do("PATCH", "/api/v1/vms/"+vid, e.admin, map[string]any{"description": "x"}).problemIs(t, 409, "wrong_state")
	e.do("DELETE", "/api/v1/vms/"+vid, e.admin, nil).problemIs(t, 409, "wrong_state")
	e.do("DELETE", "/api/v1/volumes/"+vol.ID.String(), e.admin, nil).problemIs(t, 409, "in_use")
	e.do("DELETE", "/api/v1/images/"+img.ID.String(), e.admin, nil).problemIs(t, 409, "in_use")
	e.do("POST", "/api/v1/volumes/"+vol.ID.String()+"/extend", e.admin, map[string]any{"size": 2 << 30}).problemIs(t, 409, "")
	e.call("POST", "/api/v1/vms/"+vid+"/reboot", nil, 200, &got)

	// Stop with force, then delete with its volumes.
	e.call("POST", "/api/v1/vms/"+vid+"/stop", map[string]any{"force": true}, 200, &got)
	assert.Equal(t, "shut_off", string(got.PowerState))
	e.call("POST", "/api/v1/vms/"+vid+"/start", nil, 200, &got)
	e.call("POST", "/api/v1/vms/"+vid+"/stop", map[string]any{"timeout": 30}, 200, &got)
	assert.Equal(t, "shut_off", string(got.PowerState))
	e.call("DELETE", "/api/v1/vms/"+vid+"?delete_volumes=true", nil, 204, nil)
	e.do("GET", "/api/v1/vms/"+vid, e.admin, nil).problemIs(t, 404, "not_found")
	e.do("GET", "/api/v1/volumes/"+newVol.String(), e.admin, nil).problemIs(t, 404, "not_found")
	e.call("DELETE", "/api/v1/images/"+img.ID.String(), nil, 204, nil)

	var h refserver.Health
	e.call("GET", "/readyz", nil, 200, &h)
	assert.Equal(t, "ok", h.Hypervisor)

	// libvirtd gone: VM calls answer 503 with the reason, the rest works.
	e.daemon.Stop()
	p := e.do("POST", "/api/v1/vms", e.admin, vmBody("db", nil)).problemIs(t, 503, "unavailable")
	assert.Contains(t, p.Detail, "libvirt")
	e.call("GET", "/api/v1/volumes", nil, 200, nil)
	p = e.do("GET", "/readyz", "", nil).problemIs(t, 503, "unavailable")
	assert.Contains(t, p.Detail, "hypervisor: ", "readyz names the component that is down")
	assert.NotContains(t, p.Detail, "store", "the store is fine")
	e.call("GET", "/healthz", nil, 200, nil)
}

// TestVMQEMUSession boots a real QEMU (TCG) domain through qemu:///session: a qcow2 volume on LocalFS and
// an ISO cdrom. A graceful stop of a guest that ignores ACPI times out with 504; a forced stop works. The
// session daemon runs QEMU as another user, so the test hands it the files.
func TestVMQEMUSession(t *testing.T) {
	e := start(t, envOptions{libvirt: golibvirt.QEMUSession, storageOptions: map[string]string{"file_mode": "0666"}})
	dir := e.daemon.Mkdir(t, "pool")
	testVMQEMU(t, e, dir, func(p string) { e.daemon.Chown(t, p) })
}

// TestVMQEMUSystem is TestVMQEMUSession on the system daemon, as a real host runs it: the storage is a
// directory the SDK creates, and the test touches no file.
func TestVMQEMUSystem(t *testing.T) {
	e := start(t, envOptions{system: true})
	testVMQEMU(t, e, filepath.Join(e.dir, "pool"), func(string) {})
}

// testVMQEMU runs the real-QEMU VM flow on a LocalFS storage in dir; handOver gives a new file to QEMU.
func testVMQEMU(t *testing.T, e *env, dir string, handOver func(path string)) {
	st := e.localStorage("qemu", dir)
	img := e.image(st.ID, "boot")
	handOver(filepath.Join(dir, "image-"+img.ID.String()))

	var v refserver.VM
	e.call("POST", "/api/v1/vms", vmBody("tcg", map[string]any{
		"disks":    []map[string]any{{"new": map[string]any{"name": "tcg-root", "storage_id": st.ID, "format": "qcow2", "size": 64 << 20}}},
		"cdroms":   []map[string]any{{"image_id": img.ID}},
		"graphics": map[string]any{"type": "vnc", "password": "pw"},
	}), 201, &v)
	handOver(filepath.Join(dir, "volume-"+v.Disks[0].VolumeID.String()))
	vid := v.ID.String()

	e.call("POST", "/api/v1/vms/"+vid+"/start", nil, 200, &v)
	assert.Equal(t, "running", string(v.PowerState))
	var c refserver.Console
	e.call("GET", "/api/v1/vms/"+vid+"/console", nil, 200, &c)
	assert.Equal(t, "vnc", c.Type)
	assert.Positive(t, c.Port)
	assert.True(t, c.PasswordSet)

	e.do("POST", "/api/v1/vms/"+vid+"/stop", e.admin, map[string]any{"timeout": 1}).problemIs(t, 504, "timeout")
	e.call("GET", "/api/v1/vms/"+vid, nil, 200, &v)
	assert.Equal(t, "running", string(v.PowerState), "a timed-out graceful stop leaves the VM running")
	e.call("POST", "/api/v1/vms/"+vid+"/stop", map[string]any{"force": true}, 200, &v)
	assert.Equal(t, "shut_off", string(v.PowerState))
	e.call("DELETE", "/api/v1/vms/"+vid+"?delete_volumes=true", nil, 204, nil)
	var vp refserver.VolumePage
	e.call("GET", "/api/v1/volumes", nil, 200, &vp)
	assert.Empty(t, vp.Items)
}
