package nfs

import (
	"context"
	"fmt"
	"sync"

	"github.com/openvair/openvair/internal/deadline"
	"github.com/openvair/openvair/internal/nfsrpc"
)

// uploader is an io.Writer that sends what it gets to an NFS file with large UNSTABLE WRITEs from a
// separate goroutine, so reading and hashing the source overlaps with the network. Each WRITE is bounded by
// the upload's context and the per-RPC timeout.
type uploader struct {
	ctx   context.Context
	b     *Backend
	p     pool
	fh    []byte
	chunk int

	buf  []byte
	off  int64 // file offset of buf[0]
	free chan []byte
	work chan upJob
	done chan struct{}

	mu   sync.Mutex
	err  error
	verf uint64
	nver int
}

type upJob struct {
	off  int64
	data []byte
}

const upBuffers = 4

func newUploader(ctx context.Context, b *Backend, p pool, fh []byte, chunk int) *uploader {
	u := &uploader{ctx: ctx, b: b, p: p, fh: fh, chunk: chunk,
		free: make(chan []byte, upBuffers), work: make(chan upJob, upBuffers), done: make(chan struct{})}
	for range upBuffers - 1 {
		u.free <- make([]byte, 0, chunk)
	}
	u.buf = make([]byte, 0, chunk)
	go u.run()
	return u
}

func (u *uploader) failed() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

func (u *uploader) setErr(err error) {
	u.mu.Lock()
	if u.err == nil {
		u.err = err
	}
	u.mu.Unlock()
}

// Write queues p.
func (u *uploader) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if err := u.failed(); err != nil {
			return n, err
		}
		c := copy(u.buf[len(u.buf):cap(u.buf)], p[n:])
		u.buf = u.buf[:len(u.buf)+c]
		n += c
		if len(u.buf) == cap(u.buf) {
			if err := u.submit(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

func (u *uploader) submit() error {
	if len(u.buf) == 0 {
		return nil
	}
	select {
	case u.work <- upJob{u.off, u.buf}:
	case <-u.ctx.Done():
		return u.ctx.Err()
	}
	u.off += int64(len(u.buf))
	select {
	case b := <-u.free:
		u.buf = b[:0]
	case <-u.ctx.Done():
		return u.ctx.Err()
	}
	return nil
}

// Close sends what is buffered, waits for every WRITE and returns the first error.
func (u *uploader) Close() error {
	err := u.submit()
	close(u.work)
	<-u.done
	if ferr := u.failed(); ferr != nil {
		return ferr
	}
	return err
}

func (u *uploader) run() {
	defer close(u.done)
	for j := range u.work {
		if u.failed() == nil {
			if err := u.write(j); err != nil {
				u.setErr(err)
			}
		}
		select {
		case u.free <- j.data[:0]:
		default:
		}
	}
}

func (u *uploader) write(j upJob) error {
	ctx, cancel := deadline.Ensure(u.ctx, u.b.rpcTimeout)
	defer cancel()
	return u.b.with(ctx, u.p.key, func(s *sess) error {
		for done := 0; done < len(j.data); {
			r, err := nfsrpc.Write(s.t, s.auth, u.fh, uint64(j.off)+uint64(done), j.data[done:], nfsrpc.Unstable)
			if err != nil {
				return s.note(err)
			}
			if r.Count == 0 {
				return fmt.Errorf("server accepted no bytes of a WRITE at offset %d", j.off+int64(done))
			}
			if err := u.noteVerf(r.Verf); err != nil {
				return err
			}
			done += int(r.Count)
		}
		return nil
	})
}

// noteVerf records the server's write verifier; a change means the server restarted and may have lost
// unstable data.
func (u *uploader) noteVerf(v uint64) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.nver > 0 && v != u.verf {
		return nfsrpc.ErrVerifierChanged
	}
	u.verf, u.nver = v, u.nver+1
	return nil
}

// verifier returns the write verifier seen by every WRITE (ok false when there was no WRITE).
func (u *uploader) verifier() (uint64, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.verf, u.nver > 0
}
