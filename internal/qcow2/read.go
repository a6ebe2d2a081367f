package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/openvair/openvair/internal/errkind"
)

// Bits of L1 and L2 table entries (QEMU's block/qcow2.h).
const (
	l1OffsetMask     uint64 = 0x00fffffffffffe00 // L1E_OFFSET_MASK
	l2OffsetMask     uint64 = 0x00fffffffffffe00 // L2E_OFFSET_MASK
	l2FlagCompressed uint64 = 1 << 62            // QCOW_OFLAG_COMPRESSED
	l2FlagZero       uint64 = 1 << 0             // QCOW_OFLAG_ZERO (standard L2 entries only)
	subclusters             = 32                 // subclusters per cluster with extended L2 entries
)

// Reader reads the guest-visible data of a qcow2 image (version 2 or 3, no backing file, no external data file,
// no encryption): unallocated clusters and zero clusters read as zeros; compressed clusters fail with an error.
//
// Only the active L1 table is used (snapshots are ignored). Extended L2 entries (subclusters) are supported.
// Data clusters that lie partly or wholly past the end of the file read as zeros past the end, as they do in
// QEMU (which leaves the tail of a freshly allocated last cluster unwritten). A Reader is safe for concurrent
// use when the underlying io.ReaderAt is.
type Reader struct {
	r         io.ReaderAt
	h         *Header
	extended  bool  // 128-bit L2 entries with subcluster bitmaps
	entrySize int64 // bytes per L2 entry

	mu      sync.Mutex
	l2Off   int64  // file offset of the cached L2 table, 0 when none
	l2Table []byte // the cached L2 table (one cluster)
}

// NewReader reads and checks the header of the qcow2 image in r. Errors wrap errkind.Invalid for input that is
// not a valid qcow2 image, and errkind.Unsupported for valid images this reader cannot read (backing file,
// external data file, encryption, unknown incompatible features).
func NewReader(r io.ReaderAt) (*Reader, error) {
	h, err := ReadHeader(r)
	if err != nil {
		return nil, err
	}
	switch {
	case h.BackingFile != "":
		return nil, unsupported("images with a backing file (%q) cannot be read on their own", h.BackingFile)
	case h.HasDataFile():
		return nil, unsupported("images with an external data file cannot be read")
	case h.CryptMethod != 0:
		return nil, unsupported("encrypted images (method %d) cannot be read", h.CryptMethod)
	case h.IncompatibleFeatures&^IncompatKnown != 0:
		return nil, unsupported("unknown incompatible features %#x", h.IncompatibleFeatures&^IncompatKnown)
	}
	rd := &Reader{r: r, h: h, extended: h.IncompatibleFeatures&IncompatExtendedL2 != 0, entrySize: 8}
	if rd.extended {
		rd.entrySize = 16
		if h.ClusterBits < 14 {
			// QEMU requires clusters of at least 16 KiB with extended L2 entries.
			return nil, invalid("extended L2 entries need a cluster size of at least 16 KiB, got %d", h.ClusterSize)
		}
	}
	return rd, nil
}

// Size returns the virtual (guest-visible) size of the image in bytes.
func (r *Reader) Size() int64 { return r.h.VirtualSize }

// ReadAt implements io.ReaderAt over the guest data. A read that reaches past Size returns the bytes up to Size
// and io.EOF. Other errors wrap errkind.Invalid (corrupt metadata, including ErrTruncated for an L2 table past
// the end of the file), errkind.Unsupported (a compressed cluster), or the underlying reader's error.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, invalid("negative read offset %d", off)
	}
	size := r.h.VirtualSize
	if off >= size {
		return 0, io.EOF
	}
	want := p
	if int64(len(p)) > size-off {
		want = p[:size-off]
	}
	n := 0
	for n < len(want) {
		k, err := r.readChunk(want[n:], off+int64(n))
		n += k
		if err != nil {
			return n, err
		}
	}
	if len(want) < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readChunk reads from guest offset off into p, stopping at the end of the (sub)cluster that holds off.
func (r *Reader) readChunk(p []byte, off int64) (int, error) {
	h := r.h
	cs := h.ClusterSize
	inCluster := off & (cs - 1)
	span := cs - inCluster
	if r.extended {
		sub := cs / subclusters
		span = sub - off&(sub-1)
	}
	p = p[:min(int64(len(p)), span)]

	host, zero, err := r.lookup(off)
	if err != nil {
		return 0, err
	}
	if zero {
		clear(p)
		return len(p), nil
	}
	n, err := r.r.ReadAt(p, host+inCluster)
	if n < len(p) {
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("qcow2: read data cluster at %d: %w", host, err)
		}
		clear(p[n:]) // past the end of the file: zeros, as in QEMU
	}
	return len(p), nil
}

// lookup returns the host offset of the cluster that holds guest offset off, or zero=true when the guest
// data there reads as zeros.
func (r *Reader) lookup(off int64) (host int64, zero bool, err error) {
	h := r.h
	cs := h.ClusterSize
	l2Entries := h.L2Entries()
	cluster := off >> h.ClusterBits
	l1Index := cluster / l2Entries
	l2Index := cluster % l2Entries
	if l1Index >= int64(h.L1Size) {
		// ReadHeader guarantees L1Size covers VirtualSize; this is only a safety net.
		return 0, false, invalid("guest offset %d beyond the L1 table", off)
	}

	var b [16]byte
	if err := readAt(r.r, b[:8], h.L1TableOffset+8*l1Index, "L1 table"); err != nil {
		return 0, false, err
	}
	l2Off := binary.BigEndian.Uint64(b[:8]) & l1OffsetMask
	if l2Off == 0 {
		return 0, true, nil
	}
	if l2Off%uint64(cs) != 0 {
		return 0, false, invalid("L2 table offset %#x (L1 index %d) not aligned to the cluster size", l2Off, l1Index)
	}
	if err := r.l2Entry(int64(l2Off), l2Index, b[:r.entrySize]); err != nil {
		return 0, false, err
	}
	entry := binary.BigEndian.Uint64(b[:8])
	if entry&l2FlagCompressed != 0 {
		return 0, false, unsupported("guest offset %d lies in a compressed cluster", off)
	}
	hostOff := entry & l2OffsetMask

	if !r.extended {
		if entry&l2FlagZero != 0 || hostOff == 0 {
			return 0, true, nil
		}
		if hostOff%uint64(cs) != 0 {
			return 0, false, invalid("data cluster offset %#x (guest offset %d) not aligned to the cluster size", hostOff, off)
		}
		return int64(hostOff), false, nil
	}

	bitmap := binary.BigEndian.Uint64(b[8:16])
	sub := uint((off & (cs - 1)) / (cs / subclusters))
	alloc := bitmap&(1<<sub) != 0
	zeroBit := bitmap&(1<<(sub+32)) != 0
	switch {
	case alloc && zeroBit:
		return 0, false, invalid("subcluster %d at guest offset %d is both allocated and zero", sub, off)
	case alloc && hostOff == 0:
		return 0, false, invalid("subcluster %d at guest offset %d is allocated in an unallocated cluster", sub, off)
	case !alloc:
		return 0, true, nil
	case hostOff%uint64(cs) != 0:
		return 0, false, invalid("data cluster offset %#x (guest offset %d) not aligned to the cluster size", hostOff, off)
	}
	return int64(hostOff), false, nil
}

// l2Entry copies entry index of the L2 table at file offset l2Off into dst, through a one-table cache.
func (r *Reader) l2Entry(l2Off, index int64, dst []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.l2Off != l2Off {
		if r.l2Table == nil {
			r.l2Table = make([]byte, r.h.ClusterSize)
		}
		r.l2Off = 0
		if err := readAt(r.r, r.l2Table, l2Off, "L2 table"); err != nil {
			return err
		}
		r.l2Off = l2Off
	}
	copy(dst, r.l2Table[index*r.entrySize:])
	return nil
}

func unsupported(format string, args ...any) error {
	return errkind.New(errkind.Unsupported, "qcow2", "", format, args...)
}
