package qcow2

import (
	"encoding/binary"
	"math/bits"
	"strings"
)

// Defaults and values written by Create.
const (
	DefaultClusterSize = 65536
	createRefOrder     = 4 // 16-bit refcounts, QEMU's default
	createHeaderLength = 112
	oflagCopied        = uint64(1) << 63 // L1/L2 entry: refcount is exactly one
)

// Preallocation modes accepted by Create.
const (
	PreallocOff      = "off"
	PreallocMetadata = "metadata"
)

// Backing file formats accepted by Create (CreateOptions.BackingFormat) and read by NewReaderWithBacking.
const (
	FormatQCOW2 = "qcow2"
	FormatRaw   = "raw"
)

// CreateOptions tunes Create.
type CreateOptions struct {
	ClusterSize   int64  // power of two in [512, 2 MiB]; default 65536
	Preallocation string // "off" (default) or "metadata"

	// BackingFile, when not empty, makes the image an overlay: clusters it does not allocate read from this
	// file. The name is stored as given; QEMU resolves a relative name against the directory of the overlay,
	// so callers pass a bare name ("volume-<id>") to keep a storage movable. At most 1023 bytes, no NUL, and
	// not something QEMU would take for a protocol ("json:...", or a colon before the first slash: write
	// "./a:b"). It cannot be combined with Preallocation "metadata", whose allocated clusters would hide the
	// backing file. The virtual size given to Create should be at least the backing file's (not checked).
	BackingFile string
	// BackingFormat is the format of BackingFile, FormatQCOW2 or FormatRaw; required with BackingFile (it is
	// recorded in the backing file format header extension, so that nothing probes the format).
	BackingFormat string
}

// layout is where Create puts each structure, in clusters.
type layout struct {
	cs                  int64
	l1Entries           int64
	rtStart, rtClusters int64 // refcount table
	rbStart, rbClusters int64 // refcount blocks
	l1Start, l1Clusters int64
	l2Start, l2Clusters int64 // preallocated L2 tables
	dataStart, data     int64 // preallocated data clusters
	total               int64
}

func planCreate(virtualSize, cs int64, prealloc bool) (layout, error) {
	l := layout{cs: cs}
	l2e := cs / 8
	l.l1Entries = l1Needed(virtualSize, cs, l2e)
	if l.l1Entries*8 > maxL1Bytes {
		return l, invalid("virtual size %d too large for cluster size %d", virtualSize, cs)
	}
	l.l1Clusters = ceilDiv(l.l1Entries*8, cs)
	if prealloc {
		l.l2Clusters = l.l1Entries
		l.data = ceilDiv(virtualSize, cs)
	}
	perBlock := cs * 8 / (1 << createRefOrder)
	l.rtClusters, l.rbClusters = 1, 1
	for {
		l.total = 1 + l.rtClusters + l.rbClusters + l.l1Clusters + l.l2Clusters + l.data
		rb := max(ceilDiv(l.total, perBlock), l.rbClusters)
		rt := max(ceilDiv(rb*8, cs), l.rtClusters)
		if rb == l.rbClusters && rt == l.rtClusters {
			break
		}
		l.rbClusters, l.rtClusters = rb, rt
	}
	if l.rtClusters*cs > maxRefTableBytes {
		return l, invalid("virtual size %d too large to preallocate with cluster size %d", virtualSize, cs)
	}
	l.rtStart = 1
	l.rbStart = l.rtStart + l.rtClusters
	l.l1Start = l.rbStart + l.rbClusters
	l.l2Start = l.l1Start + l.l1Clusters
	l.dataStart = l.l2Start + l.l2Clusters
	return l, nil
}

// Create writes a new version 3 image of virtualSize bytes into the empty file f and returns the resulting
// file length. virtualSize must be a multiple of 512. With opts.BackingFile the image is an overlay of that
// file (see CreateOptions). With Preallocation "metadata" every L2 table and data
// cluster is allocated (the data clusters stay holes of the file, which read as zeros). The header is written
// last, after a Sync when f has one, so an interrupted Create leaves a file that is not mistaken for a valid
// image. Create does not sync the header itself: a caller that needs the new file durable syncs it.
// f must be empty (errkind.Invalid otherwise), so that no old content shows through preallocated clusters.
func Create(f File, virtualSize int64, opts CreateOptions) (fileSize int64, err error) {
	cs := opts.ClusterSize
	if cs == 0 {
		cs = DefaultClusterSize
	}
	if cs < 1<<minClusterBits || cs > 1<<maxClusterBits || cs&(cs-1) != 0 {
		return 0, invalid("cluster size %d must be a power of two between 512 and 2 MiB", cs)
	}
	var prealloc bool
	switch opts.Preallocation {
	case "", PreallocOff:
	case PreallocMetadata:
		prealloc = true
	default:
		return 0, invalid("preallocation %q not supported (off or metadata)", opts.Preallocation)
	}
	if virtualSize < 0 || virtualSize%512 != 0 {
		return 0, invalid("virtual size %d must be a non-negative multiple of 512", virtualSize)
	}
	if err := checkBacking(opts, cs, prealloc); err != nil {
		return 0, err
	}
	l, err := planCreate(virtualSize, cs, prealloc)
	if err != nil {
		return 0, err
	}
	// Preallocated clusters are holes that must read as zeros, and no old content may show through: insist
	// on an empty file.
	var probe [1]byte
	if n, _ := f.ReadAt(probe[:], 0); n != 0 {
		return 0, invalid("Create needs an empty file")
	}
	if err := writeMetadata(f, l); err != nil {
		return 0, err
	}
	fileSize = l.total * cs
	if prealloc && l.data > 0 {
		// The last cluster is a data cluster that stays a hole: extend the file to cover it.
		if err := writeAt(f, []byte{0}, fileSize-1, "end of file"); err != nil {
			return 0, err
		}
	}
	// Barrier, then the header: a crash never leaves a valid header over missing metadata.
	if err := syncFile(f); err != nil {
		return 0, err
	}
	hdr := make([]byte, cs)
	putHeader(hdr, virtualSize, l)
	putBacking(hdr, opts.BackingFile, opts.BackingFormat)
	if err := writeAt(f, hdr, 0, "header"); err != nil {
		return 0, err
	}
	return fileSize, nil
}

// writeMetadata writes the refcount table and blocks, the L1 table and any preallocated L2 tables, which
// occupy the consecutive clusters [1, l.dataStart).
func writeMetadata(f File, l layout) error {
	cs := l.cs
	w := newClusterWriter(f, cs, cs)
	// Refcount table.
	for i := range l.rtClusters {
		c, err := w.next()
		if err != nil {
			return err
		}
		first := i * cs / 8
		for j := int64(0); j < cs/8 && first+j < l.rbClusters; j++ {
			binary.BigEndian.PutUint64(c[j*8:], uint64((l.rbStart+first+j)*cs))
		}
	}
	// Refcount blocks: every cluster of the image is used once.
	perBlock := cs * 8 / (1 << createRefOrder)
	for i := range l.rbClusters {
		c, err := w.next()
		if err != nil {
			return err
		}
		n := min(perBlock, l.total-i*perBlock)
		for j := range n {
			binary.BigEndian.PutUint16(c[j*2:], 1)
		}
	}
	// L1 table.
	for i := range l.l1Clusters {
		c, err := w.next()
		if err != nil {
			return err
		}
		if l.l2Clusters == 0 {
			continue
		}
		first := i * cs / 8
		for j := int64(0); j < cs/8 && first+j < l.l1Entries; j++ {
			binary.BigEndian.PutUint64(c[j*8:], uint64((l.l2Start+first+j)*cs)|oflagCopied)
		}
	}
	// Preallocated L2 tables map guest cluster g to data cluster dataStart+g.
	l2e := cs / 8
	for i := range l.l2Clusters {
		c, err := w.next()
		if err != nil {
			return err
		}
		for j := int64(0); j < l2e && i*l2e+j < l.data; j++ {
			binary.BigEndian.PutUint64(c[j*8:], uint64((l.dataStart+i*l2e+j)*cs)|oflagCopied)
		}
	}
	return w.flush()
}

// putHeader fills the first cluster: the version 3 header and an empty extension list.
func putHeader(hdr []byte, virtualSize int64, l layout) {
	be := binary.BigEndian
	copy(hdr, Magic)
	be.PutUint32(hdr[4:], 3)
	be.PutUint32(hdr[20:], uint32(bits.TrailingZeros64(uint64(l.cs))))
	be.PutUint64(hdr[24:], uint64(virtualSize))
	be.PutUint32(hdr[36:], uint32(l.l1Entries))
	if l.l1Clusters > 0 {
		be.PutUint64(hdr[40:], uint64(l.l1Start*l.cs))
	}
	be.PutUint64(hdr[48:], uint64(l.rtStart*l.cs))
	be.PutUint32(hdr[56:], uint32(l.rtClusters))
	be.PutUint32(hdr[96:], createRefOrder)
	be.PutUint32(hdr[100:], createHeaderLength)
	// hdr[104] compression type zlib, hdr[112:120] end-of-extensions marker: already zero.
}

// backingNameOffset is where putBacking stores the backing file name of an overlay whose backing format is
// fmtName: after the header, the backing format extension and the end-of-extensions marker.
func backingNameOffset(fmtName string) int64 {
	return createHeaderLength + 8 + int64(len(fmtName)+7)&^7 + 8
}

// checkBacking validates the backing file options of Create.
func checkBacking(opts CreateOptions, cs int64, prealloc bool) error {
	name, format := opts.BackingFile, opts.BackingFormat
	if name == "" {
		if format != "" {
			return invalid("backing format %q given without a backing file", format)
		}
		return nil
	}
	if format != FormatQCOW2 && format != FormatRaw {
		return invalid("backing format %q not supported (qcow2 or raw)", format)
	}
	if prealloc {
		return invalid("an image with a backing file cannot be preallocated")
	}
	if len(name) > maxBackingName {
		return invalid("backing file name of %d bytes exceeds %d", len(name), maxBackingName)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return invalid("backing file name contains a NUL byte")
	}
	if colon := strings.IndexByte(name, ':'); strings.HasPrefix(name, "json:") ||
		(colon >= 0 && !strings.Contains(name[:colon], "/")) {
		return invalid("backing file name %q would be taken by QEMU for a protocol; prefix it with ./", name)
	}
	if end := backingNameOffset(format) + int64(len(name)); end > cs {
		return invalid("backing file name of %d bytes does not fit in a %d-byte cluster", len(name), cs)
	}
	return nil
}

// putBacking adds the backing file format extension and the backing file name to a header made by putHeader
// (nothing when name is empty). checkBacking has validated them.
func putBacking(hdr []byte, name, format string) {
	if name == "" {
		return
	}
	be := binary.BigEndian
	be.PutUint32(hdr[createHeaderLength:], extBackingFormat)
	be.PutUint32(hdr[createHeaderLength+4:], uint32(len(format)))
	copy(hdr[createHeaderLength+8:], format)
	off := backingNameOffset(format)
	clear(hdr[off-8 : off]) // end of extensions
	copy(hdr[off:], name)
	be.PutUint64(hdr[8:], uint64(off))
	be.PutUint32(hdr[16:], uint32(len(name)))
}
