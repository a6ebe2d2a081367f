package localfs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/openvair/openvair/internal/errkind"
)

// systemTrees are the directories that hold the operating system, kernel interfaces and root's home: a
// directory-mode storage may be neither one of them nor anything below them.
var systemTrees = []string{"/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc",
	"/root", "/sbin", "/sys", "/usr"}

// systemDirs may not be storages themselves, but their subdirectories may: /var/lib/openvair, a directory
// under /run (a tmpfs) or /tmp.
var systemDirs = []string{"/", "/run", "/tmp", "/var"}

// fieldError is the error of a location a new storage cannot have, naming the request field at fault.
func fieldError(field, format string, args ...any) error {
	return errkind.Field("storage", field, format, args...)
}

// inside reports whether the clean absolute path p is dir or lies below it.
func inside(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// systemDir names the system directory p is, or lies inside, when a storage may not be there ("" when it
// may).
func systemDir(p string) string {
	for _, d := range systemTrees {
		if inside(p, d) {
			return d
		}
	}
	for _, d := range systemDirs {
		if p == d {
			return d
		}
	}
	return ""
}

// checkSystem refuses a storage directory that is a system directory or inside one (see systemTrees and
// systemDirs), as given and with its symbolic links resolved (real). The backend's data directory, and
// everything inside it, is allowed wherever it is.
func (b *Backend) checkSystem(p, real string) error {
	if b.dataDir != "" {
		if dd, err := resolveExisting(b.dataDir); err == nil && inside(real, dd) {
			return nil
		}
	}
	for _, c := range []string{p, real} {
		if d := systemDir(c); d != "" {
			if c == p {
				return fieldError(fieldPath, "%s is a system directory (%s); choose a directory such as /var/lib/openvair/storage or /srv/storage", p, d)
			}
			return fieldError(fieldPath, "%s resolves to %s, a system directory (%s)", p, real, d)
		}
	}
	return nil
}

// checkNewDir checks the directory of a storage being set up and returns it with its symbolic links
// resolved. The directory must be a clean absolute path, inside the allowed directories if any, not a
// system directory, and either an existing directory or a new name in an existing directory. Errors in the
// path itself are *errkind.ValidationError naming config.path.
func (b *Backend) checkNewDir(p string) (string, error) {
	if err := checkDirPath(p); err != nil {
		return "", fieldError(fieldPath, "%v", err)
	}
	real, err := resolveExisting(p)
	if err != nil {
		return "", errkind.Wrap(errkind.Unavailable, err, "storage", "", "cannot resolve %s", p)
	}
	if err := b.checkAllowed(p); err != nil {
		return "", fieldError(fieldPath, "%v", err)
	}
	if err := b.checkSystem(p, real); err != nil {
		return "", err
	}
	fi, err := os.Lstat(real)
	switch {
	case errors.Is(err, os.ErrNotExist):
		parent := filepath.Dir(real)
		if pfi, perr := os.Stat(parent); perr != nil || !pfi.IsDir() {
			return "", fieldError(fieldPath, "%s does not exist, nor does its parent directory %s", p, parent)
		}
	case err != nil:
		return "", errkind.Wrap(errkind.Unavailable, err, "storage", "", "cannot stat %s", p)
	case fi.Mode()&os.ModeSymlink != 0:
		return "", fieldError(fieldPath, "%s is a symbolic link to a missing target", p)
	case !fi.IsDir():
		return "", fieldError(fieldPath, "%s is not a directory", p)
	}
	return real, nil
}

// checkNewDevice checks the device of a storage being set up and returns it with its symbolic links
// resolved; errors are *errkind.ValidationError naming config.device.
func checkNewDevice(p string) (string, error) {
	if err := checkDevicePath(p); err != nil {
		return "", fieldError(fieldDevice, "%v", err)
	}
	real, err := filepath.EvalSymlinks(p)
	if errors.Is(err, os.ErrNotExist) {
		return "", fieldError(fieldDevice, "device %s does not exist", p)
	}
	if err != nil {
		return "", errkind.Wrap(errkind.Unavailable, err, "storage", "", "cannot resolve device %s", p)
	}
	if !strings.HasPrefix(real, "/dev/") {
		return "", fieldError(fieldDevice, "device %s resolves to %s, outside /dev", p, real)
	}
	var st unix.Stat_t
	if err := unix.Stat(real, &st); err != nil {
		return "", errkind.Wrap(errkind.Unavailable, err, "storage", "", "cannot stat device %s", p)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return "", fieldError(fieldDevice, "%s is not a block device", p)
	}
	return real, nil
}

// withID names the storage in an *errkind.Error that names none.
func withID(err error, id string) error {
	var e *errkind.Error
	if errors.As(err, &e) && e.ID == "" {
		e.Entity, e.ID = "storage", id
	}
	return err
}
