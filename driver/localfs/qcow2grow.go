package localfs

import (
	"os"

	"github.com/openvair/openvair/internal/qcow2"
)

// growQCOW2 grows a qcow2 image to newSize bytes of virtual size; new metadata is appended to the file.
func growQCOW2(f *os.File, newSize int64) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	_, err = qcow2.Grow(f, fi.Size(), newSize)
	return err
}
