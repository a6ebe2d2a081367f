package refserver_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver/libvirt"
	"github.com/openvair/openvair/internal/testenv/ganesha"
	"github.com/openvair/openvair/refserver"
)

// diskVM creates a VM with one new 16 MiB qcow2 volume on the storage (and the CPU given, if any).
func (e *env) diskVM(name string, storageID uuid.UUID, cpu map[string]any) refserver.VM {
	e.t.Helper()
	if cpu == nil {
		cpu = map[string]any{"sockets": 1, "cores": 1, "threads": 1}
	}
	body := map[string]any{"name": name, "cpu": cpu, "memory": 64 << 20}
	if storageID != uuid.Nil {
		body["disks"] = []map[string]any{{"new": map[string]any{"name": name + "-disk", "storage_id": storageID, "format": "qcow2", "size": 16 << 20}}}
	}
	var v refserver.VM
	e.call("POST", "/api/v1/vms", body, 201, &v)
	return v
}

// startRefused starts the VM and requires the refusal's status, kind and reason; the VM stays shut off.
func (e *env) startRefused(v refserver.VM, status int, kind, reason string) refserver.Problem {
	e.t.Helper()
	p := e.do("POST", "/api/v1/vms/"+v.ID.String()+"/start", e.admin, nil).problemIs(e.t, status, kind)
	assert.Equal(e.t, reason, p.Reason, "detail: %s", p.Detail)
	var got refserver.VM
	e.call("GET", "/api/v1/vms/"+v.ID.String(), nil, 200, &got)
	assert.Equal(e.t, "shut_off", string(got.PowerState))
	return p
}

// TestStartFailureClassesSystem: each way a start fails on a real host answers with what it is, not 503.
func TestStartFailureClassesSystem(t *testing.T) {
	e := start(t, envOptions{system: true})

	t.Run("unknown CPU model is 422 unrunnable", func(t *testing.T) {
		v := e.diskVM("badcpu", uuid.Nil, map[string]any{"sockets": 1, "cores": 1, "threads": 1, "mode": "custom", "model": "Nonexistent-CPU"})
		p := e.startRefused(v, 422, "unrunnable", "cpu")
		assert.Contains(t, p.Detail, "Nonexistent-CPU", "the hypervisor's message")
	})

	t.Run("a file QEMU cannot reach is 502 backend_failed", func(t *testing.T) {
		private := filepath.Join(e.dir, "private") // 0700 root: the QEMU user cannot traverse it
		require.NoError(t, os.Mkdir(private, 0o700))
		st := e.localStorage("private", filepath.Join(private, "pool"))
		v := e.diskVM("unreachable", st.ID, nil)
		p := e.startRefused(v, 502, "backend_failed", "file_access")
		assert.Contains(t, p.Detail, "Permission denied")
	})
}

// TestStartNFSAccessRefusedSystem: a volume file on nfs-ganesha that QEMU's identity may only read (what
// the NFS backend made before it gave files to QEMU's identity, and still makes with qemu_uid "none":
// root-owned 0644) fails the start with 502, reason nfs_access.
func TestStartNFSAccessRefusedSystem(t *testing.T) {
	if !ganesha.InNamespace(t) {
		return
	}
	srv := ganesha.Start(t)
	e := start(t, envOptions{system: true, storageOptions: map[string]string{"qemu_uid": "none"}})
	var st refserver.Storage
	e.call("POST", "/api/v1/storages", map[string]any{"name": "nfs", "type": "nfs",
		"nfs": map[string]any{"server": srv.Addr(), "export": srv.Export()}}, 201, &st)
	v := e.diskVM("nfsdenied", st.ID, nil)
	file := filepath.Join(srv.Dir(), "openvair-"+st.ID.String(), "volume-"+v.Disks[0].VolumeID.String())
	fi, err := os.Stat(file)
	require.NoError(t, err)
	require.Equal(t, uint32(0), fi.Sys().(*syscall.Stat_t).Uid, "root-owned")
	require.Equal(t, os.FileMode(0o644), fi.Mode().Perm())
	p := e.startRefused(v, 502, "backend_failed", "nfs_access")
	assert.Contains(t, p.Detail, "ACCESS denied")
}

// TestLibvirtdOutageSystem: libvirtd dies, the domain's QEMU is killed while it is down, libvirtd comes back.
// During the outage /readyz is 503 naming the hypervisor and reads mark the power state stale; within 5 s
// of the restart the VM is shut_off with its reason, and fresh.
func TestLibvirtdOutageSystem(t *testing.T) {
	e := start(t, envOptions{system: true})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.sys.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	v := e.diskVM("outage", uuid.Nil, nil)
	id := v.ID.String()
	e.call("POST", "/api/v1/vms/"+id+"/start", nil, 200, &v)
	require.Eventually(t, func() bool {
		e.call("GET", "/api/v1/vms/"+id, nil, 200, &v)
		return v.PowerState == "running" && !v.PowerStateStale
	}, 30*time.Second, 50*time.Millisecond)
	e.call("GET", "/readyz", nil, 200, nil)

	pid, err := e.daemon.QEMUPID(libvirt.DomainName(v.ID))
	require.NoError(t, err)
	e.daemon.StopDaemon()
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL), "destroy the domain behind libvirt's back")

	p := e.do("GET", "/readyz", "", nil).problemIs(t, 503, "unavailable")
	assert.Contains(t, p.Detail, "hypervisor: ")
	e.call("GET", "/healthz", nil, 200, nil)
	require.Eventually(t, func() bool {
		e.call("GET", "/api/v1/vms/"+id, nil, 200, &v)
		return v.PowerStateStale
	}, 10*time.Second, 50*time.Millisecond, "reads say the power state is not current")
	assert.Equal(t, "running", string(v.PowerState), "the last state observed")

	restarted := time.Now()
	e.daemon.StartDaemon()
	require.Eventually(t, func() bool {
		e.call("GET", "/api/v1/vms/"+id, nil, 200, &v)
		return v.PowerState == "shut_off" && !v.PowerStateStale
	}, 5*time.Second, 20*time.Millisecond, "shut_off within 5 s of the restart")
	t.Logf("VM shut_off (reason %q) %s after libvirtd restarted", v.PowerStateReason, time.Since(restarted).Round(time.Millisecond))
	assert.NotEmpty(t, v.PowerStateReason)
	assert.True(t, v.PowerStateObservedAt.After(restarted))
	e.call("GET", "/readyz", nil, 200, nil)
}
