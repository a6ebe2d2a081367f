package localfs

import (
	"os"

	"github.com/openvair/openvair/internal/errkind"
)

// growQCOW2 grows a qcow2 image to newSize bytes of virtual size.
// TODO: switch to qcow2.Grow once internal/qcow2 has it.
func growQCOW2(f *os.File, newSize int64) error {
	return errkind.New(errkind.Unsupported, "volume", "", "growing qcow2 volumes is not implemented yet")
}
