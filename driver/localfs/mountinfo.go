package localfs

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	major, minor uint32
	mountPoint   string
	fsType       string
	source       string
}

// mountinfoPath is read by readMounts; a variable so unit tests can feed a file.
var mountinfoPath = "/proc/self/mountinfo"

// readMounts parses the mount table of this process's mount namespace.
func readMounts() ([]mountEntry, error) {
	f, err := os.Open(mountinfoPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMountinfo(bufio.NewScanner(f))
}

func parseMountinfo(sc *bufio.Scanner) ([]mountEntry, error) {
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	var out []mountEntry
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		if len(fields) < 7 {
			continue
		}
		sep := -1
		for i := 6; i < len(fields); i++ {
			if fields[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+2 >= len(fields) {
			continue
		}
		maj, min, ok := parseDevNumber(fields[2])
		if !ok {
			continue
		}
		out = append(out, mountEntry{
			major: maj, minor: min,
			mountPoint: unescapeMount(fields[4]),
			fsType:     fields[sep+1],
			source:     unescapeMount(fields[sep+2]),
		})
	}
	return out, sc.Err()
}

// parseDevNumber parses "major:minor".
func parseDevNumber(s string) (uint32, uint32, bool) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return 0, 0, false
	}
	maj, err1 := strconv.ParseUint(a, 10, 32)
	min, err2 := strconv.ParseUint(b, 10, 32)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return uint32(maj), uint32(min), true
}

// unescapeMount decodes the octal escapes (\040 for space, ...) of mountinfo fields.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// isMountPoint reports whether dir is a mount point.
func isMountPoint(dir string) (bool, error) {
	e, err := mountAt(dir)
	return e != nil, err
}

// mountAt returns the topmost mount on dir, or nil.
func mountAt(dir string) (*mountEntry, error) {
	mounts, err := readMounts()
	if err != nil {
		return nil, err
	}
	dir = filepath.Clean(dir)
	var found *mountEntry
	for i := range mounts {
		if mounts[i].mountPoint == dir {
			found = &mounts[i] // later lines are mounted on top of earlier ones
		}
	}
	return found, nil
}

// devString formats a device number the way sysfs and mountinfo do.
func devString(major, minor uint32) string { return fmt.Sprintf("%d:%d", major, minor) }
