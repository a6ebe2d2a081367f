package nfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	gonfs "github.com/vmware/go-nfs-client/nfs"
	"github.com/vmware/go-nfs-client/nfs/rpc"

	"github.com/openvair/openvair/internal/nfsrpc"
)

// mountKey identifies a cached mount.
type mountKey struct{ server, export string }

// mount is the cached connection to one export. sem (capacity 1) serialises RPC use of the connection; it is
// a channel so that waiting for it honours the caller's context. The fields below sem are only touched by the
// holder of sem.
type mount struct {
	key mountKey
	sem chan struct{}

	target   *gonfs.Target
	lastUsed time.Time // end of the last call on target
	root     []byte
	wtmax    uint32
	rtmax    uint32
}

// sess is what an operation gets while it holds a mount: the target, the credentials and a flag that makes
// the connection be dropped after a transport error.
type sess struct {
	t      *gonfs.Target
	auth   rpc.Auth
	m      *mount
	broken bool
}

// note marks the session broken when err is not an NFS status (the connection is then in an unknown state).
func (s *sess) note(err error) error {
	if err != nil && isTransport(err) {
		s.broken = true
	}
	return err
}

func (b *Backend) mountFor(key mountKey) *mount {
	b.mu.Lock()
	defer b.mu.Unlock()
	m, ok := b.mounts[key]
	if !ok {
		m = &mount{key: key, sem: make(chan struct{}, 1)}
		b.mounts[key] = m
	}
	return m
}

// with runs fn on the mount of key while holding it. Every network operation fn makes is bounded by ctx:
// the connection gets read/write deadlines from ctx and is closed when ctx ends, which makes a blocked call
// return at once. The connection is dropped (and redialed by the next call) after a transport error, a
// panic in the RPC library, or the end of ctx.
func (b *Backend) with(ctx context.Context, key mountKey, fn func(s *sess) error) (err error) {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("call to %s not started: %w", key.server, err)
	}
	m := b.mountFor(key)
	select {
	case m.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("waiting for the connection to %s:%s: %w", key.server, key.export, ctx.Err())
	}
	defer func() { <-m.sem }()

	if m.target != nil && time.Since(m.lastUsed) > idleCheck {
		// The server may have closed an idle connection or restarted: check before relying on it.
		if err := b.with1(ctx, m, func(s *sess) error { return s.note(nfsrpc.Null(s.t, s.auth)) }); err != nil {
			m.drop()
		}
	}
	return b.with1(ctx, m, fn)
}

// idleCheck is how long a connection may stay unused before a NULL call checks it.
const idleCheck = time.Second

func (m *mount) drop() {
	if m.target != nil {
		_ = m.target.Close()
		m.target = nil
	}
}

// with1 runs fn on m, which the caller holds.
func (b *Backend) with1(ctx context.Context, m *mount, fn func(s *sess) error) (err error) {
	key := m.key
	if m.target == nil {
		if err := b.dial(ctx, m); err != nil {
			return err
		}
	}
	t := m.target
	if dl, ok := ctx.Deadline(); ok {
		t.SetTimeout(max(time.Until(dl), time.Millisecond))
	} else {
		t.SetTimeout(0)
	}
	stop := context.AfterFunc(ctx, func() { _ = t.Close() })
	s := &sess{t: t, auth: b.auth, m: m}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("nfs client library panicked on a reply from %s: %v", key.server, r)
			s.broken = true
		}
		if !stop() { // ctx ended: the connection was closed under fn.
			s.broken = true
			if err != nil && isTransport(err) {
				err = fmt.Errorf("call to %s interrupted: %w (%v)", key.server, ctx.Err(), err)
			}
		}
		if s.broken || (err != nil && isTransport(err)) {
			_ = t.Close()
			m.target = nil
		} else {
			m.lastUsed = time.Now()
		}
	}()
	return fn(s)
}

// dial mounts the export, bounded by ctx. It first asks the portmapper itself (honouring ctx), then lets
// the library mount in a goroutine; if ctx ends first the goroutine is left to close what it gets.
func (b *Backend) dial(ctx context.Context, m *mount) error {
	if _, err := nfsrpc.GetPort(ctx, m.key.server, nfsrpc.MountProg, nfsrpc.MountVers); err != nil {
		return fmt.Errorf("portmapper on %s: %w", m.key.server, err)
	}
	type result struct {
		t   *gonfs.Target
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var r result
		defer func() {
			if p := recover(); p != nil {
				r = result{err: fmt.Errorf("nfs client library panicked while mounting: %v", p)}
			}
			ch <- r
		}()
		mnt, err := gonfs.DialMount(m.key.server)
		if err != nil {
			r.err = err
			return
		}
		defer mnt.Close()
		if dl, ok := ctx.Deadline(); ok {
			mnt.SetTimeout(max(time.Until(dl), time.Millisecond))
		}
		stop := context.AfterFunc(ctx, func() { _ = mnt.Close() })
		defer stop()
		r.t, r.err = mnt.Mount(m.key.export, b.auth)
	}()
	var r result
	select {
	case r = <-ch:
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.t != nil {
				_ = r.t.Close()
			}
		}()
		return fmt.Errorf("mounting %s:%s: %w", m.key.server, m.key.export, ctx.Err())
	}
	if r.err != nil {
		if msg := r.err.Error(); strings.HasPrefix(msg, "MNT3ERR_") || strings.HasPrefix(msg, "unknown mount stat") {
			return &mountError{err: r.err}
		}
		return fmt.Errorf("mounting %s:%s: %w", m.key.server, m.key.export, r.err)
	}
	t := r.t
	ok := false
	defer func() {
		if !ok {
			_ = t.Close()
		}
	}()
	if dl, has := ctx.Deadline(); has {
		t.SetTimeout(max(time.Until(dl), time.Millisecond))
	}
	stop := context.AfterFunc(ctx, func() { _ = t.Close() })
	defer stop()
	info, err := t.FSInfo()
	if err != nil {
		return fmt.Errorf("FSINFO on %s:%s: %w", m.key.server, m.key.export, err)
	}
	_, root, err := t.Lookup("/")
	if err != nil {
		return err
	}
	m.root = root
	m.wtmax, m.rtmax = info.WTMax, info.RTMax
	m.target = t
	ok = true
	return nil
}

// mountError is a MOUNT failure reported by the server (the export is missing or refused).
type mountError struct{ err error }

func (e *mountError) Error() string { return "MOUNT refused: " + e.err.Error() }
func (e *mountError) Unwrap() error { return e.err }

// isTransport reports whether err is anything but an NFS status reply: a network error, a timeout, a
// malformed reply. The connection is dropped after such an error.
func isTransport(err error) bool {
	var se *nfsrpc.StatusError
	var ge *gonfs.Error
	switch {
	case errors.As(err, &se), errors.As(err, &ge),
		errors.Is(err, os.ErrNotExist), errors.Is(err, os.ErrExist), errors.Is(err, os.ErrPermission),
		errors.Is(err, os.ErrInvalid), errors.Is(err, errLogical), errors.As(err, new(*mountError)):
		return false
	}
	return true
}

// errLogical marks errors produced by the driver itself (not by the network).
var errLogical = errors.New("nfs driver")

// closeAll drops every cached connection.
func (b *Backend) closeAll() {
	b.mu.Lock()
	ms := make([]*mount, 0, len(b.mounts))
	for _, m := range b.mounts {
		ms = append(ms, m)
	}
	b.mu.Unlock()
	for _, m := range ms {
		m.sem <- struct{}{}
		if m.target != nil {
			_ = m.target.Close()
			m.target = nil
		}
		<-m.sem
	}
}
