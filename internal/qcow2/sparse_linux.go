//go:build linux

package qcow2

import (
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"
)

const seekDataSupported = true

// seekData returns the first data range of the file fd within [off, limit), or ok=false when the filesystem
// does not support SEEK_DATA. The file offset is left where it was.
func seekData(fd int, off, limit int64) (start, end int64, ok bool, err error) {
	cur, err := unix.Seek(fd, 0, io.SeekCurrent)
	if err != nil {
		return 0, 0, false, nil
	}
	defer func() { _, _ = unix.Seek(fd, cur, io.SeekStart) }()
	start, err = unix.Seek(fd, off, unix.SEEK_DATA)
	switch {
	case errors.Is(err, unix.ENXIO):
		return limit, limit, true, nil // only a hole from off to the end of the file
	case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP):
		return 0, 0, false, nil
	case err != nil:
		return 0, 0, false, fmt.Errorf("qcow2: seek data at %d: %w", off, err)
	case start >= limit:
		return limit, limit, true, nil
	}
	end, err = unix.Seek(fd, start, unix.SEEK_HOLE)
	switch {
	case errors.Is(err, unix.ENXIO):
		end = limit // the file shrank meanwhile: let the reads find out
	case err != nil:
		return 0, 0, false, fmt.Errorf("qcow2: seek hole at %d: %w", start, err)
	}
	return start, min(end, limit), true, nil
}
