package qcow2

import (
	"errors"
	"io"
	"os"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// memFile is an in-memory sparse File that grows on writes; unwritten pages read as zeros.
type memFile struct {
	mu    sync.Mutex
	pages map[int64][]byte
	size  int64
}

const memPage = 4096

func (m *memFile) Len() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.size
}

// Bytes returns the first n bytes of the file.
func (m *memFile) Bytes(n int64) []byte {
	p := make([]byte, min(n, m.Len()))
	_, _ = m.ReadAt(p, 0)
	return p
}

func (m *memFile) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off >= m.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), m.size-off))
	for i := 0; i < n; {
		pg, po := (off+int64(i))/memPage, (off+int64(i))%memPage
		k := min(n-i, int(memPage-po))
		if b, ok := m.pages[pg]; ok {
			copy(p[i:i+k], b[po:])
		} else {
			clear(p[i : i+k])
		}
		i += k
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pages == nil {
		m.pages = map[int64][]byte{}
	}
	for i := 0; i < len(p); {
		pg, po := (off+int64(i))/memPage, (off+int64(i))%memPage
		b, ok := m.pages[pg]
		if !ok {
			b = make([]byte, memPage)
			m.pages[pg] = b
		}
		i += copy(b[po:], p[i:])
	}
	m.size = max(m.size, off+int64(len(p)))
	return len(p), nil
}

// failingFile passes the first n writes to f and fails every later one, as a crash would cut them off. It is
// safe for parallel writes, as io.WriterAt allows them.
type failingFile struct {
	f      File
	n      int
	mu     sync.Mutex
	writes int
}

var errCrash = errors.New("simulated crash")

func (c *failingFile) ReadAt(p []byte, off int64) (int, error) { return c.f.ReadAt(p, off) }

func (c *failingFile) WriteAt(p []byte, off int64) (int, error) {
	c.mu.Lock()
	c.writes++
	fail := c.writes > c.n
	c.mu.Unlock()
	if fail {
		return 0, errCrash
	}
	return c.f.WriteAt(p, off)
}

// fileSize returns the length of the file at path.
func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	require.NoError(t, err)
	return st.Size()
}

// openFile opens an existing file for reading and writing, closed at the end of the test.
func openFile(t testing.TB, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// copyFile copies src to dst (sparse regions become zeros written; the test images are small).
func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(dst, b, 0o600))
}

const (
	kiB = int64(1) << 10
	miB = int64(1) << 20
	giB = int64(1) << 30
	tiB = int64(1) << 40
)

func errorsIs(err, target error) bool { return errors.Is(err, target) }
