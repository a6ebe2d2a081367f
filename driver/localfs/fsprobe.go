package localfs

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"os"
)

// probeSize is how much of a device probeSignature reads: enough for every signature it knows.
const probeSize = 128 * 1024

// signature is what probeSignature found at the start of a device.
type signature struct {
	// kind is "ext4" or "xfs" for the filesystems the backend mounts, another name ("swap", "gpt",
	// "LVM2_member", ...) for data it must not touch, or "" when the device looks blank.
	kind string
	// uuid is the filesystem UUID (ext4 and xfs), formatted like blkid.
	uuid string
}

// mountable reports whether the backend can mount the filesystem found.
func (s signature) mountable() bool { return s.kind == "ext4" || s.kind == "xfs" || s.kind == "btrfs" }

// probeDevice reads the start of a device and identifies what it holds.
func probeDevice(path string) (signature, error) {
	f, err := os.Open(path)
	if err != nil {
		return signature{}, err
	}
	defer f.Close()
	buf := make([]byte, probeSize)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return signature{}, err
	}
	return probeSignature(buf[:n]), nil
}

// probeSignature identifies ext2/3/4 and xfs superblocks (and their UUIDs) and a few other signatures that
// mean "this device holds data": partition tables, LVM, LUKS, swap, btrfs, ISO 9660, a boot sector.
func probeSignature(b []byte) signature {
	at := func(off int, magic string) bool {
		return len(b) >= off+len(magic) && string(b[off:off+len(magic)]) == magic
	}
	// ext2/3/4: superblock at 1024, magic 0xEF53 (LE) at +0x38, UUID at +0x68. The ext4 driver mounts all three.
	if len(b) >= 1024+0x78 && binary.LittleEndian.Uint16(b[1024+0x38:]) == 0xEF53 {
		return signature{kind: "ext4", uuid: formatUUID(b[1024+0x68 : 1024+0x78])}
	}
	// xfs: superblock at 0, magic "XFSB", UUID at 32.
	if at(0, "XFSB") && len(b) >= 48 {
		return signature{kind: "xfs", uuid: formatUUID(b[32:48])}
	}
	switch {
	case at(512, "EFI PART") || at(4096, "EFI PART"):
		return signature{kind: "gpt"}
	case at(512+24, "LVM2 001") || at(24, "LVM2 001") || at(1024+24, "LVM2 001"):
		return signature{kind: "LVM2_member"}
	case at(4096-10, "SWAPSPACE2") || at(4096-10, "SWAP-SPACE") || at(65536-10, "SWAPSPACE2"):
		return signature{kind: "swap"}
	case at(0x10040, "_BHRfS_M") && len(b) >= 0x10030:
		// btrfs: superblock at 64 KiB, magic at +0x40, filesystem UUID (fsid) at +0x20.
		return signature{kind: "btrfs", uuid: formatUUID(b[0x10020:0x10030])}
	case at(32769, "CD001"):
		return signature{kind: "iso9660"}
	case at(0, "LUKS\xba\xbe"):
		return signature{kind: "crypto_LUKS"}
	case len(b) >= 512 && b[510] == 0x55 && b[511] == 0xAA:
		return signature{kind: "dos partition table or boot sector"}
	}
	return signature{}
}

// formatUUID formats 16 bytes as 8-4-4-4-12 lowercase hex; an all-zero UUID gives "".
func formatUUID(u []byte) string {
	if bytes.Equal(u, make([]byte, 16)) {
		return ""
	}
	h := hex.EncodeToString(u)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
