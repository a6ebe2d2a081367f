// Package qcow2 creates, reads, converts and grows qcow2 images without qemu-img. It works over io.ReaderAt
// and io.WriterAt, so the same code serves local files and files reached over NFS.
//
// The format is the one described in QEMU's docs/interop/qcow2.txt. Create writes version 3 images with
// 16-bit refcounts, optionally as overlays of a backing file; ReadHeader reads versions 2 and 3; Grow enlarges
// any image whose incompatible features it understands. Reader reads guest data (NewReaderWithBacking through a
// backing chain); Convert writes a sparse image from guest data, ToRaw a sparse raw file.
package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/openvair/openvair/internal/errkind"
)

// Magic is the first four bytes of every qcow2 image.
const Magic = "QFI\xfb"

// Incompatible feature bits (Header.IncompatibleFeatures).
const (
	IncompatDirty       uint64 = 1 << 0 // refcounts may be inconsistent (lazy refcounts in use)
	IncompatCorrupt     uint64 = 1 << 1 // QEMU found corruption; the image must be repaired first
	IncompatDataFile    uint64 = 1 << 2 // guest data lives in an external data file
	IncompatCompression uint64 = 1 << 3 // compression type field is not zlib
	IncompatExtendedL2  uint64 = 1 << 4 // L2 entries are 128 bits wide (subclusters)

	// IncompatKnown is every incompatible bit this package understands.
	IncompatKnown = IncompatDirty | IncompatCorrupt | IncompatDataFile | IncompatCompression | IncompatExtendedL2
)

// Compatible and autoclear feature bits.
const (
	CompatLazyRefcounts uint64 = 1 << 0 // Header.CompatibleFeatures
	AutoclearBitmaps    uint64 = 1 << 0 // Header.AutoclearFeatures: the bitmaps extension is consistent
	AutoclearRawData    uint64 = 1 << 1 // Header.AutoclearFeatures: the external data file is a valid raw image
)

// Header extension types.
const (
	extEnd           = 0x00000000
	extBackingFormat = 0xe2792aca
	extDataFile      = 0x44415441
)

// Limits taken from QEMU (block/qcow2.h).
const (
	minClusterBits   = 9
	maxClusterBits   = 21
	maxL1Bytes       = 32 << 20 // QCOW_MAX_L1_SIZE
	maxRefTableBytes = 8 << 20  // QCOW_MAX_REFTABLE_SIZE
	maxSnapshots     = 65536
	maxBackingName   = 1023
	v2HeaderLength   = 72
	v3HeaderLength   = 104
	maxExtensionData = 1 << 20 // no known extension comes near this; bounds reads of hostile input
)

// ErrTruncated is wrapped (together with errkind.Invalid) by ReadHeader's error when the input ends inside
// the header, its extensions or the backing file name. A streaming reader can use it to tell "need more
// bytes" from "not a valid image".
var ErrTruncated = errors.New("qcow2: truncated header")

// File is a random-access file: *os.File or an NFS file.
type File interface {
	io.ReaderAt
	io.WriterAt
}

// Header is a parsed and validated qcow2 header.
type Header struct {
	Version          uint32 // 2 (compat=0.10) or 3 (compat=1.1)
	VirtualSize      int64  // guest-visible size in bytes
	ClusterBits      uint32 // log2 of ClusterSize
	ClusterSize      int64  // 512 B to 2 MiB
	BackingFile      string // name of the backing file, "" when none
	ExternalDataFile string // from the data file name extension, "" when none (see HasDataFile)
	Dirty, Corrupt   bool   // incompatible bits 0 and 1

	L1Size                uint32 // entries in the active L1 table
	L1TableOffset         int64
	RefcountTableOffset   int64
	RefcountTableClusters uint32
	RefcountOrder         uint32 // refcount entries are 1<<RefcountOrder bits wide

	IncompatibleFeatures, CompatibleFeatures, AutoclearFeatures uint64 // feature bitmaps (0 for version 2)
	HeaderLength                                                uint32 // 72 for version 2

	// Fields added after the first version of this API.

	BackingFileOffset int64  // where the backing file name is stored; 0 when there is none
	BackingFileSize   uint32 // length of the backing file name as stored
	BackingFormat     string // from the backing file format extension, if any
	CryptMethod       uint32 // 0 none, 1 AES, 2 LUKS
	NbSnapshots       uint32
	SnapshotsOffset   int64
	CompressionType   uint8 // 0 zlib, 1 zstd (v3 headers longer than 104 bytes)
}

// HasDataFile reports whether guest data lives in an external data file.
func (h *Header) HasDataFile() bool {
	return h.IncompatibleFeatures&IncompatDataFile != 0 || h.ExternalDataFile != ""
}

// L2Entries is the number of entries of one L2 table.
func (h *Header) L2Entries() int64 {
	entry := int64(8)
	if h.IncompatibleFeatures&IncompatExtendedL2 != 0 {
		entry = 16
	}
	return h.ClusterSize / entry
}

// RefcountBits is the width of one refcount entry in bits.
func (h *Header) RefcountBits() uint32 { return 1 << h.RefcountOrder }

func invalid(format string, args ...any) error {
	return errkind.New(errkind.Invalid, "qcow2", "", format, args...)
}

func truncated(what string) error {
	return errkind.Wrap(errkind.Invalid, ErrTruncated, "qcow2", "", "input ends inside the %s", what)
}

// readAt reads exactly len(p) bytes at off. A short input is an invalid (truncated) image; other read
// errors are returned as they are, wrapped with context.
func readAt(r io.ReaderAt, p []byte, off int64, what string) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return truncated(what)
	}
	return fmt.Errorf("qcow2: read %s at %d: %w", what, off, err)
}

// l1Needed is the number of L1 entries an image of size bytes needs.
func l1Needed(size int64, clusterSize, l2Entries int64) int64 {
	perL1 := clusterSize * l2Entries // bytes mapped by one L1 entry (≤ 2^39)
	return (size + perL1 - 1) / perL1
}

// ReadHeader parses and validates a qcow2 header (v2 and v3); errors wrap errkind.Invalid for non-qcow2 or
// corrupt input.
//
// Only the first cluster is read. An input that ends too early wraps ErrTruncated as well; other read
// errors of r are returned wrapped as they are (an NFS timeout is not an invalid image).
func ReadHeader(r io.ReaderAt) (*Header, error) {
	var b [v3HeaderLength + 8]byte
	if err := readAt(r, b[:v2HeaderLength], 0, "header"); err != nil {
		return nil, err
	}
	if string(b[:4]) != Magic {
		return nil, invalid("not a qcow2 image (bad magic)")
	}
	be := binary.BigEndian
	h := &Header{Version: be.Uint32(b[4:])}
	if h.Version != 2 && h.Version != 3 {
		return nil, invalid("unsupported qcow2 version %d", h.Version)
	}
	backingOff := be.Uint64(b[8:])
	h.BackingFileSize = be.Uint32(b[16:])
	h.ClusterBits = be.Uint32(b[20:])
	size := be.Uint64(b[24:])
	h.CryptMethod = be.Uint32(b[32:])
	h.L1Size = be.Uint32(b[36:])
	l1Off := be.Uint64(b[40:])
	rtOff := be.Uint64(b[48:])
	h.RefcountTableClusters = be.Uint32(b[56:])
	h.NbSnapshots = be.Uint32(b[60:])
	snapOff := be.Uint64(b[64:])

	if h.ClusterBits < minClusterBits || h.ClusterBits > maxClusterBits {
		return nil, invalid("cluster bits %d out of range [%d, %d]", h.ClusterBits, minClusterBits, maxClusterBits)
	}
	h.ClusterSize = 1 << h.ClusterBits
	cs := uint64(h.ClusterSize)

	if h.Version == 2 {
		h.RefcountOrder = 4
		h.HeaderLength = v2HeaderLength
	} else {
		if err := readAt(r, b[v2HeaderLength:v3HeaderLength], v2HeaderLength, "header"); err != nil {
			return nil, err
		}
		h.IncompatibleFeatures = be.Uint64(b[72:])
		h.CompatibleFeatures = be.Uint64(b[80:])
		h.AutoclearFeatures = be.Uint64(b[88:])
		h.RefcountOrder = be.Uint32(b[96:])
		h.HeaderLength = be.Uint32(b[100:])
		if h.HeaderLength < v3HeaderLength {
			return nil, invalid("header length %d too small", h.HeaderLength)
		}
		if uint64(h.HeaderLength) > cs {
			return nil, invalid("header length %d larger than a cluster", h.HeaderLength)
		}
		if h.HeaderLength > v3HeaderLength {
			if err := readAt(r, b[v3HeaderLength:v3HeaderLength+1], v3HeaderLength, "header"); err != nil {
				return nil, err
			}
			h.CompressionType = b[v3HeaderLength]
		}
		if h.RefcountOrder > 6 {
			return nil, invalid("refcount order %d out of range [0, 6]", h.RefcountOrder)
		}
		if h.CompressionType > 1 {
			return nil, invalid("unknown compression type %d", h.CompressionType)
		}
		if h.CompressionType != 0 && h.IncompatibleFeatures&IncompatCompression == 0 {
			return nil, invalid("compression type set without its incompatible feature bit")
		}
	}
	h.Dirty = h.IncompatibleFeatures&IncompatDirty != 0
	h.Corrupt = h.IncompatibleFeatures&IncompatCorrupt != 0

	if size > math.MaxInt64 {
		return nil, invalid("virtual size %d too large", size)
	}
	h.VirtualSize = int64(size)
	if h.CryptMethod > 2 {
		return nil, invalid("unknown encryption method %d", h.CryptMethod)
	}

	// L1 table: must be large enough for the virtual size, aligned, and within QEMU's limits.
	if uint64(h.L1Size)*8 > maxL1Bytes {
		return nil, invalid("L1 table of %d entries too large", h.L1Size)
	}
	if need := l1Needed(h.VirtualSize, h.ClusterSize, h.L2Entries()); int64(h.L1Size) < need {
		return nil, invalid("L1 table of %d entries too small for virtual size %d (needs %d)", h.L1Size, h.VirtualSize, need)
	}
	if h.L1Size > 0 && l1Off == 0 {
		return nil, invalid("L1 table at offset 0")
	}
	if err := checkTable("L1 table", l1Off, uint64(h.L1Size)*8, cs); err != nil {
		return nil, err
	}
	h.L1TableOffset = int64(l1Off)

	// Refcount table.
	if h.RefcountTableClusters == 0 || uint64(h.RefcountTableClusters)*cs > maxRefTableBytes {
		return nil, invalid("refcount table of %d clusters out of range", h.RefcountTableClusters)
	}
	if rtOff == 0 {
		return nil, invalid("refcount table at offset 0")
	}
	if err := checkTable("refcount table", rtOff, uint64(h.RefcountTableClusters)*cs, cs); err != nil {
		return nil, err
	}
	h.RefcountTableOffset = int64(rtOff)

	// Snapshot table.
	if h.NbSnapshots > maxSnapshots {
		return nil, invalid("%d snapshots exceed the limit of %d", h.NbSnapshots, maxSnapshots)
	}
	if h.NbSnapshots > 0 {
		if err := checkTable("snapshot table", snapOff, 0, cs); err != nil {
			return nil, err
		}
	}
	h.SnapshotsOffset = int64(snapOff)

	// Header extensions end at the backing file name (v2 images put it right after the header) or at the
	// end of the first cluster.
	extEndOff := cs
	if backingOff != 0 && backingOff < extEndOff {
		extEndOff = backingOff
	}
	if err := h.readExtensions(r, int64(h.HeaderLength), int64(extEndOff)); err != nil {
		return nil, err
	}

	if backingOff != 0 {
		if backingOff >= cs || uint64(h.BackingFileSize) > min(maxBackingName, cs-backingOff) {
			return nil, invalid("backing file name (offset %d, %d bytes) does not fit in the first cluster", backingOff, h.BackingFileSize)
		}
		h.BackingFileOffset = int64(backingOff)
		if h.BackingFileSize > 0 {
			name := make([]byte, h.BackingFileSize)
			if err := readAt(r, name, int64(backingOff), "backing file name"); err != nil {
				return nil, err
			}
			h.BackingFile = string(name)
		}
	} else if h.BackingFileSize != 0 {
		return nil, invalid("backing file size %d without a backing file offset", h.BackingFileSize)
	}

	if h.ExternalDataFile != "" && h.IncompatibleFeatures&IncompatDataFile == 0 {
		return nil, invalid("external data file name present but the data file feature bit is not set")
	}
	if h.AutoclearFeatures&AutoclearRawData != 0 && h.IncompatibleFeatures&IncompatDataFile == 0 {
		return nil, invalid("raw data file bit set without an external data file")
	}
	return h, nil
}

// checkTable validates that a metadata table is cluster aligned and does not overflow the offset range.
func checkTable(what string, off, length, cs uint64) error {
	if off%cs != 0 {
		return invalid("%s offset %#x not aligned to the cluster size", what, off)
	}
	if off > math.MaxInt64-length {
		return invalid("%s offset %#x out of range", what, off)
	}
	return nil
}

// readExtensions walks the header extensions in [start, end).
func (h *Header) readExtensions(r io.ReaderAt, start, end int64) error {
	var eh [8]byte
	off := start
	for {
		if off+8 > end {
			// QEMU stops silently when no room for another extension header is left.
			return nil
		}
		if err := readAt(r, eh[:], off, "header extensions"); err != nil {
			return err
		}
		typ := binary.BigEndian.Uint32(eh[0:])
		length := int64(binary.BigEndian.Uint32(eh[4:]))
		off += 8
		if typ == extEnd {
			return nil
		}
		if length > end-off || length > maxExtensionData {
			return invalid("header extension %#x of %d bytes overruns the first cluster", typ, length)
		}
		switch typ {
		case extBackingFormat, extDataFile:
			data := make([]byte, length)
			if err := readAt(r, data, off, "header extension"); err != nil {
				return err
			}
			if typ == extBackingFormat {
				h.BackingFormat = string(data)
			} else {
				h.ExternalDataFile = string(data)
			}
		}
		off += (length + 7) &^ 7
	}
}
