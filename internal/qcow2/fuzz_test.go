package qcow2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/openvair/openvair/internal/errkind"
)

// FuzzReadHeader feeds arbitrary bytes to ReadHeader: it must never panic, every error must be Invalid,
// and every accepted header must satisfy the invariants Grow relies on.
func FuzzReadHeader(f *testing.F) {
	valid := validHeader(f)
	f.Add(valid)
	f.Add(withBacking(f, "/var/lib/images/base.qcow2"))
	for _, n := range []int{0, 3, 4, 20, 71, 72, 100, 104, 112, 119, 120} {
		f.Add(valid[:n])
	}
	v2 := bytes.Clone(valid[:512])
	binary.BigEndian.PutUint32(v2[4:], 2)
	f.Add(v2)
	dataFile := bytes.Clone(valid)
	binary.BigEndian.PutUint64(dataFile[72:], IncompatDataFile)
	binary.BigEndian.PutUint32(dataFile[112:], extDataFile)
	binary.BigEndian.PutUint32(dataFile[116:], 8)
	copy(dataFile[120:], "data.raw")
	f.Add(dataFile)
	mem := &memFile{}
	if _, err := Create(mem, 10*giB, CreateOptions{}); err != nil {
		f.Fatal(err)
	}
	f.Add(mem.Bytes(4096))

	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ReadHeader(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, errkind.Invalid) {
				t.Fatalf("error does not wrap Invalid: %v", err)
			}
			if h != nil {
				t.Fatal("header returned with an error")
			}
			return
		}
		if h.ClusterSize != 1<<h.ClusterBits || h.ClusterSize < 512 || h.ClusterSize > 2<<20 {
			t.Fatalf("bad cluster size %d", h.ClusterSize)
		}
		if h.VirtualSize < 0 || int64(h.L1Size) < l1Needed(h.VirtualSize, h.ClusterSize, h.L2Entries()) {
			t.Fatalf("L1 size %d too small for %d", h.L1Size, h.VirtualSize)
		}
		if h.L1TableOffset%h.ClusterSize != 0 || h.RefcountTableOffset%h.ClusterSize != 0 || h.RefcountTableOffset == 0 {
			t.Fatal("unaligned tables accepted")
		}
		if h.RefcountOrder > 6 || len(h.BackingFile) > maxBackingName {
			t.Fatal("out of range field accepted")
		}
		// Grow must not panic either on anything ReadHeader accepts (kept to small tables so that fuzzing
		// stays fast).
		if int64(h.L1Size)*8 > 1<<20 || int64(h.RefcountTableClusters)*h.ClusterSize > 1<<20 || h.ClusterSize > 1<<16 {
			return
		}
		g := &memFile{}
		_, _ = g.WriteAt(data, 0)
		_, _ = Grow(g, int64(len(data)), h.VirtualSize+h.ClusterSize*h.L2Entries())
	})
}
