package drivertest

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/qcow2"
	"github.com/openvair/openvair/internal/testenv"
)

// stPatternReader is an endless (or, with io.LimitReader, bounded) fast deterministic byte stream. After
// `after` bytes it calls hook once (for example to cancel the upload's context).
type stPatternReader struct {
	seed  uint64
	n     int64
	after int64
	hook  func()
}

func (r *stPatternReader) Read(p []byte) (int, error) {
	if r.hook != nil && r.n >= r.after {
		r.hook()
		r.hook = nil
	}
	x := r.seed*0x9E3779B97F4A7C15 + uint64(r.n) + 1
	i := 0
	for ; i+8 <= len(p); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(p[i:], x)
	}
	for ; i < len(p); i++ {
		p[i] = byte(x >> (8 * (i % 8)))
	}
	r.n += int64(len(p))
	return len(p), nil
}

// stPattern returns n deterministic bytes.
func stPattern(n int64, seed uint64) []byte {
	b := make([]byte, n)
	_, _ = (&stPatternReader{seed: seed}).Read(b)
	return b
}

// stISO builds a minimal ISO 9660 image of size bytes (a multiple of 2048): primary volume descriptor,
// terminator, path tables and a root directory, then filler.
func stISO(t *testing.T, size int64) []byte {
	t.Helper()
	const sector = 2048
	require.Zero(t, size%sector)
	img := stPattern(size, 7)
	clear(img[:21*sector])
	both32 := func(b []byte, v uint32) {
		binary.LittleEndian.PutUint32(b, v)
		binary.BigEndian.PutUint32(b[4:], v)
	}
	both16 := func(b []byte, v uint16) {
		binary.LittleEndian.PutUint16(b, v)
		binary.BigEndian.PutUint16(b[2:], v)
	}
	dirRecord := func(b []byte, name byte) {
		b[0] = 34
		both32(b[2:], 20)      // extent of the root directory
		both32(b[10:], sector) // its length
		b[18], b[19], b[20] = 126, 1, 1
		b[25] = 2 // directory
		both16(b[28:], 1)
		b[32] = 1
		b[33] = name
	}
	pvd := img[16*sector : 17*sector]
	pvd[0] = 1
	copy(pvd[1:], "CD001")
	pvd[6] = 1
	copy(pvd[8:40], bytes.Repeat([]byte(" "), 32))
	copy(pvd[40:72], []byte("CIDATA                          "))
	both32(pvd[80:], uint32(size/sector))
	both16(pvd[120:], 1)
	both16(pvd[124:], 1)
	both16(pvd[128:], sector)
	both32(pvd[132:], 10)
	binary.LittleEndian.PutUint32(pvd[140:], 18)
	binary.BigEndian.PutUint32(pvd[148:], 19)
	dirRecord(pvd[156:], 0)
	pvd[881] = 1
	term := img[17*sector : 18*sector]
	term[0] = 255
	copy(term[1:], "CD001")
	term[6] = 1
	lpt := img[18*sector:]
	lpt[0] = 1
	binary.LittleEndian.PutUint32(lpt[2:], 20)
	binary.LittleEndian.PutUint16(lpt[6:], 1)
	mpt := img[19*sector:]
	mpt[0] = 1
	binary.BigEndian.PutUint32(mpt[2:], 20)
	binary.BigEndian.PutUint16(mpt[6:], 1)
	root := img[20*sector:]
	dirRecord(root, 0)
	dirRecord(root[34:], 1)
	return img
}

// stQCOW2Opts makes stQCOW2 build hostile images.
type stQCOW2Opts struct {
	backing     string // backing file name to record in the header
	dataFileBit bool   // set the external data file incompatible feature
}

// stQCOW2 returns the bytes of a qcow2 image of virtualSize bytes written by internal/qcow2, optionally
// patched to reference a backing file or an external data file.
func stQCOW2(t *testing.T, virtualSize int64, o *stQCOW2Opts) []byte {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "image.qcow2"))
	require.NoError(t, err)
	defer f.Close()
	_, err = qcow2.Create(f, virtualSize, qcow2.CreateOptions{})
	require.NoError(t, err)
	b, err := os.ReadFile(f.Name())
	require.NoError(t, err)
	if o != nil && o.backing != "" {
		const nameAt = 1024 // inside the first cluster, after the header and its extensions
		binary.BigEndian.PutUint64(b[8:], nameAt)
		binary.BigEndian.PutUint32(b[16:], uint32(len(o.backing)))
		copy(b[nameAt:], o.backing)
	}
	if o != nil && o.dataFileBit {
		binary.BigEndian.PutUint64(b[72:], binary.BigEndian.Uint64(b[72:])|qcow2.IncompatDataFile)
	}
	return b
}

// stCheckImageFile compares a file disk source with the uploaded content.
func stCheckImageFile(t *testing.T, src driver.DiskSource, content []byte) {
	t.Helper()
	if src.Type != "file" {
		return
	}
	require.True(t, filepath.IsAbs(src.Path))
	got, err := os.ReadFile(src.Path)
	require.NoError(t, err)
	require.Equal(t, sha256.Sum256(content), sha256.Sum256(got), "stored image differs from the upload")
}

// stQemuImgCheck checks a volume file with qemu-img: `info` must report its format and virtual size, and
// `check` (qcow2 only) must find no error or leak.
func stQemuImgCheck(t *testing.T, path, format string, size int64) {
	t.Helper()
	t.Run("qemu-img", func(t *testing.T) {
		bin := testenv.LookPath(t, "qemu-img")
		ctx := stCtx(t)
		out, err := exec.CommandContext(ctx, bin, "info", "--output=json", "-f", format, path).Output()
		require.NoError(t, err, "qemu-img info %s: %s", path, stStderr(err))
		var info struct {
			Format      string `json:"format"`
			VirtualSize int64  `json:"virtual-size"`
		}
		require.NoError(t, json.Unmarshal(out, &info))
		require.Equal(t, format, info.Format)
		require.Equal(t, size, info.VirtualSize)
		if format != string(driver.FormatQCOW2) {
			return
		}
		out, err = exec.CommandContext(ctx, bin, "check", "--output=json", "-f", format, path).Output()
		require.NoError(t, err, "qemu-img check %s: %s %s", path, out, stStderr(err))
		var check struct {
			CheckErrors int   `json:"check-errors"`
			Leaks       int   `json:"leaks"`
			Corruptions int   `json:"corruptions"`
			ImageEnd    int64 `json:"image-end-offset"`
		}
		require.NoError(t, json.Unmarshal(out, &check))
		require.Zero(t, check.CheckErrors+check.Leaks+check.Corruptions, "qemu-img check: %s", out)
	})
}

func stStderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
