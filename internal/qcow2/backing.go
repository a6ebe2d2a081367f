package qcow2

import (
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/openvair/openvair/internal/errkind"
)

// MaxBackingDepth is the longest backing chain NewReaderWithBacking follows below the image it is given.
const MaxBackingDepth = 16

// Opener opens a backing file by the name stored in an image's header (for QEMU, relative names are relative
// to the directory of the image that names them). The result is closed by Reader.Close when it implements
// io.Closer. An Opener decides which names may be followed: it is the place to confine a chain to a storage.
type Opener func(name string) (io.ReaderAt, error)

// NewReaderWithBacking is NewReader for an image that may have a backing file: its unallocated clusters read
// from the backing file, which open opens by name, raw or qcow2 as the image's backing format extension says
// (an image without that extension is refused with errkind.Unsupported rather than probed). A qcow2 backing
// file may have a backing file in turn, down to MaxBackingDepth levels (errkind.Unsupported beyond); a chain
// that names a file twice is refused with errkind.Invalid. Areas past the end of a smaller backing file read
// as zeros. Errors of open are returned wrapped (a missing file, fs.ErrNotExist, as errkind.NotFound).
//
// Call Close to close the backing files once the Reader is no longer used. Only use it on images whose chain
// is trusted (the names in a header are followed through open); untrusted uploads go through NewReader.
func NewReaderWithBacking(r io.ReaderAt, open Opener) (*Reader, error) {
	if open == nil {
		return nil, invalid("NewReaderWithBacking needs an opener")
	}
	return openChain(r, open, 0, map[string]bool{})
}

// openChain makes the Reader of r, which lies depth levels below the top of the chain, and opens its
// backing chain. seen holds the names opened so far.
func openChain(r io.ReaderAt, open Opener, depth int, seen map[string]bool) (*Reader, error) {
	h, err := ReadHeader(r)
	if err != nil {
		return nil, err
	}
	rd, err := newReader(r, h)
	if err != nil {
		return nil, err
	}
	name := h.BackingFile
	if name == "" {
		return rd, nil
	}
	switch {
	case depth >= MaxBackingDepth:
		return nil, unsupported("backing chain deeper than %d levels", MaxBackingDepth)
	case seen[name]:
		return nil, invalid("backing chain loops: %q is named twice", name)
	case h.BackingFormat == "":
		return nil, unsupported("backing file %q has no recorded format; set it with qemu-img rebase -u -F", name)
	case h.BackingFormat != FormatRaw && h.BackingFormat != FormatQCOW2:
		return nil, unsupported("backing file %q has format %q (only raw and qcow2 are read)", name, h.BackingFormat)
	}
	seen[name] = true
	f, err := open(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && errkind.Name(err) == "" {
			return nil, errkind.Wrap(errkind.NotFound, err, "qcow2", "", "open backing file %q", name)
		}
		return nil, fmt.Errorf("qcow2: open backing file %q: %w", name, err)
	}
	if f == nil {
		return nil, invalid("opener returned no backing file for %q", name)
	}
	closer, _ := f.(io.Closer)
	if h.BackingFormat == FormatRaw {
		rd.backing = f
		if dr := dataRanger(f); dr != nil {
			rd.backing = struct {
				io.ReaderAt
				DataRanger
			}{f, dr}
		}
	} else {
		sub, err := openChain(f, open, depth+1, seen)
		if err != nil {
			if closer != nil {
				_ = closer.Close()
			}
			return nil, fmt.Errorf("qcow2: backing file %q: %w", name, err)
		}
		rd.backing = sub
	}
	rd.backingCloser = closer
	return rd, nil
}

// Close closes the backing files NewReaderWithBacking opened (the whole chain), not the image the Reader was
// made from; it does nothing for a Reader made by NewReader. It returns the first error. Call it once the
// Reader is no longer read: reads that need a closed backing file fail.
func (r *Reader) Close() error {
	var first error
	if sub, ok := r.backing.(*Reader); ok {
		first = sub.Close()
	}
	if r.backingCloser != nil {
		if err := r.backingCloser.Close(); err != nil && first == nil {
			first = err
		}
		r.backingCloser = nil
	}
	return first
}

// DataRanger is implemented by guest-data sources that know where their data lies. Convert and ToRaw use it
// to skip what reads as zeros without reading it. *Reader implements it; a raw *os.File is given one by
// Convert and ToRaw themselves (SEEK_DATA and SEEK_HOLE).
type DataRanger interface {
	// DataRange returns the first range [start, end) within [off, limit) that may hold non-zero data; all of
	// [off, start) reads as zeros. start == end == limit when nothing in [off, limit) does. end may stop short
	// of the end of the data (the caller asks again from there); the range may well contain zeros.
	DataRange(off, limit int64) (start, end int64, err error)
}

// maxRangeScan bounds how far one DataRange call extends a range through the mapping, past its start.
const maxRangeScan = 256 << 20

// DataRange implements DataRanger from the image's L1 and L2 tables (and those of its backing chain), at
// cluster granularity: allocated data clusters may hold data, zero clusters do not, unallocated clusters hold
// what the backing file holds there, or zeros without one. It reads no guest data.
func (r *Reader) DataRange(off, limit int64) (start, end int64, err error) {
	limit = min(limit, r.h.VirtualSize)
	off = max(off, 0)
	for off < limit {
		kind, e, err := r.classify(off)
		if err != nil {
			return 0, 0, err
		}
		e = min(e, limit)
		switch {
		case kind == kindData:
			for e < limit && e-off < maxRangeScan {
				k, e2, err := r.classify(e)
				if err != nil || k != kindData {
					break
				}
				e = min(e2, limit)
			}
			return off, e, nil
		case kind == kindUnalloc && r.backing != nil:
			for e < limit && e-off < maxRangeScan {
				k, e2, err := r.classify(e)
				if err != nil || k != kindUnalloc {
					break
				}
				e = min(e2, limit)
			}
			br, ok := r.backing.(DataRanger)
			if !ok {
				return off, e, nil
			}
			s, be, err := br.DataRange(off, e)
			if err != nil {
				return 0, 0, err
			}
			if s < e && s < be { // the backing file clips to its own size: an empty range means no data
				return s, min(be, e), nil
			}
		}
		off = e
	}
	return limit, limit, nil
}

// classify returns what the whole cluster holding guest offset off maps to (kindData when its subclusters
// differ in a way that matters), and where the stretch it knows to map the same way ends: the end of the
// cluster, or of the L2 table's range when the L1 entry is empty.
func (r *Reader) classify(off int64) (clusterKind, int64, error) {
	cs := r.h.ClusterSize
	c := off >> r.h.ClusterBits
	entry, bitmap, l1Empty, err := r.l2Lookup(c)
	if err != nil {
		return 0, 0, err
	}
	end := (c + 1) * cs
	if l1Empty {
		per := r.h.L2Entries()
		return kindUnalloc, (c/per + 1) * per * cs, nil
	}
	if entry&l2FlagCompressed != 0 {
		return kindData, end, nil
	}
	if !r.extended {
		switch {
		case entry&l2FlagZero != 0:
			return kindZero, end, nil
		case entry&l2OffsetMask == 0:
			return kindUnalloc, end, nil
		}
		return kindData, end, nil
	}
	alloc, zero := uint32(bitmap), uint32(bitmap>>32)
	switch {
	case alloc != 0:
		return kindData, end, nil
	case zero == 0:
		return kindUnalloc, end, nil
	case zero == ^uint32(0) || r.backing == nil:
		return kindZero, end, nil
	}
	return kindData, end, nil // some subclusters zero, others from the backing file: may hold data
}
