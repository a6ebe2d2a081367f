// Package imagefmt identifies uploaded images by their content and streams them to storage, hashing and
// checking them on the way. It never looks at file names.
package imagefmt

import (
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/qcow2"
)

// HeadSize is how many leading bytes Detect needs to see every signature it knows.
const HeadSize = 40 << 10

// isoMagic is the standard identifier of an ISO 9660 volume descriptor, found one byte into each
// descriptor of the descriptor set that starts at sector 16 (2048-byte sectors).
const isoMagic = "CD001"

// isoMagicOffsets are the positions of the identifier in the first three volume descriptors.
var isoMagicOffsets = [...]int{32769, 34817, 36865}

// Detect identifies an image from its first bytes (give it at least the first 40 KiB when available):
// qcow2 by magic, ISO 9660 by "CD001" at offset 32769 (also 34817/36865), otherwise raw. Never looks at names.
func Detect(head []byte) driver.ImageFormat {
	if len(head) >= len(qcow2.Magic) && string(head[:len(qcow2.Magic)]) == qcow2.Magic {
		return driver.ImageQCOW2
	}
	for _, off := range isoMagicOffsets {
		if len(head) >= off+len(isoMagic) && string(head[off:off+len(isoMagic)]) == isoMagic {
			return driver.ImageISO
		}
	}
	return driver.ImageRaw
}
