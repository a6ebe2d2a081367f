package nfs

import (
	"errors"
	"fmt"
	"io"
	"os"

	gonfs "github.com/vmware/go-nfs-client/nfs"

	"github.com/openvair/openvair/internal/nfsrpc"
)

// lookup returns the handle of a path relative to the export root.
func (s *sess) lookup(p string) ([]byte, error) {
	_, fh, err := s.t.Lookup(p)
	return fh, s.note(err)
}

func (s *sess) getattr(fh []byte) (nfsrpc.Attr, error) {
	a, err := nfsrpc.GetAttr(s.t, s.auth, fh)
	return a, s.note(err)
}

func (s *sess) setSize(fh []byte, size int64) error {
	return s.note(nfsrpc.SetSize(s.t, s.auth, fh, uint64(size)))
}

// create creates the file p with mode and, when owner is set, gives it to owner's uid and gid.
func (s *sess) create(p string, mode os.FileMode, owner *[2]uint32) ([]byte, error) {
	fh, err := s.t.Create(p, mode)
	if err != nil || owner == nil {
		return fh, s.note(err)
	}
	if err := s.note(nfsrpc.SetOwner(s.t, s.auth, fh, owner[0], owner[1])); err != nil {
		_ = s.t.Remove(p) // a file QEMU could not open is no use
		return nil, fmt.Errorf("give %s to uid %d gid %d (the identity QEMU uses; the export must let this client change owners, e.g. no_root_squash): %w",
			p, owner[0], owner[1], err)
	}
	return fh, nil
}

func (s *sess) remove(p string) error { return s.note(s.t.Remove(p)) }

func (s *sess) readDir(p string) ([]*gonfs.EntryPlus, error) {
	e, err := s.t.ReadDirPlus(p)
	return e, s.note(err)
}

func (s *sess) fsstat() (nfsrpc.FSStat, error) {
	st, err := nfsrpc.GetFSStat(s.t, s.auth, s.m.root)
	return st, s.note(err)
}

// chunk is the size of one READ or WRITE.
func (s *sess) chunk(max uint32) int {
	n := uint32(1 << 20)
	if max != 0 && max < n {
		n = max
	}
	return int(n)
}

// nfsFile is an io.ReaderAt and io.WriterAt over NFS READ and WRITE (FILE_SYNC) for internal/qcow2. It
// is used while its session is held.
type nfsFile struct {
	s  *sess
	fh []byte
}

// ReadAt reads len(p) bytes at off; it returns io.EOF when the file ends first.
func (f *nfsFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("nfs: negative offset")
	}
	n := 0
	for n < len(p) {
		want := min(len(p)-n, f.s.chunk(f.s.m.rtmax))
		data, eof, err := nfsrpc.Read(f.s.t, f.s.auth, f.fh, uint64(off)+uint64(n), uint32(want))
		if err != nil {
			return n, f.s.note(err)
		}
		n += copy(p[n:], data)
		if len(data) == 0 || (eof && n < len(p)) {
			return n, io.EOF
		}
	}
	return n, nil
}

// WriteAt writes p at off, stably.
func (f *nfsFile) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("nfs: negative offset")
	}
	n := 0
	for n < len(p) {
		want := min(len(p)-n, f.s.chunk(f.s.m.wtmax))
		r, err := nfsrpc.Write(f.s.t, f.s.auth, f.fh, uint64(off)+uint64(n), p[n:n+want], nfsrpc.FileSync)
		if err != nil {
			return n, f.s.note(err)
		}
		if r.Count == 0 {
			return n, io.ErrShortWrite
		}
		n += int(r.Count)
	}
	return n, nil
}

// Sync commits the file (qcow2.Grow calls it between its steps).
func (f *nfsFile) Sync() error {
	_, err := nfsrpc.Commit(f.s.t, f.s.auth, f.fh)
	return f.s.note(err)
}
