package tinyguest

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/testenv"
)

func TestParseMarker(t *testing.T) {
	long := append(formatMarker(7), []byte("trailing data after the first sector")...)
	tests := []struct {
		name  string
		data  []byte
		boots int
		ok    bool
	}{
		{"first boot", formatMarker(1), 1, true},
		{"many boots", formatMarker(123456), 123456, true},
		{"only the first sector counts", long, 7, true},
		{"unpadded record", []byte(Marker + " boots=3\n"), 3, true},
		{"zeros", make([]byte, 512), 0, false},
		{"empty", nil, 0, false},
		{"no newline", []byte(Marker + " boots=3"), 0, false},
		{"no digits", []byte(Marker + " boots=\n"), 0, false},
		{"negative", []byte(Marker + " boots=-1\n"), 0, false},
		{"plus sign", []byte(Marker + " boots=+1\n"), 0, false},
		{"too many digits", []byte(Marker + " boots=1234567890\n"), 0, false},
		{"not at offset 0", append([]byte{0}, formatMarker(1)...), 0, false},
		{"other marker", []byte("OPENVAIR-TINYGUEST-MARKEX boots=1\n"), 0, false},
		{"record past the first sector", append(make([]byte, 500), formatMarker(1)...)[:600], 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			boots, ok := ParseMarker(tc.data)
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.boots, boots)
		})
	}
}

// The guest's /init is a separate program; its copies of the constants must match.
func TestGuestInitUsesTheConstants(t *testing.T) {
	src, err := guestSource.ReadFile("guestinit/main.go")
	require.NoError(t, err)
	for _, s := range []string{LineBooted, LineMarker, LineNoDisk, LinePowerOff, LineCIData} {
		assert.Contains(t, string(src), strconv.Quote(s))
	}
	assert.Contains(t, string(src), strconv.Quote("tinyguest.record="))
	assert.Contains(t, syslinuxCfg, " tinyguest.record="+strconv.Itoa(DiskRecordOffset)+"\n")
	assert.Equal(t, formatMarker(3), Record{Boots: 3}.Encode()[:SectorSize], "the guest's record without a seed is the marker sector")
}

// cpioEntry is one parsed newc entry.
type cpioEntry struct {
	name         string
	mode         uint32
	rmaj, rmin   uint32
	data         []byte
	nlink, inode uint32
}

// parseCPIO parses a newc archive up to its trailer.
func parseCPIO(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	off := 0
	field := func(i int) uint32 {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
		require.NoError(t, err)
		return uint32(v)
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		require.LessOrEqual(t, off+110, len(b), "archive ends inside a header")
		require.Equal(t, "070701", string(b[off:off+6]), "magic at %d", off)
		e := cpioEntry{inode: field(0), mode: field(1), nlink: field(4), rmaj: field(9), rmin: field(10)}
		size, nameSize := int(field(6)), int(field(11))
		require.Zero(t, field(12), "check field")
		nameEnd := off + 110 + nameSize
		require.Equal(t, byte(0), b[nameEnd-1], "name NUL terminated")
		e.name = string(b[off+110 : nameEnd-1])
		dataStart := align(nameEnd)
		e.data = b[dataStart : dataStart+size]
		off = align(dataStart + size)
		if e.name == "TRAILER!!!" {
			require.Equal(t, len(b), off, "nothing after the trailer")
			return out
		}
		out = append(out, e)
	}
}

func TestCPIOWriter(t *testing.T) {
	var buf bytes.Buffer
	w := newCPIOWriter(&buf)
	require.NoError(t, w.Dir("dev", 0o755))
	require.NoError(t, w.CharDev("/dev/console", 0o600, 5, 1))
	require.NoError(t, w.File("init", 0o755, []byte("#!/bin/sh\n")))
	require.NoError(t, w.File("a-name-of-odd-length", 0o644, []byte("12345")))
	require.NoError(t, w.File("empty", 0o644, nil))
	require.Error(t, w.File("", 0o644, nil))
	require.Error(t, w.File("TRAILER!!!", 0o644, nil))
	require.NoError(t, w.Close())
	require.Error(t, w.File("late", 0o644, nil), "writes after Close fail")

	entries := parseCPIO(t, buf.Bytes())
	require.Len(t, entries, 5)
	want := []cpioEntry{
		{name: "dev", mode: 0o40755, nlink: 2, inode: 1},
		{name: "dev/console", mode: 0o20600, rmaj: 5, rmin: 1, nlink: 1, inode: 2, data: []byte{}},
		{name: "init", mode: 0o100755, nlink: 1, inode: 3, data: []byte("#!/bin/sh\n")},
		{name: "a-name-of-odd-length", mode: 0o100644, nlink: 1, inode: 4, data: []byte("12345")},
		{name: "empty", mode: 0o100644, nlink: 1, inode: 5, data: []byte{}},
	}
	for i := range want {
		if want[i].data == nil {
			want[i].data = []byte{}
		}
		assert.Equal(t, want[i], entries[i])
	}

	// GNU cpio, an independent reader, lists and extracts the same archive.
	bin, err := exec.LookPath("cpio")
	if err != nil {
		t.Log("cpio not installed; checked the archive with the Go parser only")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-it", "--quiet")
	cmd.Stdin = bytes.NewReader(buf.Bytes())
	out, err := cmd.Output()
	require.NoError(t, err)
	assert.Equal(t, "dev\ndev/console\ninit\na-name-of-odd-length\nempty\n", string(out))

	dir := t.TempDir()
	cmd = exec.CommandContext(ctx, bin, "-id", "--quiet", "--no-absolute-filenames", "init", "a-name-of-odd-length")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(buf.Bytes())
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	got, err := os.ReadFile(filepath.Join(dir, "a-name-of-odd-length"))
	require.NoError(t, err)
	assert.Equal(t, "12345", string(got))
	st, err := os.Stat(filepath.Join(dir, "init"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o755), st.Mode().Perm())
}

func TestLoadOrder(t *testing.T) {
	k := &kernel{
		release: "test",
		builtin: map[string]bool{"evdev": true},
		known:   map[string]bool{"virtio_ring": true, "virtio": true, "virtio_pci": true, "extra": true},
		modules: map[string]module{
			"virtio_ring":           {},
			"virtio":                {deps: []string{"virtio_ring"}},
			"virtio_pci_legacy_dev": {},
			"virtio_pci_modern_dev": {},
			"virtio_pci":            {deps: []string{"virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio"}},
			"virtio_blk":            {deps: []string{"virtio", "virtio_ring", "extra"}},
			"button":                {},
			"ahci":                  {deps: []string{"libata"}},
			"libata":                {},
			"sr_mod":                {},
		},
	}
	order, missing, err := loadOrder(k)
	require.NoError(t, err)
	assert.Equal(t, []string{"extra"}, missing, "a dependency not read yet is reported")
	assert.Equal(t, []string{"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
		"virtio_blk", "button", "libata", "ahci", "sr_mod"}, order, "dependencies first, builtin evdev left out")

	delete(k.modules, "button")
	_, _, err = loadOrder(k)
	require.ErrorContains(t, err, "no module button")
}

// qemuGuest is one QEMU process running the tiny guest.
type qemuGuest struct {
	cmd    *exec.Cmd
	log    string
	mon    string
	stderr bytes.Buffer
	done   chan struct{}
	err    error // valid after done
}

// startGuest boots the ISO with disk as its virtio disk, in its own process group, killed with the test.
func startGuest(t *testing.T, qemu, iso, disk string) *qemuGuest {
	t.Helper()
	return startQEMU(t, qemu, "-boot", "order=d", "-cdrom", iso, "-drive", "file="+disk+",if=virtio,format=qcow2")
}

// startQEMU starts a TCG QEMU with 256 MiB, no network, the serial port in a log file and a monitor socket,
// plus args (the disks and the boot order), in its own process group, killed with the test.
func startQEMU(t *testing.T, qemu string, args ...string) *qemuGuest {
	t.Helper()
	dir := t.TempDir()
	g := &qemuGuest{log: filepath.Join(dir, "serial.log"), mon: filepath.Join(dir, "mon.sock"), done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	g.cmd = exec.CommandContext(ctx, qemu, append([]string{
		"-machine", "pc,accel=tcg", "-m", "256", "-nographic", "-no-reboot", "-nic", "none",
		"-serial", "file:" + g.log, "-monitor", "unix:" + g.mon + ",server,nowait", "-display", "none"}, args...)...)
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	g.cmd.Cancel = func() error { return syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL) }
	g.cmd.Stdout = &g.stderr
	g.cmd.Stderr = &g.stderr
	require.NoError(t, g.cmd.Start())
	go func() {
		g.err = g.cmd.Wait()
		cancel()
		close(g.done)
	}()
	t.Cleanup(func() {
		select {
		case <-g.done:
		default:
			_ = syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
			<-g.done
		}
	})
	return g
}

func (g *qemuGuest) serial() string {
	b, _ := os.ReadFile(g.log)
	return string(b)
}

// waitFor polls the serial log for line until the limit; it fails the test if QEMU exits first.
func (g *qemuGuest) waitFor(t *testing.T, line string, limit time.Duration) {
	t.Helper()
	deadline := time.After(limit)
	for !strings.Contains(g.serial(), line) {
		select {
		case <-g.done:
			t.Fatalf("QEMU exited (%v) before the guest printed %q\nserial:\n%s\nqemu:\n%s", g.err, line, g.serial(), g.stderr.String())
		case <-deadline:
			t.Fatalf("guest did not print %q within %v\nserial:\n%s", line, limit, g.serial())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// hmp sends one command on the human monitor socket.
func (g *qemuGuest) hmp(t *testing.T, command string) {
	t.Helper()
	conn, err := net.DialTimeout("unix", g.mon, 5*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = conn.Write([]byte(command + "\n"))
	require.NoError(t, err)
	// Wait for the prompt that follows the command, so it has been executed before the socket closes.
	var seen bytes.Buffer
	buf := make([]byte, 512)
	for bytes.Count(seen.Bytes(), []byte("(qemu)")) < 2 {
		n, err := conn.Read(buf)
		seen.Write(buf[:n])
		if errors.Is(err, io.EOF) || errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		require.NoError(t, err)
	}
}

// readMarker reads the marker the guest left on its qcow2 disk, through the qcow2 package.
func readMarker(t *testing.T, disk string) (int, bool) {
	t.Helper()
	boots, ok, err := ReadQCOW2Marker(disk)
	require.NoError(t, err)
	return boots, ok
}

func TestGuestBootsWritesMarkerAndPowersOff(t *testing.T) {
	qemu := testenv.LookPath(t, "qemu-system-x86_64")
	qemuImg := testenv.LookPath(t, "qemu-img")
	start := time.Now()
	iso := ISO(t)
	t.Logf("ISO %s ready in %v", iso, time.Since(start).Round(time.Millisecond))
	st, err := os.Stat(iso)
	require.NoError(t, err)
	assert.Greater(t, st.Size(), int64(2<<20))
	assert.Less(t, st.Size(), int64(40<<20))

	disk := filepath.Join(t.TempDir(), "disk.qcow2")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, qemuImg, "create", "-q", "-f", "qcow2", disk, "64M").CombinedOutput()
	require.NoError(t, err, "%s", out)
	_, ok := readMarker(t, disk)
	require.False(t, ok, "a new disk has no marker")

	for boot := 1; boot <= 2; boot++ {
		t.Run(fmt.Sprintf("boot%d", boot), func(t *testing.T) {
			g := startGuest(t, qemu, iso, disk)
			begin := time.Now()
			g.waitFor(t, LineMarker, 3*time.Minute)
			t.Logf("boot %d: %q after %v under TCG", boot, LineMarker, time.Since(begin).Round(time.Millisecond))
			serial := g.serial()
			assert.Contains(t, serial, LineBooted)
			assert.NotContains(t, serial, LineNoDisk)

			// Let the guest open its input devices before pressing the button (it rescans every second,
			// and QEMU's ACPI power button event is not queued for a guest that does not listen yet).
			g.waitFor(t, "(Power Button)", 30*time.Second)
			g.hmp(t, "system_powerdown")
			select {
			case <-g.done:
			case <-time.After(90 * time.Second):
				t.Fatalf("QEMU still running 90 s after system_powerdown\nserial:\n%s", g.serial())
			}
			require.NoError(t, g.err, "QEMU exit\nqemu:\n%s", g.stderr.String())
			assert.Contains(t, g.serial(), LinePowerOff, "the guest powered off on the power button")
			t.Logf("boot %d: whole run %v", boot, time.Since(begin).Round(time.Millisecond))

			boots, ok := readMarker(t, disk)
			require.True(t, ok, "marker on the disk")
			assert.Equal(t, boot, boots)
		})
		if t.Failed() {
			return
		}
	}
}

func TestISOIsCached(t *testing.T) {
	testenv.LookPath(t, "xorriso")
	first := ISO(t)
	st1, err := os.Stat(first)
	require.NoError(t, err)

	// A fresh build pipeline (as another test process would run it) finds the cached file without building.
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	built := false
	again, err := cachedISO(ctx, func(format string, _ ...any) {
		if strings.Contains(format, "built") {
			built = true
		}
	})
	require.NoError(t, err)
	t.Logf("cached lookup took %v", time.Since(start).Round(time.Millisecond))
	assert.Equal(t, first, again)
	assert.False(t, built, "the cached ISO was reused")
	st2, err := os.Stat(again)
	require.NoError(t, err)
	assert.Equal(t, st1.ModTime(), st2.ModTime())

	// The initramfs inside is a gzip'ed newc archive holding /init, /dev/console and the modules in load order.
	dir := t.TempDir()
	out, err := exec.CommandContext(ctx, "xorriso", "-osirrox", "on", "-indev", first,
		"-extract", "/initrd.gz", filepath.Join(dir, "initrd.gz"),
		"-extract", "/isolinux/isolinux.cfg", filepath.Join(dir, "isolinux.cfg")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	cfg, err := os.ReadFile(filepath.Join(dir, "isolinux.cfg"))
	require.NoError(t, err)
	assert.Contains(t, string(cfg), "console=ttyS0,115200")
	f, err := os.Open(filepath.Join(dir, "initrd.gz"))
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	archive, err := io.ReadAll(zr)
	require.NoError(t, err)
	files := map[string]cpioEntry{}
	for _, e := range parseCPIO(t, archive) {
		files[e.name] = e
	}
	require.Contains(t, files, "init")
	assert.Equal(t, uint32(0o100755), files["init"].mode)
	assert.True(t, bytes.HasPrefix(files["init"].data, []byte("\x7fELF")), "init is an ELF binary")
	require.Contains(t, files, "dev/console")
	order := strings.Fields(string(files["modules/order"].data))
	t.Logf("modules in load order: %v", order)
	require.NotEmpty(t, order)
	for _, m := range order {
		assert.Contains(t, files, strings.TrimPrefix(m, "/"))
	}
	pos := map[string]int{}
	for i, m := range order {
		pos[strings.TrimSuffix(filepath.Base(m), ".ko")] = i
	}
	require.Contains(t, pos, "virtio_blk")
	require.Contains(t, pos, "virtio_pci")
	assert.Less(t, pos["virtio_ring"], pos["virtio"], "dependencies load first")
	assert.Less(t, pos["virtio"], pos["virtio_blk"], "dependencies load first")
}

func TestConcurrentBuildsShareOneISO(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an ISO from scratch (downloads the kernel package)")
	}
	if err := checkTools(); err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	t.Setenv("OPENVAIR_TEST_CACHE", t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()

	var mu sync.Mutex
	builds := 0
	logf := func(format string, args ...any) {
		if strings.HasPrefix(format, "tinyguest: built") {
			mu.Lock()
			builds++
			mu.Unlock()
		}
		t.Logf(format, args...)
	}
	const n = 3
	paths := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { paths[i], errs[i] = cachedISO(ctx, logf) })
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		assert.Equal(t, paths[0], paths[i])
	}
	assert.Equal(t, 1, builds, "one build, the others waited on the lock and reused it")
	assert.True(t, strings.HasPrefix(paths[0], filepath.Join(os.Getenv("OPENVAIR_TEST_CACHE"), "tinyguest")+"/"))
	leftovers, err := filepath.Glob(filepath.Join(filepath.Dir(paths[0]), ".tinyguest-*"))
	require.NoError(t, err)
	assert.Empty(t, leftovers, "no temporary files left behind")
}

func TestMissingToolIsUnavailable(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	err := checkTools()
	var ue *unavailableError
	require.ErrorAs(t, err, &ue)
	assert.Contains(t, ue.Error(), "apt-get")
}
