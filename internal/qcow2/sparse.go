package qcow2

import (
	"io"
	"runtime"
	"sync"
	"syscall"
)

// dataRanger returns what tells where the data of src lies: src itself when it is a DataRanger, a SEEK_DATA
// and SEEK_HOLE ranger when src is a file with a descriptor (an *os.File: syscall.Conn, or an Fd method), and
// nil otherwise.
func dataRanger(src io.ReaderAt) DataRanger {
	switch s := src.(type) {
	case DataRanger:
		return s
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
