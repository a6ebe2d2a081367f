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

// maxCoalesce bounds how much guest data one read of the image file (or of the backing file) covers when
// consecutive clusters are contiguous in the file.
const maxCoalesce = 16 << 20

// Reader reads the guest-visible data of a qcow2 image (version 2 or 3, no external data file, no encryption):
// zero clusters read as zeros, unallocated clusters as zeros or, for a Reader made by NewReaderWithBacking, from
// the backing file; compressed clusters fail with an error.
//
// Only the active L1 table is used (snapshots are ignored). Extended L2 entries (subclusters) are supported.
// Data clusters that lie partly or wholly past the end of the file read as zeros past the end, as they do in
// QEMU (which leaves the tail of a freshly allocated last cluster unwritten). A Reader is safe for concurrent
// use when the underlying io.ReaderAt (and the backing files) are.
type Reader struct {
	r         io.ReaderAt
	h         *Header
	extended  bool  // 128-bit L2 entries with subcluster bitmaps
	entrySize int64 // bytes per L2 entry

	backing       io.ReaderAt // guest data of the backing file (a raw file or a *Reader), nil when none
	backingCloser io.Closer   // what NewReaderWithBacking opened, closed by Close

	mu      sync.Mutex
	l1Index int64  // index of the first entry of the cached L1 cluster, -1 when none
	l1Cache []byte // one cluster of the L1 table
	l2Off   int64  // file offset of the cached L2 table, 0 when none
	l2Table []byte // the cached L2 table (one cluster)
}

// NewReader reads and checks the header of the qcow2 image in r. Errors wrap errkind.Invalid for input that is
// not a valid qcow2 image, and errkind.Unsupported for valid images this reader cannot read (backing file,
// external data file, encryption, unknown incompatible features). It never opens another file: it is meant
// for untrusted input such as uploads, whose backing file names must not be followed.
func NewReader(r io.ReaderAt) (*Reader, error) {
	h, err := ReadHeader(r)
	if err != nil {
		return nil, err
	}
	if h.BackingFile != "" {
		return nil, unsupported("images with a backing file (%q) cannot be read on their own", h.BackingFile)
	}
	return newReader(r, h)
}

// newReader checks what a Reader needs of h, apart from the backing file.
func newReader(r io.ReaderAt, h *Header) (*Reader, error) {
	switch {
	case h.HasDataFile():
		return nil, unsupported("images with an external data file cannot be read")
	case h.CryptMethod != 0:
		return nil, unsupported("encrypted images (method %d) cannot be read", h.CryptMethod)
	case h.IncompatibleFeatures&^IncompatKnown != 0:
		return nil, unsupported("unknown incompatible features %#x", h.IncompatibleFeatures&^IncompatKnown)
	}
	rd := &Reader{r: r, h: h, extended: h.IncompatibleFeatures&IncompatExtendedL2 != 0, entrySize: 8, l1Index: -1}
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

// Header returns a copy of the image's header: BackingFile and BackingFormat name the backing file, for
// callers that track backing chains.
func (r *Reader) Header() Header { return *r.h }

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

// clusterKind is what a guest (sub)cluster maps to.
type clusterKind uint8

const (
	kindUnalloc clusterKind = iota // not allocated: the backing file's data, or zeros without one
	kindZero                       // reads as zeros
	kindData                       // stored in the image file
)

// span returns the guest bytes from off to the end of its (sub)cluster, the unit of one mapping.
func (r *Reader) span(off int64) int64 {
	unit := r.h.ClusterSize
	if r.extended {
		unit /= subclusters
	}
	return unit - off&(unit-1)
}

// readChunk reads from guest offset off into p a run of (sub)clusters of one kind, contiguous in the file
// when they are data, up to maxCoalesce bytes.
func (r *Reader) readChunk(p []byte, off int64) (int, error) {
	limit := min(int64(len(p)), maxCoalesce)
	kind, host, err := r.lookup(off)
	if err != nil {
		return 0, err
	}
	n := min(r.span(off), limit)
	for n < limit {
		// Extend the run; an error here ends it, and the next call reports it.
		next := off + n
		k, h, err := r.lookup(next)
		if err != nil || k != kind || (kind == kindData && h != host+n) {
			break
		}
		n = min(n+r.span(next), limit)
	}
	p = p[:n]
	switch {
	case kind == kindData:
		k, err := r.r.ReadAt(p, host)
		if k < len(p) {
			if err != nil && !errors.Is(err, io.EOF) {
				return 0, fmt.Errorf("qcow2: read data cluster at %d: %w", host, err)
			}
			clear(p[k:]) // past the end of the file: zeros, as in QEMU
		}
	case kind == kindUnalloc && r.backing != nil:
		k, err := r.backing.ReadAt(p, off)
		if k < len(p) {
			if err != nil && !errors.Is(err, io.EOF) {
				return 0, fmt.Errorf("qcow2: read backing file %q at %d: %w", r.h.BackingFile, off, err)
			}
			clear(p[k:]) // past the end of a smaller backing file: zeros, as in QEMU
		}
	default:
		clear(p)
	}
	return len(p), nil
}

// lookup returns what the (sub)cluster holding guest offset off maps to and, for data, the file offset of
// the byte at off.
func (r *Reader) lookup(off int64) (kind clusterKind, host int64, err error) {
	cs := r.h.ClusterSize
	entry, bitmap, l1Empty, err := r.l2Lookup(off >> r.h.ClusterBits)
	if err != nil || l1Empty {
		return kindUnalloc, 0, err
	}
	if entry&l2FlagCompressed != 0 {
		return 0, 0, unsupported("guest offset %d lies in a compressed cluster", off)
	}
	hostOff := entry & l2OffsetMask
	inCluster := off & (cs - 1)

	if !r.extended {
		switch {
		case entry&l2FlagZero != 0:
			return kindZero, 0, nil
		case hostOff == 0:
			return kindUnalloc, 0, nil
		case hostOff%uint64(cs) != 0:
			return 0, 0, invalid("data cluster offset %#x (guest offset %d) not aligned to the cluster size", hostOff, off)
		}
		return kindData, int64(hostOff) + inCluster, nil
	}

	sub := uint(inCluster / (cs / subclusters))
	alloc := bitmap&(1<<sub) != 0
	zeroBit := bitmap&(1<<(sub+32)) != 0
	switch {
	case alloc && zeroBit:
		return 0, 0, invalid("subcluster %d at guest offset %d is both allocated and zero", sub, off)
	case alloc && hostOff == 0:
		return 0, 0, invalid("subcluster %d at guest offset %d is allocated in an unallocated cluster", sub, off)
	case zeroBit:
		return kindZero, 0, nil
	case !alloc:
		return kindUnalloc, 0, nil
	case hostOff%uint64(cs) != 0:
		return 0, 0, invalid("data cluster offset %#x (guest offset %d) not aligned to the cluster size", hostOff, off)
	}
	return kindData, int64(hostOff) + inCluster, nil
}

// l2Lookup returns the L2 entry (and, for extended entries, the subcluster bitmap) of guest cluster c, or
// l1Empty when its whole L2 table is unallocated.
func (r *Reader) l2Lookup(c int64) (entry, bitmap uint64, l1Empty bool, err error) {
	h := r.h
	l2Entries := h.L2Entries()
	l1Index := c / l2Entries
	l2Index := c % l2Entries
	if l1Index >= int64(h.L1Size) {
		// ReadHeader guarantees L1Size covers VirtualSize; this is only a safety net.
		return 0, 0, false, invalid("guest cluster %d beyond the L1 table", c)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	l1e, err := r.l1Entry(l1Index)
	if err != nil {
		return 0, 0, false, err
	}
	l2Off := l1e & l1OffsetMask
	if l2Off == 0 {
		return 0, 0, true, nil
	}
	if l2Off%uint64(h.ClusterSize) != 0 {
		return 0, 0, false, invalid("L2 table offset %#x (L1 index %d) not aligned to the cluster size", l2Off, l1Index)
	}
	if r.l2Off != int64(l2Off) {
		if r.l2Table == nil {
			r.l2Table = make([]byte, h.ClusterSize)
		}
		r.l2Off = 0
		if err := readAt(r.r, r.l2Table, int64(l2Off), "L2 table"); err != nil {
			return 0, 0, false, err
		}
		r.l2Off = int64(l2Off)
	}
	e := r.l2Table[l2Index*r.entrySize:]
	entry = binary.BigEndian.Uint64(e)
	if r.extended {
		bitmap = binary.BigEndian.Uint64(e[8:])
	}
	return entry, bitmap, false, nil
}

// l1Entry returns entry i of the L1 table through a one-cluster cache. r.mu is held.
func (r *Reader) l1Entry(i int64) (uint64, error) {
	per := r.h.ClusterSize / 8
	first := i / per * per
	if r.l1Index != first {
		if r.l1Cache == nil {
			r.l1Cache = make([]byte, r.h.ClusterSize)
		}
		r.l1Index = -1
		// The last cluster of the table may be cut short by the end of the file: read only the table's part.
		n := min(per, int64(r.h.L1Size)-first) * 8
		if err := readAt(r.r, r.l1Cache[:n], r.h.L1TableOffset+first*8, "L1 table"); err != nil {
			return 0, err
		}
		r.l1Index = first
	}
	return binary.BigEndian.Uint64(r.l1Cache[(i-first)*8:]), nil
}

func unsupported(format string, args ...any) error {
	return errkind.New(errkind.Unsupported, "qcow2", "", format, args...)
}
