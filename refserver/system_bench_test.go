package refserver_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/testenv"
	"github.com/openvair/openvair/internal/testenv/ganesha"
	"github.com/openvair/openvair/internal/testenv/tinyguest"
	"github.com/openvair/openvair/refserver"
)

// awaitBoots polls the volume file until the guest's marker says it booted boots times.
func awaitBoots(b *testing.B, path string, boots int) {
	deadline := time.Now().Add(guestTimeout)
	for {
		if n, _, _ := tinyguest.ReadQCOW2Marker(path); n >= boots {
			return
		}
		require.True(b, time.Now().Before(deadline), "no marker for boot %d in %s", boots, path)
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkStartToMarker measures, under TCG on the system daemon, the time from the API's start call until
// the tiny guest's marker is on its qcow2 volume, for a volume and ISO on LocalFS and on nfs-ganesha. The
// baseline in the same run is the same ISO and a same-size qcow2 booted by qemu-system-x86_64 directly,
// with no libvirt and no API: api/direct is what the SDK, libvirt and QEMU's NFS client add.
func BenchmarkStartToMarker(b *testing.B) {
	if !ganesha.InNamespace(b) {
		return
	}
	srv := ganesha.Start(b)
	e := start(b, envOptions{system: true})
	iso := tinyguest.ISO(b)
	dir := filepath.Join(e.dir, "pool")
	local := e.localStorage("local", dir)
	var nfs refserver.Storage
	e.call("POST", "/api/v1/storages", map[string]any{"name": "nfs", "type": "nfs",
		"nfs": map[string]any{"server": srv.Addr(), "export": srv.Export()}}, 201, &nfs)
	paths := map[string]func(uuid.UUID) string{
		"localfs": func(v uuid.UUID) string { return filepath.Join(dir, "volume-"+v.String()) },
		"nfs": func(v uuid.UUID) string {
			return filepath.Join(srv.Dir(), "openvair-"+nfs.ID.String(), "volume-"+v.String())
		},
	}
	secs := map[string]float64{}

	b.Run("direct", func(b *testing.B) {
		qemu := testenv.LookPath(b, "qemu-system-x86_64")
		disk := filepath.Join(b.TempDir(), "disk.qcow2")
		out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", disk, "64M").CombinedOutput()
		require.NoError(b, err, "%s", out)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
			cmd := exec.CommandContext(ctx, qemu, "-machine", "pc,accel=tcg", "-cpu", "qemu64", "-m", "256", "-display", "none",
				"-serial", "null", "-monitor", "none", "-nic", "none", "-boot", "order=d", "-cdrom", iso,
				"-drive", "file="+disk+",if=virtio,format=qcow2")
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
			require.NoError(b, cmd.Start())
			awaitBoots(b, disk, i+1)
			b.StopTimer()
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
			cancel()
			b.StartTimer()
		}
		secs["direct"] = b.Elapsed().Seconds() / float64(b.N)
	})
	for _, c := range []struct {
		name    string
		storage refserver.Storage
	}{{"localfs", local}, {"nfs", nfs}} {
		img := e.uploadFile(c.storage.ID, "tiny-"+c.name, iso)
		v := e.tinyGuestVM("bench-"+c.name, c.storage.ID, img.ID)
		path := paths[c.name](v.Disks[0].VolumeID)
		boots := 0
		b.Run("api/"+c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				e.call("POST", "/api/v1/vms/"+v.ID.String()+"/start", nil, 200, nil)
				boots++
				awaitBoots(b, path, boots)
				b.StopTimer()
				e.call("POST", "/api/v1/vms/"+v.ID.String()+"/stop", map[string]any{"force": true}, 200, nil)
				b.StartTimer()
			}
			secs[c.name] = b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(secs[c.name], "s/start-to-marker")
		})
	}
	if secs["direct"] > 0 {
		b.Logf("start to marker under TCG: direct QEMU %.2f s; API on LocalFS %.2f s (%.2fx); API on NFS %.2f s (%.2fx)",
			secs["direct"], secs["localfs"], secs["localfs"]/secs["direct"], secs["nfs"], secs["nfs"]/secs["direct"])
	}
}
