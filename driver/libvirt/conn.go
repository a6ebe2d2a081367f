package libvirt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
	"libvirt.org/go/libvirtxml"
)

// session is one live connection to libvirtd. It is replaced, never repaired: when it is lost or wedged, the
// next call dials a new one.
type session struct {
	l    *golibvirt.Libvirt
	nc   net.Conn
	gone <-chan struct{} // closed when the connection is lost
	caps Caps

	ctx    context.Context // cancelled when the session is retired; ends event subscriptions
	cancel context.CancelFunc
	mu     sync.Mutex     // orders subs.Add against cancel + subs.Wait
	subs   sync.WaitGroup // running event subscriptions
}

// addSub registers an event subscription; false when the session is already retired.
func (s *session) addSub() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return false
	}
	s.subs.Add(1)
	return true
}

// end cancels the session context under the lock, so no subscription starts afterwards.
func (s *session) end() {
	s.mu.Lock()
	s.cancel()
	s.mu.Unlock()
}

func (s *session) lost() bool {
	select {
	case <-s.gone:
		return true
	default:
		return false
	}
}

// connector owns the driver's one long-lived connection: it connects lazily, redials after a loss with
// exponential backoff between failed attempts (failing fast in between), and bounds every call by its
// context.
type connector struct {
	uri    string
	dialer Dialer
	opts   Options

	mu      sync.Mutex
	cur     *session
	dialing chan struct{} // closed when the dial in progress ends
	lastErr error
	retryAt time.Time
	backoff time.Duration
	closed  bool
}

// session returns the live session, dialing one if needed.
func (c *connector) session(ctx context.Context) (*session, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, errkind.New(driver.ErrUnavailable, entity, "", "driver closed")
		}
		if c.cur != nil && !c.cur.lost() {
			s := c.cur
			c.mu.Unlock()
			return s, nil
		}
		if c.cur != nil {
			c.cur.end()
			c.cur = nil
		}
		if c.dialing != nil {
			ch := c.dialing
			c.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, ctxError(ctx, "", "connect")
			}
		}
		if wait := time.Until(c.retryAt); wait > 0 {
			cause := c.lastErr
			var e *errkind.Error
			if errors.As(cause, &e) && e.Err != nil {
				cause = e.Err // the dial's own error, without its "not reachable" message again
			}
			c.mu.Unlock()
			return nil, errkind.Wrap(driver.ErrUnavailable, cause, entity, "",
				"libvirtd at %s (%s) not reachable, next attempt in %s", c.opts.Socket, c.uri, wait.Round(time.Millisecond))
		}
		ch := make(chan struct{})
		c.dialing = ch
		c.mu.Unlock()

		s, err := c.dial(ctx)

		c.mu.Lock()
		c.dialing = nil
		close(ch)
		if err != nil {
			if ctx.Err() == nil {
				// libvirtd refused or is not there: back off. A dial abandoned because its caller gave up
				// (a short readiness probe while libvirtd probes QEMU) says nothing about libvirtd.
				c.lastErr = err
				c.backoff = min(max(2*c.backoff, c.opts.MinBackoff), c.opts.MaxBackoff)
				c.retryAt = time.Now().Add(c.backoff)
			}
			c.mu.Unlock()
			return nil, err
		}
		c.backoff, c.lastErr, c.retryAt = 0, nil, time.Time{}
		if c.closed { // Close ran while we dialed
			c.mu.Unlock()
			c.retire(s)
			return nil, errkind.New(driver.ErrUnavailable, entity, "", "driver closed")
		}
		c.cur = s
		c.mu.Unlock()
		return s, nil
	}
}

// dial opens a connection and reads the host capabilities, all bounded by ctx.
func (c *connector) dial(ctx context.Context) (*session, error) {
	dctx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
	nc, err := c.dialer.DialContext(dctx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctxError(ctx, "", "connect")
		}
		return nil, errkind.Wrap(driver.ErrUnavailable, err, entity, "", "libvirtd at %s (%s) not reachable", c.opts.Socket, c.uri)
	}
	l := golibvirt.NewWithDialer(dialers.NewAlreadyConnected(nc))
	type result struct {
		caps    Caps
		domCaps string
		err     error
	}
	done := make(chan result, 1)
	go func() {
		if err := l.ConnectToURI(golibvirt.ConnectURI(c.uri)); err != nil {
			done <- result{err: err}
			return
		}
		caps, err := l.ConnectGetCapabilities()
		if err != nil {
			_ = l.Disconnect()
			done <- result{err: err}
			return
		}
		hc := c.hostCaps(caps, nc)
		// The domain type's capabilities say whether UEFI firmware is there (Info's uefi), as HostFacts
		// reads them; a daemon that cannot tell (the test driver) leaves it unknown.
		domCaps, _ := l.ConnectGetDomainCapabilities(nil, nil, nil, golibvirt.OptString{hc.DomainType}, 0)
		done <- result{caps: hc, domCaps: domCaps}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		// The handshake is bounded by the caller's context only: opening qemu:///session the first time
		// makes libvirtd probe QEMU's capabilities, which takes seconds.
		nc.Close() // unblocks the handshake; the goroutine then ends
		return nil, ctxError(ctx, "", "connect to "+c.uri)
	}
	if r.err != nil {
		nc.Close()
		return nil, errkind.Wrap(driver.ErrUnavailable, r.err, entity, "", "open %s", c.uri)
	}
	sctx, scancel := context.WithCancel(context.Background())
	s := &session{l: l, nc: nc, gone: l.Disconnected(), ctx: sctx, cancel: scancel}
	s.caps = r.caps
	var dc libvirtxml.DomainCaps
	if r.domCaps != "" && dc.Unmarshal(r.domCaps) == nil {
		uefi := hasEFILoader(dc)
		s.caps.UEFI = &uefi
	}
	return s, nil
}

// hostCaps derives what BuildDomainXML needs from the capabilities document and the options.
func (c *connector) hostCaps(doc string, nc net.Conn) Caps {
	caps := Caps{DomainType: c.opts.DomainType, Emulator: c.opts.Emulator, NVRAMDir: c.opts.NVRAMDir, ConsoleLogDir: c.opts.ConsoleLogDir}
	var hc libvirtxml.Caps
	_ = hc.Unmarshal(doc)
	if caps.DomainType == "" {
		caps.DomainType = "qemu"
		for _, g := range hc.Guests {
			if g.Arch.Name != "x86_64" || g.OSType != "hvm" {
				continue
			}
			for _, d := range g.Arch.Domains {
				if d.Type == "kvm" {
					caps.DomainType = "kvm"
				}
			}
		}
	}
	caps.QEMUUID, caps.QEMUGID = c.opts.QEMUUID, c.opts.QEMUGID
	if caps.QEMUUID != nil && caps.QEMUGID != nil {
		return caps
	}
	// System daemons report the DAC label QEMU runs with ("+64055:+994").
	for _, m := range hc.Host.SecModel {
		if m.Name != "dac" {
			continue
		}
		for _, lbl := range m.Labels {
			if lbl.Type != caps.DomainType {
				continue
			}
			if u, g, ok := parseDACLabel(lbl.Value); ok {
				caps.QEMUUID, caps.QEMUGID = &u, &g
				return caps
			}
		}
	}
	// A session daemon runs QEMU as itself: ask the kernel who is on the other end of the unix socket.
	if strings.HasSuffix(c.uri, "/session") {
		if u, g, ok := peerCred(nc); ok {
			caps.QEMUUID, caps.QEMUGID = &u, &g
		}
	}
	return caps
}

func parseDACLabel(v string) (uid, gid int, ok bool) {
	us, gs, found := strings.Cut(strings.TrimSpace(v), ":")
	if !found {
		return 0, 0, false
	}
	u, err1 := strconv.Atoi(strings.TrimPrefix(us, "+"))
	g, err2 := strconv.Atoi(strings.TrimPrefix(gs, "+"))
	return u, g, err1 == nil && err2 == nil
}

func peerCred(nc net.Conn) (uid, gid int, ok bool) {
	uc, isUnix := nc.(*net.UnixConn)
	if !isUnix {
		return 0, 0, false
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, 0, false
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return 0, 0, false
	}
	return int(cred.Uid), int(cred.Gid), true
}

// call runs fn on the live session, bounded by ctx (and by Options.CallTimeout when ctx has no deadline).
// go-libvirt calls take no context: fn runs in its own goroutine, and when ctx ends first the call fails
// at once; if fn then stays stuck longer than Options.WedgeGrace, the connection is dropped so the next call
// dials afresh.
func (c *connector) call(ctx context.Context, id, op string, fn func(s *session) error) error {
	if _, ok := ctx.Deadline(); !ok && c.opts.CallTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.CallTimeout)
		defer cancel()
	}
	if err := ctx.Err(); err != nil {
		return ctxError(ctx, id, op)
	}
	s, err := c.session(ctx)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- fn(s) }()
	select {
	case err := <-done:
		if errkind.KindOf(err) != nil { // already classified by fn
			return err
		}
		if err != nil && !isLibvirtError(err) {
			c.drop(s) // transport failure: do not reuse this connection
		}
		return mapError(err, id, op)
	case <-ctx.Done():
		go c.watchWedged(s, done)
		return ctxError(ctx, id, op)
	}
}

// watchWedged drops s when an abandoned call does not finish within the grace period.
func (c *connector) watchWedged(s *session, done <-chan error) {
	t := time.NewTimer(c.opts.WedgeGrace)
	defer t.Stop()
	select {
	case <-done:
	case <-s.gone:
	case <-t.C:
		c.drop(s)
	}
}

// drop forgets s and closes its transport; pending calls on it fail, subscriptions end.
func (c *connector) drop(s *session) {
	c.mu.Lock()
	if c.cur == s {
		c.cur = nil
	}
	c.mu.Unlock()
	s.end()
	s.nc.Close()
}

// retire closes s cleanly: it ends the event subscriptions, gives go-libvirt a moment to deregister their
// callbacks (disconnecting right after cancelling a subscription has crashed libvirtd 9.0), then
// disconnects, bounded by timeout.
func (c *connector) retire(s *session) {
	s.end()
	waited := make(chan struct{})
	go func() { s.subs.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(c.opts.DialTimeout):
	}
	if !s.lost() {
		time.Sleep(c.opts.DeregisterGrace)
		done := make(chan struct{})
		go func() { _ = s.l.Disconnect(); close(done) }()
		select {
		case <-done:
		case <-time.After(c.opts.DialTimeout):
		}
	}
	s.nc.Close()
}

// close retires the live session and refuses further calls.
func (c *connector) close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	s := c.cur
	c.cur = nil
	dialing := c.dialing
	c.mu.Unlock()
	if dialing != nil {
		<-dialing // the dialer sees closed and retires its session itself
	}
	if s != nil {
		c.retire(s)
	}
	return nil
}

func (c *connector) String() string { return fmt.Sprintf("%s via %s", c.uri, c.opts.Socket) }
