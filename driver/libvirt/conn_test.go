package libvirt_test

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/libvirt"
	"github.com/openvair/openvair/internal/testenv/libvirtd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRegistered(t *testing.T) {
	assert.Contains(t, driver.Hypervisors(), "libvirt")
	h, err := driver.OpenHypervisor("libvirt", driver.Config{Options: map[string]string{"uri": "test:///default", "socket": "/nonexistent/sock"}})
	require.NoError(t, err)
	assert.Equal(t, "libvirt", h.Info().Name)
	_, watches := h.(driver.StateWatcher)
	assert.True(t, watches, "libvirt follows power state events")
	_, err = driver.OpenHypervisor("libvirt", driver.Config{Options: map[string]string{"call_timeout": "soon"}})
	assert.ErrorIs(t, err, driver.ErrInvalid)
	_, err = libvirt.New(driver.Config{Options: map[string]string{"uri": "no-scheme"}})
	assert.ErrorIs(t, err, driver.ErrInvalid)
}

// TestUnreachable: without a daemon every call fails fast with ErrUnavailable, and a second call within the
// backoff window does not even dial.
func TestUnreachable(t *testing.T) {
	var dials atomic.Int32
	sock := filepath.Join(t.TempDir(), "missing-sock")
	drv := openDriverAt(t, sock, func(o *libvirt.Options) {
		o.MinBackoff = time.Minute
		o.Dialer = countingDialer{libvirt.UnixDialer{Path: sock}, &dials}
	})
	ctx := ctxT(t, 30*time.Second)
	_, err := drv.State(ctx, uuid.New())
	require.ErrorIs(t, err, driver.ErrUnavailable)
	assert.Contains(t, err.Error(), "not reachable")
	err = drv.Define(ctx, testSpec(t, uuid.New()))
	require.ErrorIs(t, err, driver.ErrUnavailable)
	assert.Contains(t, err.Error(), "next attempt in")
	_, err = drv.WatchStates(ctx)
	require.ErrorIs(t, err, driver.ErrUnavailable)
	assert.Equal(t, int32(1), dials.Load(), "backoff: one dial only")
	// Invalid specs are refused before any connection is attempted.
	bad := testSpec(t, uuid.New())
	bad.MemoryBytes = 0
	assert.ErrorIs(t, drv.Define(ctx, bad), driver.ErrInvalid)
}

type countingDialer struct {
	d libvirt.Dialer
	n *atomic.Int32
}

func (c countingDialer) DialContext(ctx context.Context) (net.Conn, error) {
	c.n.Add(1)
	return c.d.DialContext(ctx)
}

func openDriverAt(t *testing.T, sock string, tweak ...func(*libvirt.Options)) *libvirt.Driver {
	o := libvirt.Options{URI: "test:///default", Socket: sock}
	for _, f := range tweak {
		f(&o)
	}
	drv, err := libvirt.Open(o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = drv.Close() })
	return drv
}

// TestSilentDaemon: a socket that accepts but never answers: the call ends with its context (ErrTimeout).
func TestSilentDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	drv := openDriverAt(t, sock)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = drv.State(ctx, uuid.New())
	require.ErrorIs(t, err, driver.ErrTimeout)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

// freezeProxy forwards a unix socket to libvirtd and can stop forwarding, to wedge a live connection.
type freezeProxy struct {
	ln     net.Listener
	mu     sync.Mutex
	frozen bool
	cond   *sync.Cond
	conns  []net.Conn
}

func newFreezeProxy(t *testing.T, target string) *freezeProxy {
	sock := filepath.Join(t.TempDir(), "p")
	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	p := &freezeProxy{ln: ln}
	p.cond = sync.NewCond(&p.mu)
	t.Cleanup(func() {
		ln.Close()
		p.setFrozen(false)
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("unix", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go p.pipe(up, c)
			go p.pipe(c, up)
		}
	}()
	return p
}

func (p *freezeProxy) sock() string { return p.ln.Addr().String() }

func (p *freezeProxy) setFrozen(f bool) {
	p.mu.Lock()
	p.frozen = f
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *freezeProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		p.mu.Lock()
		for p.frozen {
			p.cond.Wait()
		}
		p.mu.Unlock()
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestWedgedConnectionDropped: a call on a connection that stops answering fails with ErrTimeout, the
// connection is dropped after the grace period, and the next call works on a fresh connection.
func TestWedgedConnectionDropped(t *testing.T) {
	d := libvirtd.Start(t)
	d.Dial(t, golibvirt.TestDefault) // the test driver forgets its domains when its last connection closes
	p := newFreezeProxy(t, d.Socket())
	drv := openDriverAt(t, p.sock(), func(o *libvirt.Options) { o.WedgeGrace = 100 * time.Millisecond })
	ctx := ctxT(t, 30*time.Second)
	id := uuid.New()
	require.NoError(t, drv.Define(ctx, testSpec(t, id)))
	ch, err := drv.WatchStates(ctx)
	require.NoError(t, err)

	p.setFrozen(true)
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = drv.State(short, id)
	cancel()
	require.ErrorIs(t, err, driver.ErrTimeout)
	requireClosed(t, ch) // the wedged connection was dropped: its subscription ends
	p.setFrozen(false)

	var st driver.DomainState
	require.Eventually(t, func() bool {
		st, err = drv.State(ctx, id)
		return err == nil
	}, 30*time.Second, 20*time.Millisecond, "driver must redial: %v", err)
	assert.Equal(t, driver.PowerShutOff, st.Power)
}

// TestRestartReconnectTestDriver restarts libvirtd: the subscription closes, WatchStates can be
// resubscribed once the daemon is back, and events flow again.
func TestRestartReconnectTestDriver(t *testing.T) {
	d := libvirtd.Start(t)
	drv := openDriver(t, d, golibvirt.TestDefault)
	ctx := ctxT(t, time.Minute)
	ch, err := drv.WatchStates(ctx)
	require.NoError(t, err)
	d.Restart()
	requireClosed(t, ch)
	ch = resubscribe(t, drv, ctx)
	id := uuid.New()
	require.NoError(t, drv.Define(ctx, testSpec(t, id)))
	require.NoError(t, drv.Start(ctx, id))
	awaitEvent(t, ch, id, driver.PowerRunning)
	require.NoError(t, drv.Destroy(ctx, id))
	require.NoError(t, drv.Undefine(ctx, id))
}

// TestCloseEndsSubscriptions: Close closes event channels and later calls fail with ErrUnavailable.
func TestCloseEndsSubscriptions(t *testing.T) {
	d := libvirtd.Start(t)
	drv := openDriver(t, d, golibvirt.TestDefault)
	ctx := ctxT(t, time.Minute)
	ch, err := drv.WatchStates(ctx)
	require.NoError(t, err)
	require.NoError(t, drv.Close())
	requireClosed(t, ch)
	_, err = drv.State(ctx, uuid.New())
	assert.ErrorIs(t, err, driver.ErrUnavailable)
	require.NoError(t, d.Ping(ctx), "libvirtd survives the driver closing its subscriptions")
}

// TestAbandonedDialDoesNotBackOff: a caller whose short deadline ends while libvirtd is slow to answer the
// handshake (it probes QEMU on a first connection) gives up, but the next caller dials at once instead of
// failing fast as if libvirtd were down.
func TestAbandonedDialDoesNotBackOff(t *testing.T) {
	d := libvirtd.Start(t)
	p := newFreezeProxy(t, d.Socket())
	drv := openDriverAt(t, p.sock())
	p.setFrozen(true)
	short, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_, err := drv.State(short, uuid.New())
	cancel()
	require.ErrorIs(t, err, driver.ErrTimeout)
	p.setFrozen(false)
	st, err := drv.State(ctxT(t, 30*time.Second), uuid.New())
	require.NoError(t, err, "the next call dials again")
	assert.Equal(t, driver.PowerMissing, st.Power)
}
