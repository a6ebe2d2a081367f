package qcow2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	for _, o := range []CreateOptions{
		{ClusterSize: 512, BackingFile: "volume-base", BackingFormat: FormatRaw},
		{ClusterSize: 512, BackingFile: strings.Repeat("b", 300), BackingFormat: FormatQCOW2},
		{BackingFile: "/abs/base.qcow2", BackingFormat: FormatQCOW2},
	} {
		ov := &memFile{}
		if _, err := Create(ov, 10*miB, o); err != nil {
			f.Fatal(err)
		}
		f.Add(ov.Bytes(min(ov.Len(), 4096)))
	}

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

// overlaySeeds returns small overlays: made by Create over a raw and a qcow2 base (with an L2 table and a data
// cluster added by hand), and, when qemu-img and qemu-io are installed, made and written by QEMU.
func overlaySeeds(f *testing.F) [][]byte {
	f.Helper()
	var seeds [][]byte
	for _, format := range []string{FormatRaw, FormatQCOW2} {
		m := &memFile{}
		if _, err := Create(m, 64*kiB, CreateOptions{ClusterSize: 512, BackingFile: "base", BackingFormat: format}); err != nil {
			f.Fatal(err)
		}
		h, err := ReadHeader(m)
		if err != nil {
			f.Fatal(err)
		}
		end := m.Len()
		var e [8]byte
		binary.BigEndian.PutUint64(e[:], uint64(end)|oflagCopied)
		_, _ = m.WriteAt(e[:], h.L1TableOffset)
		binary.BigEndian.PutUint64(e[:], uint64(end+512)|oflagCopied)
		_, _ = m.WriteAt(e[:], end+8) // guest cluster 1 is data
		binary.BigEndian.PutUint64(e[:], l2FlagZero)
		_, _ = m.WriteAt(e[:], end+16) // guest cluster 2 is zero
		_, _ = m.WriteAt(bytes.Repeat([]byte{0xab}, 512), end+512)
		seeds = append(seeds, m.Bytes(m.Len()))
	}
	img, err1 := exec.LookPath("qemu-img")
	qio, err2 := exec.LookPath("qemu-io")
	if err1 != nil || err2 != nil {
		return seeds
	}
	dir := f.TempDir()
	base := filepath.Join(dir, "base")
	ov := filepath.Join(dir, "ov.qcow2")
	if err := os.WriteFile(base, bytes.Repeat([]byte{1}, 64*1024), 0o600); err != nil {
		f.Fatal(err)
	}
	if out, err := runCmd(img, "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", "-b", "base", "-F", "raw", ov); err != nil {
		f.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	if out, err := runCmd(qio, "-f", "qcow2", "-c", "write -P 0xab 1000 3000", "-c", "write -z 8192 512", ov); err != nil {
		f.Fatalf("qemu-io: %v\n%s", err, out)
	}
	b, err := os.ReadFile(ov)
	if err != nil {
		f.Fatal(err)
	}
	return append(seeds, b)
}

// FuzzReaderWithBacking feeds arbitrary bytes to NewReaderWithBacking, with an opener that serves the same
// bytes again for names starting with "q" (chains and loops) and a small raw file for others, then reads
// and maps what it accepts: it must never panic, and every error must be of a known kind. NewReader must
// refuse every input that has a backing file.
func FuzzReaderWithBacking(f *testing.F) {
	for _, s := range overlaySeeds(f) {
		f.Add(s)
	}
	f.Add(withBacking(f, "qbase"))
	f.Add(withBacking(f, "base"))

	known := func(err error) bool {
		return err == nil || errors.Is(err, io.EOF) || errors.Is(err, errkind.Invalid) ||
			errors.Is(err, errkind.Unsupported) || errors.Is(err, errkind.NotFound)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if h, err := ReadHeader(bytes.NewReader(data)); err == nil && h.BackingFile != "" {
			if _, err := NewReader(bytes.NewReader(data)); !errors.Is(err, errkind.Unsupported) {
				t.Fatalf("NewReader accepted an image with a backing file: %v", err)
			}
		}
		open := func(name string) (io.ReaderAt, error) {
			switch {
			case strings.HasPrefix(name, "q"):
				return bytes.NewReader(data), nil
			case name == "missing":
				return nil, fmt.Errorf("open %s: %w", name, os.ErrNotExist)
			}
			return bytes.NewReader(bytes.Repeat([]byte{7}, 3000)), nil
		}
		rd, err := NewReaderWithBacking(bytes.NewReader(data), open)
		if err != nil {
			if !known(err) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			if rd != nil {
				t.Fatal("reader returned with an error")
			}
			return
		}
		defer func() { _ = rd.Close() }()
		size := rd.Size()
		cs := rd.h.ClusterSize
		for _, off := range []int64{0, 1, cs - 1, cs, size / 2, size - 1, size, -1} {
			p := make([]byte, min(3*cs/2+1, 4097))
			n, err := rd.ReadAt(p, off)
			if !known(err) {
				t.Fatalf("ReadAt(%d): unexpected error kind: %v", off, err)
			}
			if n < 0 || n > len(p) || (err == nil && n != len(p)) {
				t.Fatalf("ReadAt(%d) = %d bytes, %v", off, n, err)
			}
			if off < 0 || off >= size {
				continue
			}
			limit := min(size, off+64*cs)
			s, e, err := rd.DataRange(off, limit)
			if !known(err) {
				t.Fatalf("DataRange(%d): unexpected error kind: %v", off, err)
			}
			if err == nil && (s < off || s > limit || e < s || e > limit || (s == limit) != (e == limit && s == e)) {
				t.Fatalf("DataRange(%d, %d) = [%d, %d)", off, limit, s, e)
			}
		}
	})
}
