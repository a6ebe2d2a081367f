package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver/libvirt"
	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/internal/testenv/tinyguest"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
)

// guestTimeout bounds a tiny guest's boot under TCG on a loaded 2-core machine.
const guestTimeout = 4 * time.Minute

// TestFlowLibvirt is the whole flow through the CLI against a real hypervisor: a throwaway system-mode
// libvirtd, QEMU (TCG) as libvirt-qemu, and the project's tiny guest, which boots from its ISO, writes a
// marker to its disk and powers off on the ACPI power button. Storage, volume, image upload with progress,
// VM create, start, the serial console, a graceful stop the guest honours, delete.
func TestFlowLibvirt(t *testing.T) {
	s := startServer(t, serverOptions{libvirt: true})
	iso := tinyguest.ISO(t)

	pool := jsonOf[storage.Storage](t, s, "storage", "create", "pool", "--type", "localfs", "--config", "path="+filepath.Join(s.Dir, "pool"))
	assert.Equal(t, storage.StatusAvailable, pool.Status)
	assert.Positive(t, pool.Capacity)
	data := jsonOf[volume.Volume](t, s, "volume", "create", "data", "--storage", "pool", "--size", "32MiB", "--format", "raw")
	assert.EqualValues(t, 32<<20, data.Size)

	up := s.run(t, nil, nil, "image", "upload", iso, "--storage", "pool", "--name", "tinyguest", "--progress=plain",
		"--progress-interval", "1ms", "-o", "json")
	require.Equal(t, 0, up.Code, up.Err)
	var img image.Image
	require.NoError(t, json.Unmarshal([]byte(up.Out), &img))
	assert.Equal(t, image.FormatISO, img.Format)
	assert.Regexp(t, `(?m)^upload tinyguest: [0-9.]+ [KM]iB / [0-9.]+ MiB \(\d+%\), [0-9.]+ [KMG]?i?B/s, ETA `, up.Err, "periodic lines")
	assert.Regexp(t, `(?m)^upload tinyguest: .* \(100%\), .*, done in `, up.Err)

	v := jsonOf[vm.VM](t, s, "vm", "create", "tiny", "--cpus", "1", "--memory", "256MiB", "--boot", "cdrom,hd",
		"--disk", "new:storage=pool,size=64MiB,name=tiny-root", "--disk", "data", "--cdrom", "tinyguest")
	require.Len(t, v.Disks, 2)
	assert.Equal(t, data.ID, v.Disks[1].VolumeID)
	assert.Equal(t, vm.PowerShutOff, v.PowerState)

	v = jsonOf[vm.VM](t, s, "vm", "start", "tiny")
	assert.Equal(t, vm.PowerRunning, v.PowerState)
	awaitConsoleLog(t, s, "tiny", tinyguest.LineMarker)
	assert.Contains(t, s.ok(t, "vm", "console-log", "tiny"), tinyguest.LineBooted)

	v = jsonOf[vm.VM](t, s, "vm", "stop", "tiny", "--timeout", "120s")
	assert.Equal(t, vm.PowerShutOff, v.PowerState, "the guest honours ACPI")
	assert.Equal(t, "shutdown", string(v.PowerStateReason))
	assert.Contains(t, s.ok(t, "vm", "console-log", "tiny"), tinyguest.LinePowerOff)

	// Boot again with the serial console attached: the guest's output arrives through the CLI.
	jsonOf[vm.VM](t, s, "vm", "start", "tiny")
	serialConsole(t, s, "tiny", tinyguest.LineMarker)
	v = jsonOf[vm.VM](t, s, "vm", "stop", "tiny", "--force")
	assert.Equal(t, vm.PowerShutOff, v.PowerState)
	assert.Equal(t, "destroyed", string(v.PowerStateReason))

	s.fails(t, 4, "storage", "delete", "pool")
	s.ok(t, "vm", "delete", "tiny", "--volumes")
	s.fails(t, 3, "vm", "show", "tiny")
	vols := jsonOf[[]volume.Volume](t, s, "volume", "list")
	assert.Empty(t, vols, "the VM's volumes went with it")
	s.ok(t, "image", "delete", "tinyguest")
	s.ok(t, "storage", "delete", "pool")
}

// awaitConsoleLog polls vm console-log until it holds line.
func awaitConsoleLog(t *testing.T, s *server, name, line string) {
	t.Helper()
	deadline := time.Now().Add(guestTimeout)
	for {
		r := s.run(t, nil, nil, "vm", "console-log", name)
		if r.Code == 0 && strings.Contains(r.Out, line) {
			return
		}
		if time.Now().After(deadline) {
			require.Failf(t, "the guest did not get there", "no %q within %s; console: %s %s\nQEMU log:\n%s", line, guestTimeout,
				r.Out, r.Err, s.daemon.QEMULog(libvirt.DomainName(jsonOf[vm.VM](t, s, "vm", "show", name).ID)))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// serialConsole runs vm console with standard input a pipe, reads its output until line, then ends the
// input: the CLI shows the output a moment longer and exits 0.
func serialConsole(t *testing.T, s *server, name, line string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), guestTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "vm", "console", name)
	cmd.Env = []string{"HOME=" + s.config, "XDG_CONFIG_HOME=" + s.config, "OPENVAIR_URL=" + s.URL, "OPENVAIR_TOKEN=" + s.Token}
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	sc := bufio.NewScanner(stdout)
	var seen []string
	found := false
	for sc.Scan() {
		seen = append(seen, sc.Text())
		if strings.Contains(sc.Text(), line) {
			found = true
			break
		}
	}
	require.True(t, found, "console output: %q, stderr: %s", seen, stderr.String())
	require.NoError(t, stdin.Close())
	_, _ = io.Copy(io.Discard, stdout)
	require.NoError(t, cmd.Wait(), stderr.String())
	assert.Contains(t, stderr.String(), "Connected to the serial console of "+name)
}

// lockedBuffer is a buffer a process writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
