package tinyguest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/openvair/openvair/internal/testenv/tinyguest/guestrec"
)

// The layout of the disk image DiskImage builds (a raw image of DiskSize bytes):
//
//	[0, 440)            SYSLINUX's MBR boot code (/usr/lib/syslinux/mbr/mbr.bin)
//	[440, 446)          disk signature "TGST", then zeros
//	[446, 510)          MBR partition table: one entry, active, type 0x0e (FAT16 LBA)
//	[510, 512)          0x55 0xAA
//	[512 KiB, +4 KiB)   DiskRecordOffset, RecordSize: the guest's record (zeros in the image)
//	[1 MiB, 32 MiB)     PartitionOffset to DiskSize: partition 1, FAT16 labelled TINYGUEST with SYSLINUX in
//	                    /syslinux (ldlinux.sys, ldlinux.c32, syslinux.cfg), /vmlinuz and /initrd.gz
//
// The kernel and the initramfs are those of the ISO; only the boot loader differs, and the kernel command line,
// which adds tinyguest.record=<DiskRecordOffset>.
const (
	// DiskSize is the size of the disk image, and so the virtual size of a volume made from it.
	DiskSize = 32 << 20
	// PartitionOffset is where the FAT partition starts (sector 2048, the usual 1 MiB alignment).
	PartitionOffset = 1 << 20
	// DiskRecordOffset is the byte offset of /dev/vda where a guest booted from DiskImage writes its record:
	// in the unused gap between the MBR and the partition, so the boot sector and the file system stay intact
	// and the offset does not depend on the disk's size (a volume grown from the image keeps it).
	DiskRecordOffset = 512 << 10
	// ISORecordOffset is the byte offset of /dev/vda where a guest booted from the ISO writes its record.
	ISORecordOffset = 0
	// RecordSize is the size of the record area the guest reads and writes.
	RecordSize = guestrec.Size
)

// Files of the syslinux-common package.
const mbrBin = "/usr/lib/syslinux/mbr/mbr.bin"

// diskLayoutVersion changes whenever the way the disk image is put together changes in a way the cache key
// (the ISO's name and a hash of syslinux.cfg) does not see.
const diskLayoutVersion = "disk-1"

// diskSignature is the MBR disk signature (bytes 440-443): fixed, so the image depends on its contents only.
var diskSignature = []byte("TGST")

// syslinuxCfg is the SYSLINUX configuration of the disk image: the ISO's, with the record's offset added to
// the kernel command line.
var syslinuxCfg = "DEFAULT tinyguest\nPROMPT 0\nTIMEOUT 0\nLABEL tinyguest\n  KERNEL /vmlinuz\n" +
	"  APPEND " + kernelCmdline + " initrd=/initrd.gz tinyguest.record=" + strconv.Itoa(DiskRecordOffset) + "\n"

// diskTool is a program the disk image is built with, and the Debian package that has it.
type diskTool struct{ name, pkg string }

var diskTools = []diskTool{
	{"mkfs.vfat", "dosfstools"}, {"mmd", "mtools"}, {"mcopy", "mtools"}, {"syslinux", "syslinux"},
}

// lookTool finds a program on PATH or in the sbin directories (mkfs.vfat lives in /usr/sbin, which a
// non-root PATH may lack).
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// checkDiskTools reports the first missing tool or file the disk image needs (beyond the ISO's) as an
// unavailableError with the command that installs it.
func checkDiskTools() error {
	for _, tl := range diskTools {
		if _, err := lookTool(tl.name); err != nil {
			return unavailable("%s not installed: apt-get install -y --no-install-recommends %s", tl.name, tl.pkg)
		}
	}
	if !isFile(mbrBin) {
		return unavailable("%s missing: apt-get install -y --no-install-recommends syslinux-common", mbrBin)
	}
	return nil
}

var diskArtifact artifact

// DiskImage returns the path of a bootable raw disk image of the tiny guest (DiskSize bytes, see the layout
// above): an MBR with SYSLINUX's boot code, one active FAT16 partition with SYSLINUX, and the kernel and
// initramfs of ISO. A VM whose first disk is a copy or a clone of it boots from its hard disk (boot order hd)
// and writes its record at DiskRecordOffset of that disk. It is built without mounting anything (mkfs.vfat on
// a file, mtools, syslinux --install on the file) from the ISO, once per machine, and cached next to it like
// ISO; it is unavailable (skip, or fail in CI) when ISO is or when dosfstools, mtools or syslinux are not
// installed. The caller must not modify or delete the file.
func DiskImage(t testing.TB) string {
	t.Helper()
	return diskArtifact.get(t, "tiny guest disk image", cachedDisk)
}

// cachedDisk returns the cached disk image made from the cached ISO, building either when missing.
func cachedDisk(ctx context.Context, logf func(string, ...any)) (string, error) {
	if err := checkTools(); err != nil {
		return "", err
	}
	if err := checkDiskTools(); err != nil {
		return "", err
	}
	iso, err := cachedISO(ctx, logf)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00%d\x00%d\x00", diskLayoutVersion, syslinuxCfg, DiskSize, PartitionOffset, DiskRecordOffset)
	name := fmt.Sprintf("%s-%s.img", strings.TrimSuffix(filepath.Base(iso), ".iso"), hex.EncodeToString(h.Sum(nil))[:8])
	return cachedFile(ctx, name, filepath.Base(iso), logf, func(ctx context.Context, out string) error {
		return buildDisk(ctx, iso, out)
	})
}

// buildDisk builds the disk image from the ISO's kernel and initramfs into out.
func buildDisk(ctx context.Context, iso, out string) error {
	work, err := os.MkdirTemp("", "tinyguest-disk-")
	if err != nil {
		return fmt.Errorf("tinyguest: %w", err)
	}
	defer os.RemoveAll(work)

	// The ISO's kernel and initramfs.
	vmlinuz, initrd := filepath.Join(work, "vmlinuz"), filepath.Join(work, "initrd.gz")
	if _, err := run(ctx, shortCmdTimeout, work, nil, "xorriso", "-osirrox", "on", "-indev", iso,
		"-extract", "/vmlinuz", vmlinuz, "-extract", "/initrd.gz", initrd); err != nil {
		return fmt.Errorf("tinyguest: extract the kernel from the ISO: %w", err)
	}
	cfg := filepath.Join(work, "syslinux.cfg")
	if err := os.WriteFile(cfg, []byte(syslinuxCfg), 0o644); err != nil {
		return fmt.Errorf("tinyguest: %w", err)
	}

	// The FAT file system, in a file of the partition's size.
	fat := filepath.Join(work, "fat.img")
	if err := os.WriteFile(fat, nil, 0o644); err != nil {
		return fmt.Errorf("tinyguest: %w", err)
	}
	if err := os.Truncate(fat, DiskSize-PartitionOffset); err != nil {
		return fmt.Errorf("tinyguest: %w", err)
	}
	tool := func(name string) string { p, _ := lookTool(name); return p }
	// MTOOLS_SKIP_CHECK: the image's geometry is not a floppy's; MTOOLSRC: no user configuration.
	env := append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "MTOOLSRC=/dev/null")
	steps := [][]string{
		// FAT16, hidden sectors = the partition's first sector (what a partition's boot sector holds),
		// a fixed volume id.
		{tool("mkfs.vfat"), "-F", "16", "-n", "TINYGUEST", "-h", strconv.Itoa(PartitionOffset / 512), "-i", "7e57d15c", fat},
		{tool("mmd"), "-i", fat, "::/syslinux"},
		{tool("mcopy"), "-i", fat, vmlinuz, initrd, "::/"},
		{tool("mcopy"), "-i", fat, cfg, "::/syslinux/syslinux.cfg"},
		// The mtools installer writes ldlinux.sys and ldlinux.c32 into /syslinux and the boot sector.
		{tool("syslinux"), "--install", "--directory", "/syslinux", fat},
	}
	for _, st := range steps {
		if _, err := run(ctx, shortCmdTimeout, work, env, st[0], st[1:]...); err != nil {
			return fmt.Errorf("tinyguest: build the disk image: %w", err)
		}
	}

	mbrCode, err := os.ReadFile(mbrBin)
	if err != nil {
		return fmt.Errorf("tinyguest: %w", err)
	}
	f, err := os.OpenFile(out, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("tinyguest: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(DiskSize); err != nil {
		return fmt.Errorf("tinyguest: %w", err)
	}
	mbr, err := makeMBR(mbrCode, PartitionOffset/512, (DiskSize-PartitionOffset)/512)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(mbr, 0); err != nil {
		return fmt.Errorf("tinyguest: %w", err)
	}
	src, err := os.Open(fat)
	if err != nil {
		return fmt.Errorf("tinyguest: %w", err)
	}
	defer src.Close()
	if err := copySparse(f, PartitionOffset, src); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("tinyguest: %w", err)
	}
	return f.Close()
}

// makeMBR returns sector 0 of the disk: the boot code, the disk signature, one active FAT16 (LBA) partition
// of size sectors from sector start, and the boot signature. CHS fields use the 255-head, 63-sector geometry
// (as sfdisk writes them); SYSLINUX's MBR and SeaBIOS use the LBA fields.
func makeMBR(code []byte, start, size uint32) ([]byte, error) {
	if len(code) == 0 || len(code) > 440 {
		return nil, fmt.Errorf("tinyguest: %s is %d bytes, want 1 to 440", mbrBin, len(code))
	}
	mbr := make([]byte, 512)
	copy(mbr, code)
	copy(mbr[440:444], diskSignature)
	e := mbr[446:462]
	e[0] = 0x80 // active
	copy(e[1:4], chs(start))
	e[4] = 0x0e // FAT16, LBA
	copy(e[5:8], chs(start+size-1))
	binary.LittleEndian.PutUint32(e[8:12], start)
	binary.LittleEndian.PutUint32(e[12:16], size)
	mbr[510], mbr[511] = 0x55, 0xAA
	return mbr, nil
}

// chs encodes an LBA sector as an MBR CHS triple (head, sector | cylinder high bits, cylinder low bits) for
// 255 heads and 63 sectors per track, or the 1023/254/63 maximum beyond the CHS range.
func chs(lba uint32) []byte {
	const heads, sectors = 255, 63
	c := lba / (heads * sectors)
	if c > 1023 {
		return []byte{0xfe, 0xff, 0xff}
	}
	h := (lba / sectors) % heads
	s := lba%sectors + 1
	return []byte{byte(h), byte(s) | byte(c>>8)<<6, byte(c)}
}

// copySparse copies r into w from offset off, skipping blocks of zeros (w is a new sparse file).
func copySparse(w io.WriterAt, off int64, r io.Reader) error {
	buf := make([]byte, 64<<10)
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if !isZero(buf[:n]) {
				if _, werr := w.WriteAt(buf[:n], off); werr != nil {
					return fmt.Errorf("tinyguest: %w", werr)
				}
			}
			off += int64(n)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("tinyguest: %w", err)
		}
	}
}

func isZero(b []byte) bool {
	return len(bytes.Trim(b, "\x00")) == 0
}
