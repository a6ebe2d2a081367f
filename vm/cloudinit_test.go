package vm_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kdomanski/iso9660"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
)

// isoFiles reads the files of an ISO 9660 image.
func isoFiles(t *testing.T, path string) (string, map[string]string) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	img, err := iso9660.OpenImage(f)
	require.NoError(t, err)
	label, err := img.Label()
	require.NoError(t, err)
	root, err := img.RootDir()
	require.NoError(t, err)
	children, err := root.GetChildren()
	require.NoError(t, err)
	out := map[string]string{}
	for _, c := range children {
		b := make([]byte, c.Size())
		_, err := c.Reader().Read(b)
		require.NoError(t, err)
		out[c.Name()] = string(b)
	}
	return label, out
}

// A VM with cloud_init gets a NoCloud seed (ISO labelled cidata) on its first disk's storage, attached as a
// read-only cdrom; an edit rebuilds it and removes the old one; deleting the VM removes it.
func TestCloudInitSeed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := localfs.New(driver.Config{DataDir: t.TempDir()})
	require.NoError(t, err)
	hv := fake.NewHypervisor()
	sys, err := openvair.Open(ctx, openvair.Config{DSN: "memory:", HypervisorInstance: hv,
		StorageBackends: map[storage.Type]driver.StorageBackend{"localfs": b}})
	require.NoError(t, err)
	defer sys.Close()
	dir := filepath.Join(t.TempDir(), "pool")
	st, err := sys.Storages.Create(ctx, storage.CreateRequest{Name: "pool", Type: localfs.Type, Config: localfs.Config{Path: dir}})
	require.NoError(t, err)

	req := vm.CreateRequest{Name: "web", CPU: vm.CPU{Sockets: 1, Cores: 1, Threads: 1}, MemoryBytes: 256 << 20,
		Disks: []vm.DiskRequest{{New: &volume.CreateRequest{Name: "root", StorageID: st.ID, Format: volume.FormatQCOW2, Size: 1 << 30}}},
		CloudInit: &vm.CloudInitConfig{UserData: "#cloud-config\nruncmd: [touch /marker]\n", Hostname: "web-1",
			SSHAuthorizedKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test"}}}
	m, err := sys.VMs.Create(ctx, req)
	require.NoError(t, err)
	require.NotNil(t, m.CloudInit)
	assert.Equal(t, st.ID, m.CloudInit.SeedStorageID)
	seed := filepath.Join(dir, "image-"+m.CloudInit.SeedID.String())
	label, files := isoFiles(t, seed)
	assert.Equal(t, "cidata", label)
	assert.Equal(t, req.CloudInit.UserData, files["user-data"], "user_data as given")
	assert.Contains(t, files["meta-data"], m.ID.String(), "instance-id is the VM's id")
	assert.Contains(t, files["meta-data"], "web-1")
	assert.Contains(t, files["meta-data"], "ssh-ed25519")

	spec := hv.Domain(m.ID).Spec
	var cdroms []driver.DiskSpec
	for _, d := range spec.Disks {
		if d.Device == "cdrom" {
			cdroms = append(cdroms, d)
		}
	}
	require.Len(t, cdroms, 1)
	assert.True(t, cdroms[0].ReadOnly)
	assert.Equal(t, seed, cdroms[0].Source.Path)

	// Events and readers never see the user data.
	assert.NotContains(t, string(mustJSON(t, m)), "marker")

	// An edit rebuilds the seed; the old one goes.
	edited, err := sys.VMs.Edit(ctx, m.ID, vm.EditRequest{CloudInit: &vm.CloudInitConfig{UserData: "#!/bin/sh\necho second > /marker\n", Hostname: "web-2"}})
	require.NoError(t, err)
	assert.NotEqual(t, m.CloudInit.SeedID, edited.CloudInit.SeedID)
	_, err = os.Stat(seed)
	assert.ErrorIs(t, err, os.ErrNotExist, "the old seed is removed")
	_, files = isoFiles(t, filepath.Join(dir, "image-"+edited.CloudInit.SeedID.String()))
	assert.Equal(t, "#!/bin/sh\necho second > /marker\n", files["user-data"])

	// Bad cloud-init is refused naming the field, before anything is made.
	bad := req
	bad.Name = "bad"
	bad.CloudInit = &vm.CloudInitConfig{UserData: "#cloud-config\nruncmd: [unclosed\n"}
	_, err = sys.VMs.Create(ctx, bad)
	require.ErrorIs(t, err, errkind.Invalid)
	var ve *errkind.ValidationError
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, "cloud_init.user_data", ve.Fields[0].Field)

	require.NoError(t, sys.VMs.Delete(ctx, m.ID, vm.DeleteOptions{DeleteVolumes: true}))
	left, err := filepath.Glob(filepath.Join(dir, "image-*"))
	require.NoError(t, err)
	assert.Empty(t, left, "the seed goes with the VM")
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}
