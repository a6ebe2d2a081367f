package refserver_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/qcow2"
	"github.com/openvair/openvair/internal/testenv/tinyguest"
	"github.com/openvair/openvair/refserver"
)

// sha256File returns the hex SHA-256 of a file's bytes.
func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

// qcow2GuestSHA256 returns the hex SHA-256 of the guest data of a qcow2 file without a backing file.
func qcow2GuestSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	r, err := qcow2.NewReader(f)
	require.NoError(t, err)
	h := sha256.New()
	_, err = io.Copy(h, io.NewSectionReader(r, 0, r.Size()))
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

// TestCloudInitLinkedCloneBootsSystem boots the tiny guest's disk image, uploaded as a raw image and
// converted into a qcow2 volume, from a linked clone of that volume with a cloud-init configuration, under
// the system daemon (QEMU as libvirt-qemu, TCG), all through the HTTP API. The guest reads its NoCloud seed
// and writes the hostname and the user-data's marker on the clone; the base volume and the image stay as
// they were, and the base cannot be deleted while the clone uses it. Then the converted volume itself boots.
func TestCloudInitLinkedCloneBootsSystem(t *testing.T) {
	diskImage := tinyguest.DiskImage(t) // first: skips (or fails in CI) when it cannot be built
	e := start(t, envOptions{system: true})
	dir := filepath.Join(e.dir, "pool")
	st := e.localStorage("pool", dir)
	volumePath := func(id uuid.UUID) string { return filepath.Join(dir, "volume-"+id.String()) }

	// The raw disk image, uploaded and detected as raw.
	begin := time.Now()
	img := e.uploadFile(st.ID, "tinyguest-disk", diskImage)
	assert.Equal(t, "raw", string(img.Format))
	assert.Equal(t, int64(tinyguest.DiskSize), img.Size)
	assert.Equal(t, sha256File(t, diskImage), img.SHA256)
	imagePath := filepath.Join(dir, "image-"+img.ID.String())
	imageSum := sha256File(t, imagePath)
	assert.Equal(t, img.SHA256, imageSum, "the stored image is the uploaded bytes")

	// A qcow2 volume converted from it: the same guest data.
	var base refserver.Volume
	e.call("POST", "/api/v1/volumes", map[string]any{"name": "tiny-base", "format": "qcow2",
		"source": map[string]any{"image_id": img.ID}}, 201, &base)
	assert.Equal(t, "qcow2", string(base.Format))
	assert.Equal(t, int64(tinyguest.DiskSize), base.Size)
	assert.Equal(t, img.SHA256, qcow2GuestSHA256(t, volumePath(base.ID)), "the conversion keeps every byte")

	// A linked clone of the volume.
	var clone refserver.Volume
	e.call("POST", "/api/v1/volumes", map[string]any{"name": "tiny-clone",
		"source": map[string]any{"volume_id": base.ID, "mode": "linked"}}, 201, &clone)
	assert.Equal(t, "qcow2", string(clone.Format))
	require.NotNil(t, clone.Backing)
	assert.Equal(t, refserver.VolumeBacking{Kind: "volume", ID: base.ID}, *clone.Backing)
	baseSum := sha256File(t, volumePath(base.ID))
	t.Logf("upload, conversion and clone in %v", time.Since(begin).Round(time.Millisecond))

	// A VM booting from the clone, configured by cloud-init.
	marker := "linked-clone-" + uuid.NewString()[:8]
	var v refserver.VM
	e.call("POST", "/api/v1/vms", map[string]any{
		"name": "ci-guest", "cpu": map[string]any{"sockets": 1, "cores": 1, "threads": 1}, "memory": 256 << 20,
		"boot":     []string{"hd"},
		"disks":    []map[string]any{{"volume_id": clone.ID}},
		"graphics": map[string]any{"type": "vnc"},
		"cloud_init": map[string]any{"hostname": "guest-7",
			"user_data": "#cloud-config\n# read by the tiny guest, see tinyguest.UserDataMarker\n" + tinyguest.UserDataMarkerLine(marker)},
	}, 201, &v)
	id := v.ID.String()
	assert.Empty(t, v.CDROMs, "nothing to boot from but the clone (the seed is not bootable)")
	require.NotNil(t, v.CloudInit)
	assert.Equal(t, "guest-7", v.CloudInit.Hostname)
	assert.NotContains(t, v.CloudInit.UserData, marker, "user_data is redacted")

	begin = time.Now()
	e.call("POST", "/api/v1/vms/"+id+"/start", nil, 200, &v)
	assert.Equal(t, "running", string(v.PowerState))
	var c refserver.Console
	e.call("GET", "/api/v1/vms/"+id+"/console", nil, 200, &c)
	assert.Equal(t, "vnc", c.Type)
	assert.Positive(t, c.Port)
	e.awaitConsole(v.ID, tinyguest.LineMarker)
	t.Logf("start to %q: %v", tinyguest.LineMarker, time.Since(begin).Round(time.Millisecond))
	assert.Regexp(t, `(?m)^`+tinyguest.LineCIData+`guest-7\r?$`, e.consoleLog(v.ID))

	e.call("POST", "/api/v1/vms/"+id+"/stop", map[string]any{"timeout": 120}, 200, &v)
	assert.Equal(t, "shut_off", string(v.PowerState), "the guest honours ACPI")
	assert.Contains(t, e.consoleLog(v.ID), tinyguest.LinePowerOff)

	// The guest's record is on the clone, read through its qcow2 chain.
	rec, ok, err := tinyguest.ReadRecord(volumePath(clone.ID), tinyguest.DiskRecordOffset)
	require.NoError(t, err)
	require.True(t, ok, "no record on the clone")
	assert.Equal(t, tinyguest.Record{Boots: 1, Seed: true, InstanceID: id, Hostname: "guest-7", UserMarker: marker}, rec)

	// The clone is independent: its base and the image are byte for byte what they were.
	assert.Equal(t, baseSum, sha256File(t, volumePath(base.ID)), "the base volume is unchanged")
	assert.Equal(t, imageSum, sha256File(t, imagePath), "the image is unchanged")
	_, ok, err = tinyguest.ReadRecord(volumePath(base.ID), tinyguest.DiskRecordOffset)
	require.NoError(t, err)
	assert.False(t, ok, "the base has no record")

	// The base cannot go while the clone uses it.
	p := e.do("DELETE", "/api/v1/volumes/"+base.ID.String(), e.admin, nil).problemIs(t, 409, "in_use")
	assert.Contains(t, p.Detail, "tiny-clone")
	var refs []string
	for _, r := range p.Refs {
		refs = append(refs, r.ID)
	}
	assert.Contains(t, refs, clone.ID.String(), "refs: %+v", p.Refs)
	e.call("GET", "/api/v1/volumes/"+base.ID.String(), nil, 200, &base)
	assert.Equal(t, []refserver.LinkedVolume{{VolumeID: clone.ID, VolumeName: "tiny-clone"}}, base.Linked)

	// Once the VM and the clone are gone, the converted volume boots too (without a seed).
	e.call("DELETE", "/api/v1/vms/"+id, nil, 204, nil)
	e.call("DELETE", "/api/v1/volumes/"+clone.ID.String(), nil, 204, nil)
	var v2 refserver.VM
	e.call("POST", "/api/v1/vms", map[string]any{
		"name": "base-guest", "cpu": map[string]any{"sockets": 1, "cores": 1, "threads": 1}, "memory": 256 << 20,
		"boot": []string{"hd"}, "disks": []map[string]any{{"volume_id": base.ID}},
	}, 201, &v2)
	begin = time.Now()
	e.call("POST", "/api/v1/vms/"+v2.ID.String()+"/start", nil, 200, &v2)
	e.awaitConsole(v2.ID, tinyguest.LineMarker)
	t.Logf("converted volume: start to %q: %v", tinyguest.LineMarker, time.Since(begin).Round(time.Millisecond))
	assert.NotContains(t, e.consoleLog(v2.ID), tinyguest.LineCIData)
	e.call("POST", "/api/v1/vms/"+v2.ID.String()+"/stop", map[string]any{"timeout": 120}, 200, &v2)
	assert.Equal(t, "shut_off", string(v2.PowerState))
	rec, ok, err = tinyguest.ReadRecord(volumePath(base.ID), tinyguest.DiskRecordOffset)
	require.NoError(t, err)
	require.True(t, ok, "no record on the converted volume")
	assert.Equal(t, tinyguest.Record{Boots: 1}, rec)
	assert.Equal(t, imageSum, sha256File(t, imagePath), "the image is still unchanged")
}
