package localfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/hostuser"
)

// systemMountPoints are the mount points a storage device must never hold (openvair's list).
var systemMountPoints = map[string]bool{
	"/": true, "/bin": true, "/boot": true, "/boot/efi": true, "/dev": true, "/etc": true, "/etc/X11": true,
	"/etc/apt": true, "/etc/samba": true, "/home": true, "/lib": true, "/media": true, "/opt": true,
	"/proc": true, "/root": true, "/sbin": true, "/srv": true, "/tmp": true, "/usr": true, "/usr/bin": true,
	"/usr/include": true, "/usr/lib": true, "/usr/sbin": true, "/usr/share": true, "/usr/src": true,
	"/usr/local": true, "/var": true, "/var/cache": true, "/var/lib": true, "/var/lock": true, "/var/log": true,
	"/var/mail": true, "/var/run": true, "/var/spool": true, "/var/tmp": true, "/var/www": true,
}

// mountFlags are the flags storages are mounted with: they hold disk images, never programs or devices.
const mountFlags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC

// blockDevice is a checked block device.
type blockDevice struct {
	path         string // the path opened (as given, or found by UUID)
	major, minor uint32
}

// sysDir is the device's directory in sysfs (/sys/devices/.../block/<name>[/<partition>]).
func (d *blockDevice) sysDir() (string, error) {
	return filepath.EvalSymlinks(filepath.Join("/sys/dev/block", devString(d.major, d.minor)))
}

// checkDevicePath accepts only clean absolute paths under /dev (symlinks must also resolve under /dev).
func checkDevicePath(p string) error {
	switch {
	case strings.ContainsRune(p, 0):
		return errors.New("device path contains a NUL byte")
	case !filepath.IsAbs(p):
		return fmt.Errorf("device path %s is not absolute", p)
	case filepath.Clean(p) != p:
		return fmt.Errorf("device path %s is not clean", p)
	case !strings.HasPrefix(p, "/dev/"):
		return fmt.Errorf("device path %s is not under /dev", p)
	}
	return nil
}

// openBlockDevice stats a device path. It returns an error wrapping os.ErrNotExist when the path is missing
// and errkind.Invalid when it is not a block device.
func openBlockDevice(p string) (*blockDevice, error) {
	if err := checkDevicePath(p); err != nil {
		return nil, errkind.Wrap(errkind.Invalid, err, "", "", "bad device")
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(real, "/dev/") {
		return nil, errkind.New(errkind.Invalid, "", "", "device %s resolves to %s, outside /dev", p, real)
	}
	var st unix.Stat_t
	if err := unix.Stat(real, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return nil, errkind.New(errkind.Invalid, "", "", "%s is not a block device", p)
	}
	return &blockDevice{path: p, major: unix.Major(st.Rdev), minor: unix.Minor(st.Rdev)}, nil
}

// mountDevice names the block device a mount comes from, as "major:minor". That is the mount's own device
// number for most filesystems; btrfs reports an anonymous one (0:NN), so its source device (a path under
// /dev) decides.
func mountDevice(m mountEntry) string {
	if m.major == 0 && strings.HasPrefix(m.source, "/dev/") {
		var st unix.Stat_t
		if unix.Stat(m.source, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK {
			return devString(unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
	}
	return devString(m.major, m.minor)
}

// checkNotInUse refuses a device that holds a mounted filesystem (or whose partitions do), active swap, a
// partition table, or that another block device (LVM, RAID, dm-crypt) is built on. It reports ours=true when
// the device itself is mounted only at mountPoint, that is when Prepare already ran.
func checkNotInUse(d *blockDevice, mountPoint string) (ours bool, err error) {
	related := map[string]bool{devString(d.major, d.minor): true}
	var partitions []string
	if dir, err := d.sysDir(); err == nil {
		if holders, _ := os.ReadDir(filepath.Join(dir, "holders")); len(holders) > 0 {
			return false, errkind.New(errkind.InUse, "", "", "device %s is in use by %s", d.path, holders[0].Name())
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if _, err := os.Stat(filepath.Join(dir, e.Name(), "partition")); err != nil {
				continue
			}
			partitions = append(partitions, e.Name())
			if b, err := os.ReadFile(filepath.Join(dir, e.Name(), "dev")); err == nil {
				related[strings.TrimSpace(string(b))] = true
			}
		}
	}
	mounts, err := readMounts()
	if err != nil {
		return false, errkind.Wrap(errkind.Unavailable, err, "", "", "cannot read the mount table")
	}
	self := devString(d.major, d.minor)
	for _, m := range mounts {
		dev := mountDevice(m)
		if !related[dev] {
			continue
		}
		if systemMountPoints[m.mountPoint] {
			return false, errkind.New(errkind.InUse, "", "", "device %s holds the system mount point %s", d.path, m.mountPoint)
		}
		if dev == self && m.mountPoint == mountPoint {
			ours = true
			continue
		}
		return false, errkind.New(errkind.InUse, "", "", "device %s is mounted at %s", d.path, m.mountPoint)
	}
	if len(partitions) > 0 {
		return false, errkind.New(errkind.InUse, "", "", "device %s has partitions (%s); use a partition or an empty disk", d.path, strings.Join(partitions, ", "))
	}
	if swaps, err := os.ReadFile("/proc/swaps"); err == nil {
		for _, line := range strings.Split(string(swaps), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			var st unix.Stat_t
			if unix.Stat(f[0], &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK &&
				unix.Major(st.Rdev) == d.major && unix.Minor(st.Rdev) == d.minor {
				return false, errkind.New(errkind.InUse, "", "", "device %s is active swap", d.path)
			}
		}
	}
	return ours, nil
}

// checkExclusive opens the device exclusively, which the kernel refuses (EBUSY) while it is mounted or
// held by device-mapper, RAID or another exclusive opener: a last check before formatting.
func checkExclusive(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return errkind.Wrap(errkind.InUse, err, "", "", "device %s is in use", path)
		}
		return errkind.Wrap(errkind.Unavailable, err, "", "", "cannot open device %s", path)
	}
	return unix.Close(fd)
}

// findByUUID looks for the block device carrying an ext4 or xfs filesystem with that UUID: first through
// /dev/disk/by-uuid, then by probing every block device sysfs lists.
func findByUUID(fsUUID string) (*blockDevice, error) {
	candidates := []string{filepath.Join("/dev/disk/by-uuid", fsUUID)}
	entries, err := os.ReadDir("/sys/class/block")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if size, err := os.ReadFile(filepath.Join("/sys/class/block", e.Name(), "size")); err != nil ||
			strings.TrimSpace(string(size)) == "0" {
			continue // unattached loop devices, empty drives
		}
		candidates = append(candidates, filepath.Join("/dev", e.Name()))
	}
	for _, c := range candidates {
		d, err := openBlockDevice(c)
		if err != nil {
			continue
		}
		if sig, err := probeDevice(d.path); err == nil && sig.mountable() && sig.uuid == fsUUID {
			return d, nil
		}
	}
	return nil, os.ErrNotExist
}

// toolTimeout bounds each run of blkid and wipefs, which only read a few blocks.
const toolTimeout = 30 * time.Second

// blkidSignature asks blkid (when installed) for any signature the built-in probe does not know. It returns
// "" when blkid finds nothing or is missing.
func blkidSignature(ctx context.Context, dev string) string {
	blkid, err := exec.LookPath("blkid")
	if err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, toolTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, blkid, "-p", "-o", "export", "--", dev).Output()
	if err != nil {
		return "" // exit status 2: nothing found
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "TYPE="); ok {
			return v
		}
		if v, ok := strings.CutPrefix(line, "PTTYPE="); ok {
			return v + " partition table"
		}
	}
	return ""
}

// fsTypes are the filesystems device mode makes and mounts.
var fsTypes = []string{"ext4", "xfs", "btrfs"}

// mkfs formats dev with fsType (one of fsTypes).
func mkfs(ctx context.Context, fsType, dev string) error {
	var name string
	var args []string
	switch fsType {
	case "ext4":
		name, args = "mkfs.ext4", []string{"-q", "-F", dev}
	case "xfs":
		name, args = "mkfs.xfs", []string{"-q", "-f", dev}
	case "btrfs":
		name, args = "mkfs.btrfs", []string{"-q", "-f", dev}
	default:
		return errkind.New(errkind.Invalid, "", "", "unsupported filesystem type %q", fsType)
	}
	bin, err := exec.LookPath(name)
	if err != nil {
		return errkind.Wrap(errkind.Unavailable, err, "", "", "%s is not installed", name)
	}
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return ctxErr(ctx.Err(), "storage", "")
		}
		return errkind.Wrap(errkind.Unavailable, err, "", "", "%s %s failed: %s", name, dev, strings.TrimSpace(string(out)))
	}
	return nil
}

// blankCheckSize is how much of each end of a device must read as zeros for Format to treat the device as
// blank: the start holds partition tables and the superblocks of filesystems, LVM, RAID and LUKS, the end
// the backup GPT and end-of-device RAID and ZFS labels.
const blankCheckSize = 1 << 20

// foreignData says what a device without a recognised filesystem holds ("" when it is blank): a signature
// wipefs finds (when installed), or else the first non-zero byte in its first or last blankCheckSize bytes.
func foreignData(ctx context.Context, dev string) (string, error) {
	sigs, err := wipefsSignatures(ctx, dev)
	if err != nil {
		return "", err
	}
	if len(sigs) > 0 {
		return "it carries " + strings.Join(sigs, ", "), nil
	}
	off, err := firstNonZero(dev)
	if err != nil {
		return "", errkind.Wrap(errkind.Unavailable, err, "", "", "cannot read device %s", dev)
	}
	if off >= 0 {
		return fmt.Sprintf("it holds data openvair does not recognise (a non-zero byte at offset %d)", off), nil
	}
	return "", nil
}

// firstNonZero returns the offset of the first non-zero byte in the first and the last blankCheckSize
// bytes of dev, or -1 when they are all zero.
func firstNonZero(dev string) (int64, error) {
	f, err := os.Open(dev)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, blankCheckSize)
	for _, start := range []int64{0, max(size-blankCheckSize, blankCheckSize)} {
		n := min(blankCheckSize, size-start)
		if n <= 0 {
			continue
		}
		if _, err := f.ReadAt(buf[:n], start); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		for i, c := range buf[:n] {
			if c != 0 {
				return start + int64(i), nil
			}
		}
	}
	return -1, nil
}

// wipefsSignatures lists the signatures wipefs finds on dev, as "TYPE at offset OFFSET"; none when wipefs
// is not installed. It writes nothing (--no-act).
func wipefsSignatures(ctx context.Context, dev string) ([]string, error) {
	bin, err := exec.LookPath("wipefs")
	if err != nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, toolTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--no-act", "--noheadings", "--output", "TYPE,OFFSET", "--", dev).Output()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctxErr(ctx.Err(), "storage", "")
		}
		return nil, errkind.Wrap(errkind.Unavailable, err, "", "", "wipefs %s failed: %s", dev, stderrOf(err))
	}
	return parseWipefs(string(out)), nil
}

// parseWipefs reads the TYPE,OFFSET lines of wipefs --noheadings.
func parseWipefs(out string) []string {
	var sigs []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch len(f) {
		case 0:
		case 1:
			sigs = append(sigs, f[0])
		default:
			sigs = append(sigs, f[0]+" at offset "+f[1])
		}
	}
	return sigs
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return strings.TrimSpace(string(ee.Stderr))
	}
	return err.Error()
}

// formatDevice makes a new fsType filesystem on dev. With wipe it first erases every signature wipefs knows
// (when installed) and zeroes the first and last blankCheckSize bytes, so that no old partition table,
// backup GPT or RAID label survives next to the new filesystem.
func formatDevice(ctx context.Context, dev, fsType string, wipe bool) error {
	if err := checkExclusive(dev); err != nil {
		return err
	}
	if wipe {
		if err := wipeDevice(ctx, dev); err != nil {
			return err
		}
	}
	return mkfs(ctx, fsType, dev)
}

// wipeDevice erases the signatures and the ends of dev.
func wipeDevice(ctx context.Context, dev string) error {
	if bin, err := exec.LookPath("wipefs"); err == nil {
		wctx, cancel := context.WithTimeout(ctx, toolTimeout)
		out, err := exec.CommandContext(wctx, bin, "--all", "--quiet", "--", dev).CombinedOutput()
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctxErr(ctx.Err(), "storage", "")
			}
			return errkind.Wrap(errkind.Unavailable, err, "", "", "wipefs --all %s failed: %s", dev, strings.TrimSpace(string(out)))
		}
	}
	f, err := os.OpenFile(dev, os.O_WRONLY|unix.O_EXCL, 0)
	if err != nil {
		return errkind.Wrap(errkind.Unavailable, err, "", "", "cannot open device %s to wipe it", dev)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return errkind.Wrap(errkind.Unavailable, err, "", "", "cannot size device %s", dev)
	}
	zero := make([]byte, blankCheckSize)
	for _, start := range []int64{0, max(size-blankCheckSize, 0)} {
		n := min(blankCheckSize, size-start)
		if n <= 0 {
			continue
		}
		if _, err := f.WriteAt(zero[:n], start); err != nil {
			return errkind.Wrap(errkind.Unavailable, err, "", "", "cannot wipe device %s", dev)
		}
	}
	if err := f.Sync(); err != nil {
		return errkind.Wrap(errkind.Unavailable, err, "", "", "cannot wipe device %s", dev)
	}
	return nil
}

// prepareDevice checks, formats when asked and mounts a device-mode storage. b.mu is held.
func (b *Backend) prepareDevice(ctx context.Context, s *storage) (driver.PoolState, error) {
	spec := s.spec
	fail := func(err error) (driver.PoolState, error) {
		var e *errkind.Error
		if errors.As(err, &e) && e.Entity == "" {
			e.Entity, e.ID = "storage", s.id
		}
		return driver.PoolState{}, err
	}
	if !spec.Format && !spec.ReuseFilesystem {
		return fail(errkind.New(errkind.Invalid, "", "", "device mode needs format (to create a filesystem) or reuse_filesystem (to mount an existing one)"))
	}
	if spec.Wipe && !spec.Format {
		return fail(fieldError("config.wipe", "applies only with format"))
	}
	if spec.FSType != "" && !slices.Contains(fsTypes, spec.FSType) {
		return fail(errkind.New(errkind.Invalid, "", "", "fs_type %q is not one of %v", spec.FSType, fsTypes))
	}
	dev, err := openBlockDevice(spec.Device)
	switch {
	case errors.Is(err, os.ErrNotExist) && spec.FSUUID == "":
		return fail(fieldError(fieldDevice, "device %s does not exist", spec.Device))
	case errors.Is(err, errkind.Invalid):
		var e *errkind.Error
		if errors.As(err, &e) {
			return fail(fieldError(fieldDevice, "%s", strings.TrimPrefix(e.Error(), "bad device: ")))
		}
		return fail(err)
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return fail(err)
	}
	var sig signature
	if dev != nil {
		if sig, err = probeDevice(dev.path); err != nil {
			if _, uerr := checkNotInUse(dev, s.dir); uerr != nil {
				return fail(uerr) // the better explanation
			}
			if spec.FSUUID == "" {
				return fail(errkind.Wrap(errkind.Unavailable, err, "", "", "cannot read device %s", dev.path))
			}
			dev = nil // unreadable (a detached loop device, a removed disk): look for the filesystem
		}
	}
	if spec.FSUUID != "" && (dev == nil || sig.uuid != spec.FSUUID) {
		// The device was renamed (or replaced): find the filesystem this storage was created with.
		found, ferr := findByUUID(spec.FSUUID)
		if ferr != nil {
			return fail(errkind.Wrap(errkind.Unavailable, ferr, "", "", "no device carries filesystem %s (was %s)", spec.FSUUID, spec.Device))
		}
		dev = found
		if sig, err = probeDevice(dev.path); err != nil {
			return fail(errkind.Wrap(errkind.Unavailable, err, "", "", "cannot read device %s", dev.path))
		}
	}
	if err := checkCtx(ctx, s.id); err != nil {
		return driver.PoolState{}, err
	}
	ours, err := checkNotInUse(dev, s.dir)
	if err != nil {
		return fail(err)
	}
	if ours {
		s.spec.FSUUID = sig.uuid
		return b.status(ctx, s)
	}
	if e, err := mountAt(s.dir); err != nil || e != nil {
		return fail(errkind.New(errkind.InUse, "", "", "mount point %s is already in use", s.dir))
	}

	fsType := sig.kind
	if sig.kind == "" {
		if other := blkidSignature(ctx, dev.path); other != "" {
			sig.kind = other
		}
	}
	format := func() error {
		fsType = spec.FSType
		if fsType == "" {
			fsType = "ext4"
		}
		if err := formatDevice(ctx, dev.path, fsType, spec.Wipe); err != nil {
			return err
		}
		if sig, err = probeDevice(dev.path); err != nil || sig.kind != fsType {
			return errkind.New(errkind.Unavailable, "", "", "no %s filesystem found on %s after formatting (%v)", fsType, dev.path, err)
		}
		return nil
	}
	switch {
	case sig.kind == "":
		if !spec.Format {
			return fail(errkind.New(errkind.Invalid, "", "", "device %s has no filesystem; set format to create one", dev.path))
		}
		if !spec.Wipe {
			found, err := foreignData(ctx, dev.path)
			if err != nil {
				return fail(err)
			}
			if found != "" {
				return fail(errkind.New(errkind.InUse, "", "", "device %s is not blank: %s; refusing to format it (set wipe with format to destroy its content)", dev.path, found))
			}
		}
		if err := format(); err != nil {
			return fail(err)
		}
	case spec.FSUUID != "" && sig.uuid == spec.FSUUID && sig.mountable():
		// this storage's own filesystem: mount it again (never wiped)
	case spec.Wipe:
		// Format with Wipe: the operator destroys what the device holds.
		if err := format(); err != nil {
			return fail(err)
		}
	case !sig.mountable():
		return fail(errkind.New(errkind.InUse, "", "", "device %s holds %s data; refusing to touch it (set wipe with format to destroy it)", dev.path, sig.kind))
	case !spec.ReuseFilesystem:
		return fail(errkind.New(errkind.InUse, "", "", "device %s already holds an %s filesystem (UUID %s); set reuse_filesystem to use it, or wipe with format to replace it", dev.path, sig.kind, sig.uuid))
	case spec.FSType != "" && spec.FSType != sig.kind:
		return fail(errkind.New(errkind.Invalid, "", "", "device %s holds %s, not the requested %s", dev.path, sig.kind, spec.FSType))
	}
	if err := checkCtx(ctx, s.id); err != nil {
		return driver.PoolState{}, err
	}
	if err := os.MkdirAll(filepath.Dir(s.dir), 0o700); err != nil {
		return fail(errkind.Wrap(errkind.Unavailable, err, "", "", "cannot create %s", filepath.Dir(s.dir)))
	}
	if err := hostuser.MkdirTraversable(filepath.Dir(s.dir), b.qemuGID); err != nil {
		return fail(errkind.Wrap(errkind.Unavailable, err, "", "", "cannot make %s traversable by QEMU", filepath.Dir(s.dir)))
	}
	if err := hostuser.MkdirTraversable(s.dir, b.qemuGID); err != nil {
		return fail(errkind.Wrap(errkind.Unavailable, err, "", "", "cannot create mount point %s", s.dir))
	}
	if err := unix.Mount(dev.path, s.dir, fsType, mountFlags, ""); err != nil {
		_ = os.Remove(s.dir)
		return fail(errkind.Wrap(errkind.Unavailable, err, "", "", "cannot mount %s (%s) at %s", dev.path, fsType, s.dir))
	}
	if b.qemuGID >= 0 {
		// The mounted filesystem's root replaces the mount point: make it reachable by QEMU in its turn.
		if err := hostuser.AllowTraverse(s.dir, b.qemuGID); err != nil {
			return fail(errkind.Wrap(errkind.Unavailable, err, "", "", "cannot make %s traversable by QEMU", s.dir))
		}
	}
	s.spec.FSUUID = sig.uuid
	state, err := b.status(ctx, s)
	if err != nil {
		_ = unix.Unmount(s.dir, 0)
		_ = os.Remove(s.dir)
		return driver.PoolState{}, err
	}
	return state, nil
}

// teardownDevice unmounts a device-mode storage and removes its mount point. b.mu is held.
func (b *Backend) teardownDevice(ctx context.Context, s *storage) error {
	for range 8 { // stacked mounts, if someone mounted over ours
		e, err := mountAt(s.dir)
		if err != nil {
			return errkind.Wrap(errkind.Unavailable, err, "storage", s.id, "cannot read the mount table")
		}
		if e == nil {
			break
		}
		if err := checkCtx(ctx, s.id); err != nil {
			return err
		}
		if err := unix.Unmount(s.dir, 0); err != nil {
			if errors.Is(err, unix.EBUSY) {
				return errkind.Wrap(errkind.InUse, err, "storage", s.id, "cannot unmount %s: in use", s.dir)
			}
			return errkind.Wrap(errkind.Unavailable, err, "storage", s.id, "cannot unmount %s", s.dir)
		}
	}
	if err := os.Remove(s.dir); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) {
		return errkind.Wrap(errkind.Unavailable, err, "storage", s.id, "cannot remove mount point %s", s.dir)
	}
	return nil
}

// mountedUUID reads the filesystem UUID of the device mounted at dir ("" when unknown).
func mountedUUID(dir string) string {
	e, err := mountAt(dir)
	if err != nil || e == nil {
		return ""
	}
	sig, err := probeDevice(e.source)
	if err != nil {
		return ""
	}
	return sig.uuid
}
