package qcow2

import (
	"encoding/binary"

	"github.com/openvair/openvair/internal/errkind"
)

// Grow enlarges the image's virtual size to newSize (refuses shrinking with errkind.Invalid), relocating and
// growing the L1 table and refcount structures as needed; fileSize is the current file length. Returns the new
// file length.
//
// New structures are appended after fileSize. The update is ordered so that a crash at any point leaves a
// consistent image (at worst with leaked clusters, which `qemu-img check -r leaks` reclaims): refcounts of new
// clusters are raised and the new L1 and refcount tables written first, then the header is switched to them in
// a single small write, and only then are the old tables' clusters freed. When f has a Sync method it is called
// between these steps.
//
// Images with unknown incompatible features (errkind.Unsupported), dirty or corrupt images (errkind.Invalid),
// images with persistent dirty bitmaps and version 2 images with internal snapshots (errkind.Unsupported) are
// refused. Other autoclear feature bits are cleared, as the format requires of a program that does not
// maintain what they describe.
func Grow(f File, fileSize, newSize int64) (newFileSize int64, err error) {
	h, err := ReadHeader(f)
	if err != nil {
		return 0, err
	}
	if unknown := h.IncompatibleFeatures &^ IncompatKnown; unknown != 0 {
		return 0, errkind.New(errkind.Unsupported, "qcow2", "", "image has unknown incompatible features %#x", unknown)
	}
	if h.Dirty || h.Corrupt {
		return 0, invalid("image is marked dirty or corrupt; repair it with qemu-img check -r all first")
	}
	if h.AutoclearFeatures&AutoclearBitmaps != 0 {
		// Clearing the bit would turn the bitmaps' clusters into leaks; resizing bitmaps is not implemented.
		return 0, errkind.New(errkind.Unsupported, "qcow2", "", "cannot resize an image with persistent dirty bitmaps")
	}
	if h.Version == 2 && h.NbSnapshots > 0 {
		return 0, errkind.New(errkind.Unsupported, "qcow2", "", "cannot resize a version 2 image with internal snapshots")
	}
	if newSize < h.VirtualSize {
		return 0, invalid("cannot shrink image from %d to %d bytes", h.VirtualSize, newSize)
	}
	if newSize%512 != 0 {
		return 0, invalid("new size %d is not a multiple of 512", newSize)
	}
	if newSize == h.VirtualSize {
		return fileSize, nil
	}
	p, err := planGrow(f, h, fileSize, newSize)
	if err != nil {
		return 0, err
	}
	if err := p.apply(); err != nil {
		return 0, err
	}
	return max(fileSize, p.end*h.ClusterSize), nil
}

// growPlan is the set of changes Grow makes, in clusters.
type growPlan struct {
	f             File
	h             *Header
	ed            *refEditor
	newSize       int64
	l1Entries     int64 // new L1 size
	l1Start       int64 // new L1 table cluster (when relocating)
	l1Clusters    int64 // clusters of the new L1 table, 0 when it stays in place
	oldL1Clusters int64
	newBlocks     []int64 // refcount block indexes created, stored from cluster rbStart on
	rbStart       int64
	rtStart       int64 // new refcount table cluster (when relocating)
	rtClusters    int64 // clusters of the new refcount table, 0 when it stays in place
	end           int64 // first cluster after everything the plan allocates
}

func planGrow(f File, h *Header, fileSize, newSize int64) (*growPlan, error) {
	cs := h.ClusterSize
	p := &growPlan{f: f, h: h, newSize: newSize}
	p.l1Entries = l1Needed(newSize, cs, h.L2Entries())
	if p.l1Entries*8 > maxL1Bytes {
		return nil, invalid("new size %d too large for cluster size %d", newSize, cs)
	}
	p.oldL1Clusters = ceilDiv(int64(h.L1Size)*8, cs)
	if h.L1Size == 0 {
		p.oldL1Clusters = 0
	}
	first := ceilDiv(fileSize, cs) // first free cluster
	oldRTEnd := h.RefcountTableOffset/cs + int64(h.RefcountTableClusters)
	if first <= 0 || first < h.L1TableOffset/cs+p.oldL1Clusters || first < oldRTEnd {
		return nil, invalid("file size %d is smaller than the image's metadata", fileSize)
	}
	ed, err := loadRefEditor(f, h)
	if err != nil {
		return nil, err
	}
	p.ed = ed
	// Clusters past the file's end may still be counted as used: leaks of an interrupted Grow, or a stale
	// fileSize. Start after the last used one.
	if first, err = ed.firstFreeTail(first); err != nil {
		return nil, err
	}

	if p.l1Entries > p.oldL1Clusters*cs/8 {
		p.l1Clusters = ceilDiv(p.l1Entries*8, cs)
	}
	p.l1Start = first
	p.rbStart = first + p.l1Clusters
	// New refcount blocks and a larger refcount table may be needed to count the new clusters, including
	// themselves: iterate until the counts stop changing (they only grow).
	var blocks, rtClusters int64
	for {
		end := first + p.l1Clusters + blocks + rtClusters
		var missing []int64
		for bi := first / ed.perBlock; bi <= (end-1)/ed.perBlock && end > first; bi++ {
			if !ed.hasBlock(bi) {
				missing = append(missing, bi)
			}
		}
		newRT := int64(0)
		if n := len(missing); n > 0 && missing[n-1] >= int64(len(ed.table)) {
			newRT = ceilDiv((missing[n-1]+1)*8, cs)
		}
		if int64(len(missing)) == blocks && newRT == rtClusters {
			p.newBlocks = missing
			break
		}
		blocks, rtClusters = max(blocks, int64(len(missing))), max(rtClusters, newRT)
	}
	if rtClusters*cs > maxRefTableBytes {
		return nil, invalid("refcount table would exceed %d bytes", maxRefTableBytes)
	}
	p.rtClusters = rtClusters
	p.rtStart = p.rbStart + int64(len(p.newBlocks))
	p.end = p.rtStart + p.rtClusters

	// The clusters we will free must be in use.
	for _, c := range p.freed() {
		n, err := ed.get(c)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, invalid("metadata cluster %d has refcount 0", c)
		}
	}
	return p, nil
}

// freed lists the clusters of the tables being replaced.
func (p *growPlan) freed() []int64 {
	var out []int64
	cs := p.h.ClusterSize
	if p.l1Clusters > 0 {
		for i := range p.oldL1Clusters {
			out = append(out, p.h.L1TableOffset/cs+i)
		}
	}
	if p.rtClusters > 0 {
		for i := range int64(p.h.RefcountTableClusters) {
			out = append(out, p.h.RefcountTableOffset/cs+i)
		}
	}
	return out
}

func (p *growPlan) apply() error {
	h, ed, cs := p.h, p.ed, p.h.ClusterSize
	l1Off, rtOff, rtClusters := h.L1TableOffset, h.RefcountTableOffset, int64(h.RefcountTableClusters)

	// 1. The L1 table: a copy in new clusters, or zeroed new entries in the clusters it already has.
	if p.l1Clusters > 0 {
		l1 := make([]byte, p.l1Clusters*cs)
		if h.L1Size > 0 {
			if err := readAt(p.f, l1[:int64(h.L1Size)*8], h.L1TableOffset, "L1 table"); err != nil {
				return err
			}
		}
		l1Off = p.l1Start * cs
		if err := writeAt(p.f, l1, l1Off, "new L1 table"); err != nil {
			return err
		}
	} else if p.l1Entries > int64(h.L1Size) {
		zero := make([]byte, (p.l1Entries-int64(h.L1Size))*8)
		if err := writeAt(p.f, zero, h.L1TableOffset+int64(h.L1Size)*8, "L1 table entries"); err != nil {
			return err
		}
	}

	// 2. Refcounts of every new cluster, in new and existing refcount blocks.
	for i, bi := range p.newBlocks {
		ed.addBlock(bi, p.rbStart+int64(i))
	}
	for c := p.l1Start; c < p.end; c++ {
		if err := ed.add(c, 1); err != nil {
			return err
		}
	}
	if err := ed.flush(); err != nil {
		return err
	}

	// 3. The refcount table: a larger copy, or the new entries written in place.
	if p.rtClusters > 0 {
		rtOff, rtClusters = p.rtStart*cs, p.rtClusters
		if err := writeAt(p.f, ed.tableBytes(p.rtClusters), rtOff, "new refcount table"); err != nil {
			return err
		}
	} else {
		for _, bi := range p.newBlocks {
			var e [8]byte
			binary.BigEndian.PutUint64(e[:], ed.table[bi])
			if err := writeAt(p.f, e[:], rtOff+bi*8, "refcount table entry"); err != nil {
				return err
			}
		}
	}
	if h.Version >= 3 && h.AutoclearFeatures != 0 {
		if err := writeAt(p.f, make([]byte, 8), 88, "autoclear features"); err != nil {
			return err
		}
	}
	if err := syncFile(p.f); err != nil {
		return err
	}

	// 4. Switch: one write of header bytes 24..60 (size, L1 and refcount table pointers).
	var sw [36]byte
	be := binary.BigEndian
	be.PutUint64(sw[0:], uint64(p.newSize))
	be.PutUint32(sw[8:], h.CryptMethod)
	be.PutUint32(sw[12:], uint32(max(p.l1Entries, int64(h.L1Size))))
	be.PutUint64(sw[16:], uint64(l1Off))
	be.PutUint64(sw[24:], uint64(rtOff))
	be.PutUint32(sw[32:], uint32(rtClusters))
	if err := writeAt(p.f, sw[:], 24, "header"); err != nil {
		return err
	}
	if err := syncFile(p.f); err != nil {
		return err
	}

	// 5. Free the replaced tables.
	for _, c := range p.freed() {
		if err := ed.add(c, -1); err != nil {
			return err
		}
	}
	if err := ed.flush(); err != nil {
		return err
	}
	return syncFile(p.f)
}
