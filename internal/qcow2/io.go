package qcow2

import "fmt"

// writeAt writes all of p at off.
func writeAt(f File, p []byte, off int64, what string) error {
	if _, err := f.WriteAt(p, off); err != nil {
		return fmt.Errorf("qcow2: write %s at %d: %w", what, off, err)
	}
	return nil
}

// syncFile flushes f to stable storage when it can (an *os.File, or an NFS file with a COMMIT): a write
// barrier between the steps of an update.
func syncFile(f File) error {
	s, ok := f.(interface{ Sync() error })
	if !ok {
		return nil
	}
	if err := s.Sync(); err != nil {
		return fmt.Errorf("qcow2: sync: %w", err)
	}
	return nil
}

// clusterWriter writes consecutive clusters in batches of about 1 MiB, so that large metadata areas reach
// the file (and an NFS server) in few large writes.
type clusterWriter struct {
	f    File
	cs   int64
	off  int64 // file offset of buf[0]
	buf  []byte
	used int
}

func newClusterWriter(f File, cs, off int64) *clusterWriter {
	n := max(cs, 1<<20) / cs * cs
	return &clusterWriter{f: f, cs: cs, off: off, buf: make([]byte, n)}
}

// next returns the zeroed buffer of the next cluster; it is written by a later next or flush.
func (w *clusterWriter) next() ([]byte, error) {
	if w.used == len(w.buf) {
		if err := w.flush(); err != nil {
			return nil, err
		}
	}
	c := w.buf[w.used : w.used+int(w.cs)]
	clear(c)
	w.used += int(w.cs)
	return c, nil
}

func (w *clusterWriter) flush() error {
	if w.used == 0 {
		return nil
	}
	if err := writeAt(w.f, w.buf[:w.used], w.off, "metadata"); err != nil {
		return err
	}
	w.off += int64(w.used)
	w.used = 0
	return nil
}
