package imagefmt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
)

// copier runs Copy or CopyAt into memory and returns what was written.
type copier struct {
	name string
	run  func(ctx context.Context, r io.Reader, maxSize int64) (driver.ImageInfo, []byte, error)
}

var copiers = []copier{
	{"Copy", func(ctx context.Context, r io.Reader, maxSize int64) (driver.ImageInfo, []byte, error) {
		var w bytes.Buffer
		info, err := Copy(ctx, &w, r, maxSize)
		return info, w.Bytes(), err
	}},
	{"CopyAt", func(ctx context.Context, r io.Reader, maxSize int64) (driver.ImageInfo, []byte, error) {
		var w memWriterAt
		info, err := CopyAt(ctx, &w, r, maxSize)
		return info, w.b, err
	}},
}

// readers wraps the input the way slow or odd sources deliver it.
var readers = []struct {
	name string
	wrap func(io.Reader) io.Reader
}{
	{"plain", func(r io.Reader) io.Reader { return r }},
	{"half", iotest.HalfReader},
	{"data with EOF", iotest.DataErrReader},
	{"one byte", iotest.OneByteReader},
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestCopyFormatsAndHash(t *testing.T) {
	inputs := []struct {
		name string
		data func(t *testing.T) []byte
		want driver.ImageFormat
		big  bool // skip the one-byte reader
	}{
		{"empty", func(*testing.T) []byte { return nil }, driver.ImageRaw, false},
		{"one byte", func(*testing.T) []byte { return []byte{7} }, driver.ImageRaw, false},
		{"raw random", func(*testing.T) []byte { return randomBytes(100_003, 3) }, driver.ImageRaw, false},
		{"raw over several buffers", func(*testing.T) []byte { return randomBytes(2*BufferSize+12345, 4) }, driver.ImageRaw, true},
		{"iso", func(t *testing.T) []byte { return isoImage(t) }, driver.ImageISO, false},
		{"qcow2 from our Create", func(t *testing.T) []byte { return qcow2Image(t, 10<<30) }, driver.ImageQCOW2, false},
		{"qcow2 from qemu-img", func(t *testing.T) []byte { return qemuImage(t, "1G") }, driver.ImageQCOW2, false},
		{"qcow2 preallocated by qemu-img", func(t *testing.T) []byte { return qemuImage(t, "-o", "preallocation=metadata", "5M") }, driver.ImageQCOW2, true},
	}
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			data := in.data(t)
			for _, c := range copiers {
				for _, rd := range readers {
					if in.big && rd.name == "one byte" {
						continue
					}
					t.Run(c.name+"/"+rd.name, func(t *testing.T) {
						info, out, err := c.run(context.Background(), rd.wrap(bytes.NewReader(data)), 0)
						require.NoError(t, err)
						assert.Equal(t, in.want, info.Format)
						assert.Equal(t, int64(len(data)), info.Size)
						assert.Equal(t, sha(data), info.SHA256)
						assert.True(t, bytes.Equal(data, out), "output equals input")
					})
				}
			}
		})
	}
}

func TestCopyRefusesQCOW2(t *testing.T) {
	inputs := []struct {
		name string
		data func(t *testing.T) []byte
	}{
		{"backing file (hand-made)", qcow2WithBackingT},
		{"data file (hand-made)", qcow2WithDataFileT},
		{"backing file (qemu-img)", func(t *testing.T) []byte {
			return qemuImage(t, "-b", "/nonexistent/base.qcow2", "-F", "qcow2", "-u", "1G")
		}},
		{"data file (qemu-img)", func(t *testing.T) []byte { return qemuImage(t, "-o", "data_file=$DIR/data.raw", "1G") }},
		{"data file raw (qemu-img)", func(t *testing.T) []byte { return qemuImage(t, "-o", "data_file=$DIR/data.raw,data_file_raw=on", "1G") }},
		{"truncated header", func(t *testing.T) []byte { return qcow2Image(t, 1<<30)[:90] }},
		{"corrupt header", func(t *testing.T) []byte { b := qcow2Image(t, 1<<30); b[20] = 40; return b }},
	}
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			data := in.data(t)
			for _, c := range copiers {
				for _, rd := range readers[:3] {
					t.Run(c.name+"/"+rd.name, func(t *testing.T) {
						info, out, err := c.run(context.Background(), rd.wrap(bytes.NewReader(data)), 0)
						require.ErrorIs(t, err, errkind.Invalid)
						assert.Equal(t, driver.ImageQCOW2, info.Format)
						assert.Empty(t, out, "nothing written before the header is checked")
					})
				}
			}
		})
	}
}

func qcow2WithBackingT(t *testing.T) []byte  { return qcow2WithBacking(t) }
func qcow2WithDataFileT(t *testing.T) []byte { return qcow2WithDataFile(t) }

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func TestCopyMaxSize(t *testing.T) {
	for _, size := range []int{1, 1000, BufferSize - 1, BufferSize, BufferSize + 1, 3*BufferSize + 17} {
		data := randomBytes(size, uint64(size))
		for _, c := range copiers {
			for _, rd := range readers[:3] {
				t.Run(c.name+"/"+rd.name, func(t *testing.T) {
					// Exactly maxSize bytes pass.
					info, out, err := c.run(context.Background(), rd.wrap(bytes.NewReader(data)), int64(size))
					require.NoError(t, err, "size %d", size)
					assert.Equal(t, int64(size), info.Size)
					assert.Equal(t, sha(data), info.SHA256)
					assert.Len(t, out, size)

					// One byte more fails, having read no more than that byte.
					cr := &countingReader{r: rd.wrap(bytes.NewReader(data))}
					_, out, err = c.run(context.Background(), cr, int64(size-1))
					if size == 1 {
						require.NoError(t, err, "maxSize 0 means no limit")
						return
					}
					require.ErrorIs(t, err, errkind.TooLarge, "size %d", size)
					assert.Equal(t, int64(size), cr.n, "read exactly maxSize+1 bytes")
					assert.LessOrEqual(t, len(out), size-1, "never more than maxSize bytes written")
				})
			}
		}
	}
}

func TestCopyLimitStopsEndlessInput(t *testing.T) {
	cr := &countingReader{r: zeroReader{}}
	_, err := Copy(context.Background(), io.Discard, cr, 5*BufferSize+3)
	require.ErrorIs(t, err, errkind.TooLarge)
	assert.Equal(t, int64(5*BufferSize+4), cr.n)
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// cancelReader cancels a context once it has delivered after bytes.
type cancelReader struct {
	r      io.Reader
	after  int64
	n      int64
	cancel context.CancelFunc
}

func (c *cancelReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n >= c.after {
		c.cancel()
	}
	return n, err
}

func TestCopyContext(t *testing.T) {
	data := randomBytes(4*BufferSize, 9)
	for _, c := range copiers {
		t.Run(c.name+"/cancelled before", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			cr := &countingReader{r: bytes.NewReader(data)}
			_, out, err := c.run(ctx, cr, 0)
			require.ErrorIs(t, err, context.Canceled)
			assert.Zero(t, cr.n, "nothing read")
			assert.Empty(t, out)
		})
		t.Run(c.name+"/cancelled during", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			r := &cancelReader{r: bytes.NewReader(data), after: BufferSize + 1, cancel: cancel}
			_, out, err := c.run(ctx, r, 0)
			require.ErrorIs(t, err, context.Canceled)
			assert.Equal(t, int64(2*BufferSize), r.n, "stops at the next buffer")
			assert.Len(t, out, 2*BufferSize)
		})
	}
}

// failingWriter fails its second write.
type failingWriter struct{ writes int }

var errDisk = errors.New("disk full")

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.writes++; f.writes == 2 {
		return 0, errDisk
	}
	return len(p), nil
}

// shortWriter claims to write less than asked without an error.
type shortWriter struct{}

func (shortWriter) Write(p []byte) (int, error) { return len(p) / 2, nil }

// stuckReader returns (0, nil) forever.
type stuckReader struct{}

func (stuckReader) Read([]byte) (int, error) { return 0, nil }

func TestCopyErrors(t *testing.T) {
	data := randomBytes(3*BufferSize, 5)
	t.Run("write error", func(t *testing.T) {
		_, err := Copy(context.Background(), &failingWriter{}, bytes.NewReader(data), 0)
		require.ErrorIs(t, err, errDisk)
	})
	t.Run("short write", func(t *testing.T) {
		_, err := Copy(context.Background(), shortWriter{}, bytes.NewReader(data), 0)
		require.ErrorIs(t, err, io.ErrShortWrite)
	})
	t.Run("read error", func(t *testing.T) {
		r := io.MultiReader(bytes.NewReader(data[:BufferSize+10]), iotest.ErrReader(iotest.ErrTimeout))
		_, err := Copy(context.Background(), io.Discard, r, 0)
		require.ErrorIs(t, err, iotest.ErrTimeout)
	})
	t.Run("timeout reader", func(t *testing.T) {
		_, err := Copy(context.Background(), io.Discard, iotest.TimeoutReader(bytes.NewReader(data)), 0)
		require.ErrorIs(t, err, iotest.ErrTimeout)
	})
	t.Run("no progress", func(t *testing.T) {
		_, err := Copy(context.Background(), io.Discard, stuckReader{}, 0)
		require.ErrorIs(t, err, io.ErrNoProgress)
	})
	t.Run("negative limit", func(t *testing.T) {
		_, err := Copy(context.Background(), io.Discard, bytes.NewReader(data), -1)
		require.ErrorIs(t, err, errkind.Invalid)
	})
}

// TestCopyConcurrent runs copies in parallel so that -race sees buffer reuse through the pool.
func TestCopyConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			data := randomBytes(BufferSize+i*1000, uint64(i))
			var w bytes.Buffer
			info, err := Copy(context.Background(), &w, iotest.HalfReader(bytes.NewReader(data)), 0)
			if err == nil && (info.SHA256 != sha(data) || !bytes.Equal(w.Bytes(), data)) {
				err = errors.New("copy differs from input")
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		assert.NoError(t, err, "copy %d", i)
	}
}

// lateWriter records whether it is called after the copy has returned.
type lateWriter struct {
	returned atomic.Bool
	late     atomic.Bool
	writes   atomic.Int64
}

func (l *lateWriter) Write(p []byte) (int, error) {
	if l.returned.Load() {
		l.late.Store(true)
	}
	l.writes.Add(1)
	return len(p), nil
}

// TestCopyNoWriteAfterReturn: however Copy ends, no write is still running or starts once it has returned,
// so the caller may delete the partial file right away.
func TestCopyNoWriteAfterReturn(t *testing.T) {
	data := randomBytes(6*BufferSize, 11)
	cases := []struct {
		name    string
		maxSize int64
		cancel  bool
		want    error
	}{
		{"success", 0, false, nil},
		{"too large", 4*BufferSize + 5, false, errkind.TooLarge},
		{"cancelled", 0, true, context.Canceled},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var r io.Reader = bytes.NewReader(data)
			if c.cancel {
				r = &cancelReader{r: r, after: 3 * BufferSize, cancel: cancel}
			}
			w := &lateWriter{}
			_, err := Copy(ctx, w, r, c.maxSize)
			w.returned.Store(true)
			if c.want == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, c.want)
			}
			assert.Positive(t, w.writes.Load())
			assert.False(t, w.late.Load())
		})
	}
}

// TestCopyStopsReadingAfterWriteError: a failed write ends the copy within a few buffers.
func TestCopyStopsReadingAfterWriteError(t *testing.T) {
	cr := &countingReader{r: zeroReader{}}
	_, err := Copy(context.Background(), &failingWriter{}, cr, 0)
	require.ErrorIs(t, err, errDisk)
	assert.LessOrEqual(t, cr.n, int64(2+inFlight+1)*BufferSize)
}
