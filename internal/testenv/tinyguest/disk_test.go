package tinyguest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/cloudinit"
	"github.com/openvair/openvair/internal/testenv"
)

// powerOff presses the ACPI power button once the guest listens and waits for QEMU to exit.
func (g *qemuGuest) powerOff(t *testing.T) {
	t.Helper()
	g.waitFor(t, "(Power Button)", 30*time.Second)
	g.hmp(t, "system_powerdown")
	select {
	case <-g.done:
	case <-time.After(90 * time.Second):
		t.Fatalf("QEMU still running 90 s after system_powerdown\nserial:\n%s", g.serial())
	}
	require.NoError(t, g.err, "QEMU exit\nqemu:\n%s", g.stderr.String())
	assert.Contains(t, g.serial(), LinePowerOff, "the guest powered off on the power button")
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

// seedISO writes a NoCloud seed as openvair builds it (internal/cloudinit) and returns its path.
func seedISO(t *testing.T, cfg cloudinit.Config, instanceID string) string {
	t.Helper()
	files, err := cfg.Seed(instanceID)
	require.NoError(t, err)
	var b bytes.Buffer
	require.NoError(t, cloudinit.WriteISO(&b, files))
	p := filepath.Join(t.TempDir(), "seed.iso")
	require.NoError(t, os.WriteFile(p, b.Bytes(), 0o644))
	return p
}

// sataCDROM returns QEMU arguments that attach iso as a cdrom on an AHCI controller, as libvirt attaches
// a VM's cdroms (bus sata).
func sataCDROM(iso string) []string {
	return []string{"-device", "ahci,id=ahci0", "-drive", "file=" + iso + ",if=none,id=seed,media=cdrom,readonly=on,format=raw",
		"-device", "ide-cd,drive=seed,bus=ahci0.0"}
}

func qemuImgCreate(t *testing.T, qemuImg string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, qemuImg, append([]string{"create", "-q"}, args...)...).CombinedOutput()
	require.NoError(t, err, "%s", out)
}

func TestDiskImageLayout(t *testing.T) {
	testenv.LookPath(t, "xorriso")
	start := time.Now()
	disk := DiskImage(t)
	t.Logf("disk image %s ready in %v", disk, time.Since(start).Round(time.Millisecond))
	b, err := os.ReadFile(disk)
	require.NoError(t, err)
	require.Len(t, b, DiskSize)

	code, err := os.ReadFile(mbrBin)
	require.NoError(t, err)
	assert.Equal(t, code, b[:len(code)], "SYSLINUX's MBR code")
	assert.Equal(t, []byte{0x55, 0xAA}, b[510:512])
	e := b[446:462]
	assert.Equal(t, byte(0x80), e[0], "active")
	assert.Equal(t, byte(0x0e), e[4], "FAT16 LBA")
	assert.Equal(t, uint32(PartitionOffset/512), binary.LittleEndian.Uint32(e[8:12]))
	assert.Equal(t, uint32((DiskSize-PartitionOffset)/512), binary.LittleEndian.Uint32(e[12:16]))
	assert.Equal(t, make([]byte, 48), b[462:510], "one partition only")
	assert.Equal(t, make([]byte, PartitionOffset-512), b[512:PartitionOffset], "the gap (and the record area) is zeros")
	_, ok, err := ReadRecord(disk, DiskRecordOffset)
	require.NoError(t, err)
	assert.False(t, ok, "the image has no record")
	fat := b[PartitionOffset:]
	assert.Equal(t, "FAT16   ", string(fat[54:62]))
	assert.Equal(t, uint32(PartitionOffset/512), binary.LittleEndian.Uint32(fat[28:32]), "hidden sectors")
	assert.Contains(t, string(fat[:512]), "SYSLINUX", "SYSLINUX's boot sector")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// An independent reader (sfdisk, when installed) sees the same partition table.
	if sfdisk, err := lookTool("sfdisk"); err == nil {
		out, err := exec.CommandContext(ctx, sfdisk, "--dump", disk).CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Regexp(t, `start=\s*2048, size=\s*63488, type=e, bootable`, string(out))
	}
	// mtools lists the files SYSLINUX boots.
	mdir, err := lookTool("mdir")
	require.NoError(t, err)
	cmd := exec.CommandContext(ctx, mdir, "-a", "-b", "-i", disk+"@@"+fmt.Sprint(PartitionOffset), "::/syslinux")
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "MTOOLSRC=/dev/null")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, f := range []string{"ldlinux.sys", "ldlinux.c32", "syslinux.cfg"} {
		assert.Contains(t, string(out), "::/syslinux/"+f)
	}

	// A second lookup reuses the cached file.
	again, err := cachedDisk(ctx, func(format string, _ ...any) {
		assert.NotContains(t, format, "built", "the cached image was reused")
	})
	require.NoError(t, err)
	assert.Equal(t, disk, again)
}

func TestMakeMBR(t *testing.T) {
	_, err := makeMBR(nil, 2048, 100)
	require.Error(t, err)
	_, err = makeMBR(make([]byte, 441), 2048, 100)
	require.Error(t, err)
	mbr, err := makeMBR([]byte{0xfa, 0xeb}, 2048, 63488)
	require.NoError(t, err)
	// What sfdisk writes for the same partition (checked with sfdisk 2.38 on an image file).
	assert.Equal(t, []byte{0x80, 0x20, 0x21, 0x00, 0x0e, 0x14, 0x10, 0x04, 0x00, 0x08, 0, 0, 0x00, 0xf8, 0, 0}, mbr[446:462])
	assert.Equal(t, []byte{0xfe, 0xff, 0xff}, chs(1024*255*63))
}

// The disk image boots from the hard disk (SeaBIOS, SYSLINUX), reads a NoCloud seed from a SATA cdrom,
// records what it read at DiskRecordOffset of a qcow2 overlay whose backing file is the image (which stays
// as it was), and counts a second boot without a seed.
func TestDiskImageBootsAndReadsTheSeed(t *testing.T) {
	qemu := testenv.LookPath(t, "qemu-system-x86_64")
	qemuImg := testenv.LookPath(t, "qemu-img")
	disk := DiskImage(t)
	before := fileSHA256(t, disk)

	dir := t.TempDir()
	base := filepath.Join(dir, "base.img")
	require.NoError(t, os.Symlink(disk, base))
	overlay := filepath.Join(dir, "overlay.qcow2")
	qemuImgCreate(t, qemuImg, "-f", "qcow2", "-b", "base.img", "-F", "raw", overlay)

	id := uuid.NewString()
	marker := "disk-boot-" + id[:8]
	seed := seedISO(t, cloudinit.Config{Hostname: "guest-7", UserData: "#cloud-config\n" + UserDataMarkerLine(marker)}, id)
	drive := []string{"-boot", "order=c", "-drive", "file=" + overlay + ",if=virtio,format=qcow2"}

	begin := time.Now()
	g := startQEMU(t, qemu, append(drive, sataCDROM(seed)...)...)
	g.waitFor(t, LineMarker, 3*time.Minute)
	t.Logf("boot with a seed: %q after %v under TCG", LineMarker, time.Since(begin).Round(time.Millisecond))
	serial := g.serial()
	assert.Contains(t, serial, "SYSLINUX", "booted by SYSLINUX from the disk")
	assert.Regexp(t, `(?m)^`+LineCIData+`guest-7\r?$`, serial)
	assert.Less(t, strings.Index(serial, LineCIData), strings.Index(serial, LineMarker))
	g.powerOff(t)

	rec, ok, err := ReadRecord(overlay, DiskRecordOffset)
	require.NoError(t, err)
	require.True(t, ok, "a record at DiskRecordOffset")
	assert.Equal(t, Record{Boots: 1, Seed: true, InstanceID: id, Hostname: "guest-7", UserMarker: marker}, rec)
	_, ok, err = ReadRecord(overlay, ISORecordOffset)
	require.NoError(t, err)
	assert.False(t, ok, "nothing written over the MBR")
	assert.Equal(t, before, fileSHA256(t, disk), "the backing image is unchanged")

	// Boot again without the seed: the count goes on, the seed's values are gone.
	begin = time.Now()
	g = startQEMU(t, qemu, drive...)
	g.waitFor(t, LineMarker, 3*time.Minute)
	t.Logf("boot without a seed: %q after %v", LineMarker, time.Since(begin).Round(time.Millisecond))
	assert.NotContains(t, g.serial(), LineCIData)
	g.powerOff(t)
	rec, ok, err = ReadRecord(overlay, DiskRecordOffset)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, Record{Boots: 2}, rec)
}

// A guest booted from the ISO reads a seed too, and keeps its record at offset 0 (the boot marker the older
// tests read).
func TestISOBootReadsTheSeed(t *testing.T) {
	qemu := testenv.LookPath(t, "qemu-system-x86_64")
	qemuImg := testenv.LookPath(t, "qemu-img")
	iso := ISO(t)
	disk := filepath.Join(t.TempDir(), "disk.qcow2")
	qemuImgCreate(t, qemuImg, "-f", "qcow2", disk, "64M")
	id := uuid.NewString()
	seed := seedISO(t, cloudinit.Config{Hostname: "iso-guest", UserData: "#!/bin/sh\n# tinyguest-marker: from-a-script\n"}, id)

	g := startQEMU(t, qemu, append([]string{"-boot", "order=d", "-cdrom", iso, "-drive", "file=" + disk + ",if=virtio,format=qcow2"},
		sataCDROM(seed)...)...)
	g.waitFor(t, LineMarker, 3*time.Minute)
	assert.Regexp(t, `(?m)^`+LineCIData+`iso-guest\r?$`, g.serial())
	g.powerOff(t)
	rec, ok, err := ReadRecord(disk, ISORecordOffset)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, Record{Boots: 1, Seed: true, InstanceID: id, Hostname: "iso-guest", UserMarker: "from-a-script"}, rec)
	boots, ok := readMarker(t, disk)
	assert.True(t, ok)
	assert.Equal(t, 1, boots, "ReadQCOW2Marker reads the same record")
}

func TestReadRecordRawAndChains(t *testing.T) {
	qemuImg := testenv.LookPath(t, "qemu-img")
	dir := t.TempDir()
	raw := filepath.Join(dir, "raw.img")
	want := Record{Boots: 7, Seed: true, InstanceID: "i-1", Hostname: "h", UserMarker: "m"}
	img := make([]byte, 2<<20)
	copy(img[DiskRecordOffset:], want.Encode())
	require.NoError(t, os.WriteFile(raw, img, 0o644))

	got, ok, err := ReadRecord(raw, DiskRecordOffset)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, want, got)
	_, ok, err = ReadRecord(raw, 0)
	require.NoError(t, err)
	assert.False(t, ok)
	_, _, err = ReadRecord(raw, 4<<20)
	require.Error(t, err, "past the end")

	// raw <- sub/mid.qcow2 <- top.qcow2: each relative name resolves from the directory of the image naming it.
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	qemuImgCreate(t, qemuImg, "-f", "qcow2", "-b", "../raw.img", "-F", "raw", filepath.Join(dir, "sub", "mid.qcow2"))
	qemuImgCreate(t, qemuImg, "-f", "qcow2", "-b", "sub/mid.qcow2", "-F", "qcow2", filepath.Join(dir, "top.qcow2"))
	got, ok, err = ReadRecord(filepath.Join(dir, "top.qcow2"), DiskRecordOffset)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, want, got)

	_, _, err = ReadRecord(filepath.Join(dir, "missing"), 0)
	require.Error(t, err)
}

func TestMissingDiskToolIsUnavailable(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // mtools and syslinux live in /usr/bin, found through PATH only
	err := checkDiskTools()
	var ue *unavailableError
	require.ErrorAs(t, err, &ue)
	assert.Contains(t, ue.Error(), "apt-get install -y --no-install-recommends")
}
