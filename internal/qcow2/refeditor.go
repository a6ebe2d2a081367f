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
