package vm_test

import (
	"context"
	"fmt"
	"github.com/openvair/openvair/internal/fsm/fsmtest"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/sdktest"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTransitionTable(t *testing.T) {
	ops := []vm.Status{vm.StatusStarting, vm.StatusStopping, vm.StatusEditing, vm.StatusDeleting}
	legal := map[vm.Status][]vm.Status{
		vm.StatusCreating:  {vm.StatusAvailable, vm.StatusError},
		vm.StatusAvailable: append([]vm.Status{vm.StatusAvailable, vm.StatusError}, ops...),
		vm.StatusStarting:  {vm.StatusAvailable, vm.StatusError},
		vm.StatusStopping:  {vm.StatusAvailable, vm.StatusError},
		vm.StatusEditing:   {vm.StatusAvailable, vm.StatusError},
		vm.StatusDeleting:  {vm.StatusError},
		vm.StatusError:     append([]vm.Status{vm.StatusAvailable, vm.StatusError}, ops...),
	}
	fsmtest.Check(t, legal, vm.Status.CanTransition, func(from, to vm.Status) (vm.Status, error) {
		e := &vm.VM{Status: from}
		err := e.SetStatus(to, "reason")
		if err == nil {
			assert.Equal(t, to == vm.StatusError, e.StatusReason == "reason", "a reason only with error")
		}
		return e.Status, err
	})
}

func fields(t *testing.T, err error) []string {
	t.Helper()
	var ve *errkind.ValidationError
	require.ErrorAs(t, err, &ve)
	var out []string
	for _, f := range ve.Fields {
		out = append(out, f.Field)
	}
	return out
}

func TestCreateValidation(t *testing.T) {
	e := sdktest.New(t, nil)
	vid := uuid.New()
	cases := []struct {
		name   string
		mutate func(r *vm.CreateRequest)
		fields []string
	}{
		{"cpu and memory", func(r *vm.CreateRequest) {
			r.CPU = vm.CPU{Sockets: 0, Cores: -1, Threads: 1, Mode: "weird"}
			r.MemoryBytes = 1
		},
			[]string{"cpu.sockets", "cpu.cores", "cpu.mode", "memory"}},
		{"custom cpu needs a model", func(r *vm.CreateRequest) { r.CPU.Mode = vm.CPUCustom }, []string{"cpu.model"}},
		{"too many vcpus", func(r *vm.CreateRequest) { r.CPU = vm.CPU{Sockets: 64, Cores: 64, Threads: 2} }, []string{"cpu"}},
		{"firmware and boot", func(r *vm.CreateRequest) { r.Firmware = "coreboot"; r.Boot = []string{"hd", "floppy", "hd"} },
			[]string{"firmware", "boot[1]", "boot[2]"}},
		{"disks", func(r *vm.CreateRequest) {
			r.Disks = []vm.DiskRequest{{VolumeID: vid}, {VolumeID: vid, Bus: "ide"}, {}, {VolumeID: vid, New: &volume.CreateRequest{}}}
		}, []string{"disks[1].volume_id", "disks[1].bus", "disks[2]", "disks[3]"}},
		{"new volume fields", func(r *vm.CreateRequest) { r.Disks = []vm.DiskRequest{{New: &volume.CreateRequest{Name: "ok"}}} },
			[]string{"disks[0].new.storage_id", "disks[0].new.format", "disks[0].new.size"}},
		{"interfaces", func(r *vm.CreateRequest) {
			r.Interfaces = []vm.Interface{{Type: "bridge", Source: "br0; rm -rf /", Model: "ne2k"}, {Type: "x", Source: "b", MAC: "01:00:5e:00:00:01"},
				{Type: "bridge", Source: "b", MAC: "52:54:00:00:00:01"}, {Type: "bridge", Source: "b", MAC: "52:54:00:00:00:01"}}
		}, []string{"interfaces[0].source", "interfaces[0].model", "interfaces[1].type", "interfaces[1].mac", "interfaces[3].mac"}},
		{"graphics", func(r *vm.CreateRequest) {
			r.Graphics = vm.Graphics{Type: "vnc", Listen: "everywhere", Password: "much-too-long"}
		},
			[]string{"graphics.listen", "graphics.password"}},
		{"boot list and per-disk order", func(r *vm.CreateRequest) {
			r.Boot = []string{"hd"}
			r.CDROMs = []vm.CDROM{{ImageID: vid, BootOrder: 1}}
		},
			[]string{"boot"}},
		{"cdroms", func(r *vm.CreateRequest) { r.CDROMs = []vm.CDROM{{}, {ImageID: vid}, {ImageID: vid}} },
			[]string{"cdroms[0].image_id", "cdroms[2].image_id"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := sdktest.VMRequest("ok")
			c.mutate(&req)
			_, err := e.Sys.VMs.Create(e.Ctx, req)
			require.ErrorIs(t, err, errkind.Invalid)
			assert.ElementsMatch(t, c.fields, fields(t, err))
		})
	}
	page, err := e.Sys.VMs.List(e.Ctx, vm.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, page.Items)
}

func TestCreateWithNewAndExistingDisks(t *testing.T) {
	e := sdktest.New(t, nil)
	st := e.Storage(t, "pool")
	existing := e.Volume(t, st.ID, "existing", 1<<30)
	img := e.Image(t, st.ID, "installer")
	req := sdktest.VMRequest("web", vm.DiskRequest{VolumeID: existing.ID, BootOrder: 1},
		vm.DiskRequest{New: &volume.CreateRequest{Name: "web-data", StorageID: st.ID, Format: volume.FormatRaw, Size: 2 << 30}, Bus: "scsi"})
	req.CDROMs = []vm.CDROM{{ImageID: img.ID}}
	req.CPU = vm.CPU{Sockets: 2, Cores: 2, Threads: 2, Mode: vm.CPUCustom, Model: "Skylake-Client"}
	req.Firmware = "uefi"
	req.Graphics = vm.Graphics{Type: "spice", Listen: "0.0.0.0", Password: "pw"}
	m, err := e.Sys.VMs.Create(e.Ctx, req)
	require.NoError(t, err)
	assert.Equal(t, vm.StatusAvailable, m.Status)
	assert.Equal(t, vm.PowerShutOff, m.PowerState)
	assert.Empty(t, m.Boot, "per-disk boot order replaces the default boot list")
	require.Len(t, m.Disks, 2)
	assert.Equal(t, existing.ID, m.Disks[0].VolumeID)
	assert.Equal(t, "virtio", m.Disks[0].Bus, "bus defaults to virtio")
	assert.Equal(t, "scsi", m.Disks[1].Bus)
	assert.Regexp(t, `^52:54:00(:[0-9a-f]{2}){3}$`, m.Interfaces[0].MAC, "MAC generated")

	created, err := e.Sys.Volumes.Get(e.Ctx, m.Disks[1].VolumeID)
	require.NoError(t, err)
	assert.Equal(t, "web-data", created.Name)
	assert.Equal(t, []volume.Attachment{{VMID: m.ID, VMName: "web"}}, created.Attachments)

	dom := e.HV.Domain(m.ID)
	require.NotNil(t, dom, "the domain is defined")
	spec := dom.Spec
	assert.Equal(t, "web", spec.Name)
	assert.Equal(t, 8, spec.CPU.Sockets*spec.CPU.Cores*spec.CPU.Threads)
	assert.Equal(t, "Skylake-Client", spec.CPU.Model)
	assert.Equal(t, "uefi", spec.Firmware)
	require.Len(t, spec.Disks, 3)
	assert.Equal(t, "disk", spec.Disks[0].Device)
	assert.Equal(t, volume.FormatQCOW2, spec.Disks[0].Format)
	assert.Equal(t, volume.FormatRaw, spec.Disks[1].Format)
	assert.Equal(t, "cdrom", spec.Disks[2].Device)
	assert.True(t, spec.Disks[2].ReadOnly)
	assert.Contains(t, spec.Disks[0].Source.Path, existing.ID.String(), "disks are located by id")
	assert.Equal(t, "spice", spec.Graphics.Type)
	assert.Equal(t, "pw", spec.Graphics.Password)
	assert.Equal(t, m.Interfaces[0].MAC, spec.Interfaces[0].MAC)
}

func TestCreateUniquenessAndSharing(t *testing.T) {
	e := sdktest.New(t, nil)
	st := e.Storage(t, "pool")
	disk := e.Volume(t, st.ID, "disk", 1<<30)
	a := e.VM(t, "a", vm.DiskRequest{VolumeID: disk.ID})

	_, err := e.Sys.VMs.Create(e.Ctx, sdktest.VMRequest("a"))
	assert.ErrorIs(t, err, errkind.AlreadyExists, "name")

	req := sdktest.VMRequest("b")
	req.Interfaces[0].MAC = a.Interfaces[0].MAC
	_, err = e.Sys.VMs.Create(e.Ctx, req)
	assert.ErrorIs(t, err, errkind.AlreadyExists, "MAC")

	_, err = e.Sys.VMs.Create(e.Ctx, sdktest.VMRequest("b", vm.DiskRequest{VolumeID: disk.ID}))
	require.ErrorIs(t, err, errkind.InUse, "a volume belongs to one VM")
	assert.Contains(t, err.Error(), `"a"`)

	shared := true
	_, err = e.Sys.Volumes.Edit(e.Ctx, disk.ID, volume.EditRequest{Shareable: &shared})
	require.NoError(t, err)
	b := e.VM(t, "b", vm.DiskRequest{VolumeID: disk.ID})
	got, err := e.Sys.Volumes.Get(e.Ctx, disk.ID)
	require.NoError(t, err)
	assert.Len(t, got.Attachments, 2, "a shareable volume may serve several VMs")
	notShared := false
	_, err = e.Sys.Volumes.Edit(e.Ctx, disk.ID, volume.EditRequest{Shareable: &notShared})
	assert.ErrorIs(t, err, errkind.InUse)

	_, err = e.Sys.VMs.AttachVolume(e.Ctx, b.ID, disk.ID, "virtio")
	assert.ErrorIs(t, err, errkind.AlreadyExists, "the same volume twice on one VM")
	_, err = e.Sys.VMs.Create(e.Ctx, sdktest.VMRequest("c", vm.DiskRequest{VolumeID: uuid.New()}))
	assert.ErrorIs(t, err, errkind.NotFound)
}

func TestFailedCreateIsUndone(t *testing.T) {
	newDisk := func(st uuid.UUID, name string) vm.DiskRequest {
		return vm.DiskRequest{New: &volume.CreateRequest{Name: name, StorageID: st, Format: volume.FormatRaw, Size: 1 << 20}}
	}
	cases := []struct {
		name   string
		inject func(e *sdktest.Env)
		second string // name of the second new volume
		kind   error
	}{
		{"define fails", func(e *sdktest.Env) { e.HV.FailNext("Define", fake.ErrInjected, 1) }, "second", fake.ErrInjected},
		{"second volume fails", func(e *sdktest.Env) {}, "first", errkind.AlreadyExists},
		{"hypervisor down", func(e *sdktest.Env) { e.HV.FailNext("Define", errkind.Unavailable, 1) }, "second", errkind.Unavailable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := sdktest.New(t, nil)
			st := e.Storage(t, "pool")
			c.inject(e)
			_, err := e.Sys.VMs.Create(e.Ctx, sdktest.VMRequest("web", newDisk(st.ID, "first"), newDisk(st.ID, c.second)))
			require.ErrorIs(t, err, c.kind)
			vms, err := e.Sys.VMs.List(e.Ctx, vm.ListOptions{})
			require.NoError(t, err)
			assert.Empty(t, vms.Items, "no VM remains")
			vols, err := e.Sys.Volumes.List(e.Ctx, volume.ListOptions{})
			require.NoError(t, err)
			assert.Empty(t, vols.Items, "the volumes created for it are removed")
			assert.Zero(t, e.FS.Objects(st.ID), "with their files")
			e.VM(t, "web") // the name is free again
		})
	}
}

func TestPowerLifecycle(t *testing.T) {
	e := sdktest.New(t, nil)
	st := e.Storage(t, "pool")
	disk := e.Volume(t, st.ID, "disk", 1<<30)
	m := e.VM(t, "web", vm.DiskRequest{VolumeID: disk.ID})

	_, err := e.Sys.VMs.Stop(e.Ctx, m.ID, vm.StopOptions{})
	assert.ErrorIs(t, err, errkind.WrongState, "stop a stopped VM")
	_, err = e.Sys.VMs.Reboot(e.Ctx, m.ID)
	assert.ErrorIs(t, err, errkind.WrongState)
	_, err = e.Sys.VMs.Console(e.Ctx, m.ID)
	assert.ErrorIs(t, err, errkind.WrongState)

	m, err = e.Sys.VMs.Start(e.Ctx, m.ID)
	require.NoError(t, err)
	assert.Equal(t, vm.PowerRunning, m.PowerState)
	assert.Equal(t, vm.StatusAvailable, m.Status)
	_, err = e.Sys.VMs.Start(e.Ctx, m.ID)
	assert.ErrorIs(t, err, errkind.WrongState, "start a running VM")
	con, err := e.Sys.VMs.Console(e.Ctx, m.ID)
	require.NoError(t, err)
	assert.Equal(t, vm.Console{Type: "vnc", Host: "127.0.0.1", Port: 5900}, con)
	_, err = e.Sys.VMs.Reboot(e.Ctx, m.ID)
	require.NoError(t, err)

	name := "renamed"
	_, err = e.Sys.VMs.Edit(e.Ctx, m.ID, vm.EditRequest{Name: &name})
	assert.ErrorIs(t, err, errkind.WrongState, "edit only while stopped")
	assert.ErrorIs(t, e.Sys.VMs.Delete(e.Ctx, m.ID, vm.DeleteOptions{}), errkind.WrongState, "delete only while stopped")
	assert.ErrorIs(t, e.Sys.Volumes.Delete(e.Ctx, disk.ID), errkind.InUse)

	// Graceful stop of a guest that ignores ACPI times out and keeps it running.
	e.HV.IgnoreShutdown = true
	_, err = e.Sys.VMs.Stop(e.Ctx, m.ID, vm.StopOptions{Timeout: 20 * time.Millisecond})
	require.ErrorIs(t, err, errkind.Timeout)
	m, err = e.Sys.VMs.Get(e.Ctx, m.ID)
	require.NoError(t, err)
	assert.Equal(t, vm.StatusAvailable, m.Status)
	assert.Equal(t, vm.PowerRunning, m.PowerState)
	m, err = e.Sys.VMs.Stop(e.Ctx, m.ID, vm.StopOptions{Timeout: 20 * time.Millisecond, ForceAfterTimeout: true})
	require.NoError(t, err)
	assert.Equal(t, vm.PowerShutOff, m.PowerState, "forced after the timeout")

	_, err = e.Sys.VMs.Start(e.Ctx, m.ID)
	require.NoError(t, err)
	m, err = e.Sys.VMs.Stop(e.Ctx, m.ID, vm.StopOptions{Force: true})
	require.NoError(t, err)
	assert.Equal(t, vm.PowerShutOff, m.PowerState)
	assert.Equal(t, 2, e.HV.Calls("Destroy"))

	e.HV.IgnoreShutdown = false
	_, err = e.Sys.VMs.Start(e.Ctx, m.ID)
	require.NoError(t, err)
	m, err = e.Sys.VMs.Stop(e.Ctx, m.ID, vm.StopOptions{})
	require.NoError(t, err)
	assert.Equal(t, vm.PowerShutOff, m.PowerState, "graceful stop")
	assert.Equal(t, 2, e.HV.Calls("Destroy"), "without forcing")
}

func TestStartRefusedWhileVolumeBusyOrStorageDown(t *testing.T) {
	e := sdktest.New(t, nil)
	st := e.Storage(t, "pool")
	disk := e.Volume(t, st.ID, "disk", 1<<30)
	m := e.VM(t, "web", vm.DiskRequest{VolumeID: disk.ID})
	e.FS.SetDown(st.ID, true)
	_, err := e.Sys.Storages.Refresh(e.Ctx, st.ID)
	require.NoError(t, err)
	_, err = e.Sys.VMs.Start(e.Ctx, m.ID)
	assert.ErrorIs(t, err, errkind.WrongState)
	got, err := e.Sys.VMs.Get(e.Ctx, m.ID)
	require.NoError(t, err)
	assert.Equal(t, vm.StatusAvailable, got.Status, "a refused start changes nothing")
}

func TestFailedPowerOperationsEndInError(t *testing.T) {
	e := sdktest.New(t, nil)
	m := e.VM(t, "web")
	e.HV.FailNext("Start", fake.ErrInjected, 1)
	_, err := e.Sys.VMs.Start(e.Ctx, m.ID)
	require.ErrorIs(t, err, fake.ErrInjected)
	got, err := e.Sys.VMs.Get(e.Ctx, m.ID)
	require.NoError(t, err)
	assert.Equal(t, vm.StatusError, got.Status)
	assert.Contains(t, got.StatusReason, "start failed")
	assert.Equal(t, vm.PowerShutOff, got.PowerState, "power state from the hypervisor")

	got, err = e.Sys.VMs.Start(e.Ctx, m.ID)
	require.NoError(t, err, "a VM in error may be started again")
	assert.Equal(t, vm.StatusAvailable, got.Status)

	e.HV.FailNext("Destroy", fake.ErrInjected, 1)
	_, err = e.Sys.VMs.Stop(e.Ctx, m.ID, vm.StopOptions{Force: true})
	require.ErrorIs(t, err, fake.ErrInjected)
	got, err = e.Sys.VMs.Get(e.Ctx, m.ID)
	require.NoError(t, err)
	assert.Equal(t, vm.StatusError, got.Status)
	assert.Equal(t, vm.PowerRunning, got.PowerState)
}

func TestEdit(t *testing.T) {
	e := sdktest.New(t, nil)
	st := e.Storage(t, "pool")
	a := e.Volume(t, st.ID, "a", 1<<30)
	b := e.Volume(t, st.ID, "b", 1<<30)
	m := e.VM(t, "web", vm.DiskRequest{VolumeID: a.ID})

	mem := int64(2 << 30)
	disks := []vm.DiskRequest{{VolumeID: b.ID}, {New: &volume.CreateRequest{Name: "c", StorageID: st.ID, Format: volume.FormatQCOW2, Size: 1 << 20}}}
	got, err := e.Sys.VMs.Edit(e.Ctx, m.ID, vm.EditRequest{MemoryBytes: &mem, Disks: &disks})
	require.NoError(t, err)
	assert.Equal(t, mem, got.MemoryBytes)
	require.Len(t, got.Disks, 2)
	assert.Equal(t, b.ID, got.Disks[0].VolumeID)
	assert.Equal(t, mem, e.HV.Domain(m.ID).Spec.MemoryBytes, "domain redefined")
	va, err := e.Sys.Volumes.Get(e.Ctx, a.ID)
	require.NoError(t, err)
	assert.Empty(t, va.Attachments, "a is detached, not deleted")

	// A failed redefine leaves the VM and its domain as they were.
	e.HV.FailNext("Define", fake.ErrInjected, 1)
	bad := int64(4 << 30)
	_, err = e.Sys.VMs.Edit(e.Ctx, m.ID, vm.EditRequest{MemoryBytes: &bad})
	require.ErrorIs(t, err, fake.ErrInjected)
	got, err = e.Sys.VMs.Get(e.Ctx, m.ID)
	require.NoError(t, err)
	assert.Equal(t, vm.StatusAvailable, got.Status)
	assert.Equal(t, mem, got.MemoryBytes)
	assert.Equal(t, mem, e.HV.Domain(m.ID).Spec.MemoryBytes)

	// Invalid edits report their fields.
	zero := int64(0)
	_, err = e.Sys.VMs.Edit(e.Ctx, m.ID, vm.EditRequest{MemoryBytes: &zero})
	assert.ErrorIs(t, err, errkind.Invalid)

	got, err = e.Sys.VMs.DetachVolume(e.Ctx, m.ID, b.ID)
	require.NoError(t, err)
	assert.Len(t, got.Disks, 1)
	_, err = e.Sys.VMs.DetachVolume(e.Ctx, m.ID, b.ID)
	assert.ErrorIs(t, err, errkind.NotFound)
}

func TestDelete(t *testing.T) {
	e := sdktest.New(t, nil)
	st := e.Storage(t, "pool")
	own := vm.DiskRequest{New: &volume.CreateRequest{Name: "own", StorageID: st.ID, Format: volume.FormatRaw, Size: 1 << 20}}
	m := e.VM(t, "web", own)
	keep := e.VM(t, "keep", vm.DiskRequest{New: &volume.CreateRequest{Name: "kept", StorageID: st.ID, Format: volume.FormatRaw, Size: 1 << 20}})

	e.HV.FailNext("Undefine", fake.ErrInjected, 1)
	require.ErrorIs(t, e.Sys.VMs.Delete(e.Ctx, m.ID, vm.DeleteOptions{DeleteVolumes: true}), fake.ErrInjected)
	got, err := e.Sys.VMs.Get(e.Ctx, m.ID)
	require.NoError(t, err)
	assert.Equal(t, vm.StatusError, got.Status, "a failed delete leaves error with a reason")

	require.NoError(t, e.Sys.VMs.Delete(e.Ctx, m.ID, vm.DeleteOptions{DeleteVolumes: true}))
	_, err = e.Sys.VMs.Get(e.Ctx, m.ID)
	assert.ErrorIs(t, err, errkind.NotFound)
	assert.Nil(t, e.HV.Domain(m.ID))
	_, err = e.Sys.Volumes.Get(e.Ctx, m.Disks[0].VolumeID)
	assert.ErrorIs(t, err, errkind.NotFound, "its volume went with it")

	require.NoError(t, e.Sys.VMs.Delete(e.Ctx, keep.ID, vm.DeleteOptions{}))
	kept, err := e.Sys.Volumes.Get(e.Ctx, keep.Disks[0].VolumeID)
	require.NoError(t, err, "volumes stay unless asked")
	assert.Empty(t, kept.Attachments)
}

func TestPowerStateFromEvents(t *testing.T) {
	e := sdktest.New(t, nil)
	m := e.Running(t, "web")
	ctx, cancel := context.WithCancel(e.Ctx)
	done := make(chan struct{})
	go func() { defer close(done); e.Sys.VMs.Watch(ctx, time.Hour) }()
	t.Cleanup(func() { cancel(); <-done })

	waitPower := func(want vm.PowerState) *vm.VM {
		var got *vm.VM
		require.Eventually(t, func() bool {
			var err error
			got, err = e.Sys.VMs.Get(e.Ctx, m.ID)
			return err == nil && got.PowerState == want
		}, 10*time.Second, time.Millisecond)
		return got
	}
	waitPower(vm.PowerRunning)
	e.HV.SetState(m.ID, vm.PowerShutOff) // destroyed behind openvair's back
	got := waitPower(vm.PowerShutOff)
	assert.Equal(t, vm.StatusAvailable, got.Status)

	e.HV.SetState(m.ID, vm.PowerMissing) // undefined behind openvair's back
	got = waitPower(vm.PowerMissing)
	assert.Equal(t, vm.StatusError, got.Status)
	assert.Contains(t, got.StatusReason, "disappeared")
	_, err := e.Sys.VMs.Start(e.Ctx, m.ID)
	assert.ErrorIs(t, err, errkind.WrongState, "not silently recreated")
	require.NoError(t, e.Sys.VMs.Delete(e.Ctx, m.ID, vm.DeleteOptions{}), "but can be deleted")
}

func TestResyncWithoutEvents(t *testing.T) {
	e := sdktest.New(t, nil)
	m := e.Running(t, "web")
	e.HV.SetState(m.ID, vm.PowerCrashed)
	require.NoError(t, e.Sys.VMs.SyncPowerStates(e.Ctx))
	got, err := e.Sys.VMs.Get(e.Ctx, m.ID)
	require.NoError(t, err)
	assert.Equal(t, vm.PowerCrashed, got.PowerState)
	got, err = e.Sys.VMs.Start(e.Ctx, m.ID)
	require.NoError(t, err, "a crashed VM can be started again")
	assert.Equal(t, vm.PowerRunning, got.PowerState)
}

func TestMonitorNeverOverwritesTransitional(t *testing.T) {
	e := sdktest.New(t, nil)
	m := e.VM(t, "web")
	cur, err := e.Sys.Store.VMs().Get(e.Ctx, m.ID)
	require.NoError(t, err)
	require.NoError(t, cur.SetStatus(vm.StatusStarting, ""))
	require.NoError(t, e.Sys.Store.VMs().Update(e.Ctx, cur))
	require.NoError(t, e.Sys.VMs.ObservePower(e.Ctx, m.ID, driver.DomainState{Power: vm.PowerRunning}, time.Time{}))
	got, err := e.Sys.VMs.Get(e.Ctx, m.ID)
	require.NoError(t, err)
	assert.Equal(t, vm.StatusStarting, got.Status)
	assert.Equal(t, vm.PowerShutOff, got.PowerState, "the operation in progress records the outcome")

	require.NoError(t, e.Sys.VMs.Recover(e.Ctx))
	got, err = e.Sys.VMs.Get(e.Ctx, m.ID)
	require.NoError(t, err)
	assert.Equal(t, vm.StatusAvailable, got.Status, "recovered from the hypervisor's view")
}

func TestNoHypervisor(t *testing.T) {
	e := sdktest.New(t, nil)
	vm.SetHypervisor(e.Sys.VMs, nil)
	_, err := e.Sys.VMs.Create(e.Ctx, sdktest.VMRequest("web"))
	assert.ErrorIs(t, err, errkind.Unavailable)
}

func TestConcurrentAttachesNeverDropEachOther(t *testing.T) {
	e := sdktest.New(t, nil)
	st := e.Storage(t, "pool")
	m := e.VM(t, "web")
	vols := make([]*volume.Volume, 10)
	for i := range vols {
		vols[i] = e.Volume(t, st.ID, fmt.Sprintf("v%d", i), 1<<20)
	}
	errs := make([]error, len(vols))
	done := make(chan struct{})
	for i, v := range vols {
		go func() {
			defer func() { done <- struct{}{} }()
			_, errs[i] = e.Sys.VMs.AttachVolume(e.Ctx, m.ID, v.ID, "virtio")
		}()
	}
	for range vols {
		<-done
	}
	wins := 0
	for _, err := range errs {
		if err == nil {
			wins++
		} else {
			assert.ErrorIs(t, err, errkind.WrongState, "the VM was busy with another edit")
		}
	}
	got, err := e.Sys.VMs.Get(e.Ctx, m.ID)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, wins, 1)
	assert.Len(t, got.Disks, wins, "every successful attach is still there")
	assert.Len(t, e.HV.Domain(m.ID).Spec.Disks, wins, "and in the domain")
}

// TestStalePowerStateIsConfirmedWithTheHypervisor covers changes made behind openvair's back that no event
// has reported yet: the hypervisor's word wins.
func TestStalePowerStateIsConfirmedWithTheHypervisor(t *testing.T) {
	e := sdktest.New(t, nil)
	running := e.Running(t, "was-running")
	e.HV.SetState(running.ID, vm.PowerShutOff) // destroyed by hand; no monitor runs here
	got, err := e.Sys.VMs.Stop(e.Ctx, running.ID, vm.StopOptions{Force: true})
	require.NoError(t, err, "stopping a domain that is already off succeeds")
	assert.Equal(t, vm.PowerShutOff, got.PowerState)
	assert.Equal(t, vm.StatusAvailable, got.Status)

	stopped := e.VM(t, "was-stopped")
	e.HV.SetState(stopped.ID, vm.PowerRunning) // started by hand
	name := "renamed"
	_, err = e.Sys.VMs.Edit(e.Ctx, stopped.ID, vm.EditRequest{Name: &name})
	require.ErrorIs(t, err, errkind.WrongState, "edit checks the real power state")
	err = e.Sys.VMs.Delete(e.Ctx, stopped.ID, vm.DeleteOptions{})
	require.ErrorIs(t, err, errkind.WrongState, "delete checks the real power state")
	got, err = e.Sys.VMs.Get(e.Ctx, stopped.ID)
	require.NoError(t, err)
	assert.Equal(t, vm.StatusAvailable, got.Status, "the refused operations released the VM")
	assert.Equal(t, vm.PowerRunning, got.PowerState, "and recorded what the hypervisor said")
	assert.NotNil(t, e.HV.Domain(stopped.ID), "the running domain was not undefined")
}
