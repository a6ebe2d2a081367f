// Package sdktest builds an openvair System over a store with the fake drivers, and makes the entities tests
// need, so that every service test starts from one line.
package sdktest

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/repo"
	"github.com/openvair/openvair/repo/memory"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
	"github.com/stretchr/testify/require"
)

// Env is a System with its fake drivers.
type Env struct {
	Sys *openvair.System
	FS  *fake.Storage
	HV  *fake.Hypervisor
	Ctx context.Context
}

// Capacity is the size of every fake storage.
const Capacity = 1 << 40

// New opens a System over store (a fresh memory store when nil) with fake drivers.
func New(t testing.TB, store repo.Store) *Env {
	t.Helper()
	if store == nil {
		store = memory.New()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	fs, hv := fake.NewStorage(Capacity), fake.NewHypervisor()
	sys, err := openvair.Open(ctx, openvair.Config{Store: store, HypervisorInstance: hv,
		StorageBackends: map[storage.Type]driver.StorageBackend{"localfs": fs, "nfs": fs}})
	require.NoError(t, err)
	sys.VMs.PollInterval = time.Millisecond
	t.Cleanup(func() { _ = sys.Close(); _ = store.Close() })
	return &Env{Sys: sys, FS: fs, HV: hv, Ctx: ctx}
}

// Storage creates an available localfs storage.
func (e *Env) Storage(t testing.TB, name string) *storage.Storage {
	t.Helper()
	st, err := e.Sys.Storages.Create(e.Ctx, storage.CreateRequest{Name: name, Type: "localfs",
		Config: map[string]string{"path": "/srv/" + name}})
	require.NoError(t, err)
	return st
}

// Volume creates an available qcow2 volume.
func (e *Env) Volume(t testing.TB, storageID uuid.UUID, name string, size int64) *volume.Volume {
	t.Helper()
	v, err := e.Sys.Volumes.Create(e.Ctx, volume.CreateRequest{Name: name, StorageID: storageID, Format: volume.FormatQCOW2, Size: size})
	require.NoError(t, err)
	return v
}

// ISO returns the bytes of a minimal ISO 9660 image (a primary volume descriptor at sector 16).
func ISO() []byte {
	b := make([]byte, 36<<10)
	copy(b[32768:], "\x01CD001\x01")
	return b
}

// Image uploads an ISO image.
func (e *Env) Image(t testing.TB, storageID uuid.UUID, name string) *image.Image {
	t.Helper()
	img, err := e.Sys.Images.Create(e.Ctx, image.CreateRequest{Name: name, StorageID: storageID}, bytes.NewReader(ISO()))
	require.NoError(t, err)
	return img
}

// VMRequest returns a valid request for a small VM.
func VMRequest(name string, disks ...vm.DiskRequest) vm.CreateRequest {
	return vm.CreateRequest{Name: name, CPU: vm.CPU{Sockets: 1, Cores: 2, Threads: 1}, MemoryBytes: 512 << 20, Disks: disks,
		Interfaces: []vm.Interface{{Type: "network", Source: "default"}}}
}

// VM creates a stopped VM with the given disks.
func (e *Env) VM(t testing.TB, name string, disks ...vm.DiskRequest) *vm.VM {
	t.Helper()
	m, err := e.Sys.VMs.Create(e.Ctx, VMRequest(name, disks...))
	require.NoError(t, err)
	return m
}

// Running creates a VM and starts it.
func (e *Env) Running(t testing.TB, name string, disks ...vm.DiskRequest) *vm.VM {
	t.Helper()
	m := e.VM(t, name, disks...)
	m, err := e.Sys.VMs.Start(e.Ctx, m.ID)
	require.NoError(t, err)
	return m
}
