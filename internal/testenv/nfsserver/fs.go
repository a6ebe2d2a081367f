package nfsserver

import (
	"context"
	"os"
	"path/filepath"
	"time"

	billy "github.com/go-git/go-billy/v5"
	nfs "github.com/willscott/go-nfs"
	"golang.org/x/sys/unix"
)

// changeFS adds billy.Change to an osfs filesystem rooted at root (go-nfs needs it for SETATTR, which
// CREATE sends).
type changeFS struct {
	billy.Filesystem
	root string
}

func (f changeFS) path(name string) string { return filepath.Join(f.root, filepath.Clean("/"+name)) }

// Chmod changes the mode of name.
func (f changeFS) Chmod(name string, mode os.FileMode) error { return os.Chmod(f.path(name), mode) }

// Lchown changes the owner of name without following a symlink.
func (f changeFS) Lchown(name string, uid, gid int) error { return os.Lchown(f.path(name), uid, gid) }

// Chown changes the owner of name.
func (f changeFS) Chown(name string, uid, gid int) error { return os.Chown(f.path(name), uid, gid) }

// Chtimes changes the times of name.
func (f changeFS) Chtimes(name string, atime, mtime time.Time) error {
	return os.Chtimes(f.path(name), atime, mtime)
}

// statHandler reports the real space of the backing directory in FSSTAT instead of go-nfs's 1<<62.
type statHandler struct {
	nfs.Handler
	dir string
}

// FSStat fills s from statfs(2) of the backing directory.
func (h statHandler) FSStat(_ context.Context, _ billy.Filesystem, s *nfs.FSStat) error {
	var st unix.Statfs_t
	if err := unix.Statfs(h.dir, &st); err != nil {
		return err
	}
	bs := uint64(st.Bsize)
	s.TotalSize = st.Blocks * bs
	s.FreeSize = st.Bfree * bs
	s.AvailableSize = st.Bavail * bs
	s.TotalFiles = st.Files
	s.FreeFiles = st.Ffree
	s.AvailableFiles = st.Ffree
	return nil
}
