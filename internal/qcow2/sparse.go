package qcow2

import (
	"io"
	"runtime"
	"sync"
	"syscall"
)

// dataRanger returns what tells where the data of src lies: src itself when it is a DataRanger, a SEEK_DATA
// and SEEK_HOLE ranger when src is a file with a descriptor (an *os.File: syscall.Conn, or an Fd method), the
// ranger of the underlying source of an *io.SectionReader, and nil otherwise.
func dataRanger(src io.ReaderAt) DataRanger {
	switch s := src.(type) {
	case DataRanger:
		return s
	case *io.SectionReader:
		outer, base, n := s.Outer()
		if inner := dataRanger(outer); inner != nil {
			return &sectionRanger{inner: inner, base: base, n: n}
		}
		return nil
	case syscall.Conn:
		rc, err := s.SyscallConn()
		if err != nil || !seekDataSupported {
			return nil
		}
		return &seekRanger{control: rc.Control}
	case interface{ Fd() uintptr }:
		if !seekDataSupported {
			return nil
		}
		return &seekRanger{control: func(fn func(fd uintptr)) error {
			fn(s.Fd())
			runtime.KeepAlive(s)
			return nil
		}}
	}
	return nil
}

// seekRanger finds the data of a file with lseek(SEEK_DATA) and lseek(SEEK_HOLE). It restores the file's
// offset after each call, for callers that also read the file sequentially.
type seekRanger struct {
	control func(func(fd uintptr)) error

	mu          sync.Mutex
	unsupported bool // the filesystem does not support SEEK_DATA: everything may be data
}

// DataRange implements DataRanger.
func (s *seekRanger) DataRange(off, limit int64) (start, end int64, err error) {
	if off >= limit {
		return limit, limit, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unsupported {
		return off, limit, nil
	}
	var ok bool
	cerr := s.control(func(fd uintptr) { start, end, ok, err = seekData(int(fd), off, limit) })
	switch {
	case cerr != nil:
		s.unsupported = true
		return off, limit, nil
	case err != nil:
		return 0, 0, err
	case !ok:
		s.unsupported = true
		return off, limit, nil
	}
	return start, end, nil
}

// sectionRanger is the DataRanger of an io.SectionReader over a source with one: the window [base, base+n) of
// the source, moved to offset 0 (a SectionReader reads nothing past n).
type sectionRanger struct {
	inner   DataRanger
	base, n int64
}

// DataRange implements DataRanger.
func (s *sectionRanger) DataRange(off, limit int64) (start, end int64, err error) {
	lim := min(limit, s.n)
	if off >= lim {
		return limit, limit, nil
	}
	start, end, err = s.inner.DataRange(s.base+off, s.base+lim)
	if err != nil {
		return 0, 0, err
	}
	start, end = start-s.base, end-s.base
	switch {
	case start >= lim:
		return limit, limit, nil
	case end <= start:
		end = lim // an empty range breaks the contract: say everything may be data
	}
	return start, min(end, lim), nil
}
