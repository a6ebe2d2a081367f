package imagefmt

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kdomanski/iso9660"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/qcow2"
	"github.com/openvair/openvair/internal/testenv"
)

// memWriterAt is a growing in-memory io.WriterAt.
type memWriterAt struct{ b []byte }

func (m *memWriterAt) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	return copy(m.b[off:], p), nil
}

// memFile is a growing in-memory qcow2.File.
type memFile struct{ memWriterAt }

func (m *memFile) ReadAt(p []byte, off int64) (int, error) {
	return bytes.NewReader(m.b).ReadAt(p, off)
}

// isoImage builds a real ISO 9660 image holding one file.
func isoImage(t testing.TB) []byte {
	t.Helper()
	w, err := iso9660.NewWriter()
	require.NoError(t, err)
	t.Cleanup(func() { _ = w.Cleanup() })
	require.NoError(t, w.AddFile(strings.NewReader(strings.Repeat("openvair ", 10000)), "readme.txt"))
	var buf bytes.Buffer
	require.NoError(t, w.WriteTo(&buf, "OPENVAIR"))
	return buf.Bytes()
}

// handISO returns a raw-looking 48 KiB blob whose only ISO trait is a volume descriptor identifier at off.
func handISO(off int) []byte {
	b := make([]byte, 48<<10)
	b[off-1] = 1 // descriptor type: primary volume descriptor
	copy(b[off:], "CD001")
	b[off+5] = 1 // descriptor version
	return b
}

// qcow2Image returns the full content of an image made by our qcow2.Create.
func qcow2Image(t testing.TB, size int64) []byte {
	t.Helper()
	f := &memFile{}
	_, err := qcow2.Create(f, size, qcow2.CreateOptions{})
	require.NoError(t, err)
	return f.b
}

// qcow2WithBacking is a qcow2.Create image whose header names a backing file.
func qcow2WithBacking(t testing.TB) []byte {
	b := qcow2Image(t, 1<<30)
	name := "/etc/passwd"
	binary.BigEndian.PutUint64(b[8:], 512)
	binary.BigEndian.PutUint32(b[16:], uint32(len(name)))
	copy(b[512:], name)
	return b
}

// qcow2WithDataFile is a qcow2.Create image that declares an external data file.
func qcow2WithDataFile(t testing.TB) []byte {
	b := qcow2Image(t, 1<<30)
	binary.BigEndian.PutUint64(b[72:], qcow2.IncompatDataFile)
	binary.BigEndian.PutUint32(b[112:], 0x44415441)
	binary.BigEndian.PutUint32(b[116:], 8)
	copy(b[120:], "data.raw")
	return b
}

// qemuImage runs `qemu-img create` (a test oracle only) and returns the image's content.
func qemuImage(t testing.TB, args ...string) []byte {
	t.Helper()
	bin := testenv.LookPath(t, "qemu-img")
	dir := t.TempDir()
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "$DIR", dir)
	}
	path := filepath.Join(dir, "img.qcow2")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	full := append(append([]string{"create", "-q", "-f", "qcow2"}, args[:len(args)-1]...), path, args[len(args)-1])
	out, err := exec.CommandContext(ctx, bin, full...).CombinedOutput()
	require.NoError(t, err, "qemu-img %v: %s", full, out)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

// randomBytes returns n deterministic pseudo-random bytes.
func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}
