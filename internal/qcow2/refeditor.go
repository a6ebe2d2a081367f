package qcow2

import (
	"encoding/binary"
	"fmt"
)

// reftOffsetMask keeps the offset bits of a refcount table entry (bits 0-8 are reserved).
const reftOffsetMask = ^uint64(511)

// refEditor reads and changes refcounts through the image's refcount table, keeping the blocks it touched
// in memory until flush.
type refEditor struct {
	f        File
	cs       int64
	order    uint32
	perBlock int64
	table    []uint64 // refcount table entries, possibly extended by addBlock
	blocks   map[int64][]byte
	dirty    map[int64]bool
}

func loadRefEditor(f File, h *Header) (*refEditor, error) {
	e := &refEditor{
		f: f, cs: h.ClusterSize, order: h.RefcountOrder,
		perBlock: h.ClusterSize * 8 >> h.RefcountOrder,
		blocks:   map[int64][]byte{}, dirty: map[int64]bool{},
	}
	raw := make([]byte, int64(h.RefcountTableClusters)*h.ClusterSize)
	if err := readAt(f, raw, h.RefcountTableOffset, "refcount table"); err != nil {
		return nil, err
	}
	e.table = make([]uint64, len(raw)/8)
	for i := range e.table {
		off := binary.BigEndian.Uint64(raw[i*8:]) & reftOffsetMask
		if off%uint64(e.cs) != 0 {
			return nil, invalid("refcount block %d at unaligned offset %#x", i, off)
		}
		e.table[i] = off
	}
	return e, nil
}

// hasBlock reports whether refcount block bi exists.
func (e *refEditor) hasBlock(bi int64) bool { return bi < int64(len(e.table)) && e.table[bi] != 0 }

// block returns the content of refcount block bi, reading it on first use.
func (e *refEditor) block(bi int64) ([]byte, error) {
	if b, ok := e.blocks[bi]; ok {
		return b, nil
	}
	if !e.hasBlock(bi) {
		return nil, invalid("cluster %d has no refcount block", bi*e.perBlock)
	}
	b := make([]byte, e.cs)
	if err := readAt(e.f, b, int64(e.table[bi]), "refcount block"); err != nil {
		return nil, err
	}
	e.blocks[bi] = b
	return b, nil
}

// addBlock records a new, empty refcount block bi stored in cluster c.
func (e *refEditor) addBlock(bi, c int64) {
	for int64(len(e.table)) <= bi {
		e.table = append(e.table, 0)
	}
	e.table[bi] = uint64(c * e.cs)
	e.blocks[bi] = make([]byte, e.cs)
	e.dirty[bi] = true
}

// get returns the refcount of cluster c; clusters without a refcount block have refcount 0.
func (e *refEditor) get(c int64) (uint64, error) {
	bi := c / e.perBlock
	if !e.hasBlock(bi) {
		return 0, nil
	}
	b, err := e.block(bi)
	if err != nil {
		return 0, err
	}
	return refcountGet(b, c%e.perBlock, e.order), nil
}

// add changes the refcount of cluster c by delta, refusing underflow and overflow.
func (e *refEditor) add(c, delta int64) error {
	bi := c / e.perBlock
	b, err := e.block(bi)
	if err != nil {
		return err
	}
	v := refcountGet(b, c%e.perBlock, e.order)
	nv := v + uint64(delta)
	if (delta < 0 && v < uint64(-delta)) || (delta > 0 && (nv < v || nv > refcountMax(e.order))) {
		return invalid("refcount of cluster %d would go from %d out of range by %+d", c, v, delta)
	}
	refcountSet(b, c%e.perBlock, e.order, nv)
	e.dirty[bi] = true
	return nil
}

// flush writes every changed block.
func (e *refEditor) flush() error {
	for bi := range e.dirty {
		if err := writeAt(e.f, e.blocks[bi], int64(e.table[bi]), fmt.Sprintf("refcount block %d", bi)); err != nil {
			return err
		}
		delete(e.dirty, bi)
	}
	return nil
}

// tableBytes encodes the first n clusters' worth of refcount table entries.
func (e *refEditor) tableBytes(clusters int64) []byte {
	raw := make([]byte, clusters*e.cs)
	for i, off := range e.table {
		if int64(i*8) >= int64(len(raw)) {
			break
		}
		binary.BigEndian.PutUint64(raw[i*8:], off)
	}
	return raw
}

// firstFreeTail returns the first cluster at or after from such that it and every later cluster have
// refcount 0. It reads the refcount blocks that cover clusters from "from" on, each distinct block once, so
// its work is bounded by the file's size even for a hostile refcount table.
func (e *refEditor) firstFreeTail(from int64) (int64, error) {
	first := from
	seen := map[uint64]bool{}
	scratch := make([]byte, e.cs)
	for bi := from / e.perBlock; bi < int64(len(e.table)); bi++ {
		if !e.hasBlock(bi) || seen[e.table[bi]] {
			continue
		}
		seen[e.table[bi]] = true
		b, ok := e.blocks[bi]
		if !ok {
			if err := readAt(e.f, scratch, int64(e.table[bi]), "refcount block"); err != nil {
				return 0, err
			}
			b = scratch
		}
		if last := lastUsed(b, e.order); last >= 0 && bi*e.perBlock+last >= first {
			first = bi*e.perBlock + last + 1
		}
	}
	return first, nil
}

// lastUsed returns the index of the last non-zero entry of a refcount block, or -1.
func lastUsed(b []byte, order uint32) int64 {
	j := len(b) - 1
	for j >= 8 && binary.LittleEndian.Uint64(b[j-7:]) == 0 {
		j -= 8
	}
	for j >= 0 && b[j] == 0 {
		j--
	}
	if j < 0 {
		return -1
	}
	bits := int64(1) << order
	for i := (int64(j)*8 + 7) / bits; i >= int64(j)*8/bits; i-- {
		if refcountGet(b, i, order) != 0 {
			return i
		}
	}
	return -1 // not reached: byte j holds a non-zero entry
}
