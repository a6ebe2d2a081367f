package libvirt

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
)

var _ driver.SerialConsoler = (*Driver)(nil)

// serialCloseGrace is how long closing a serial console waits for libvirtd to acknowledge the end of the
// stream before it drops the console's connection.
const serialCloseGrace = 2 * time.Second

// errSerialClosed is what Read and Write return once the console is closed or its stream ended.
var errSerialClosed = errors.New("serial console closed")

// OpenSerial connects to the first serial console of the running domain id (virDomainOpenConsole, as
// "virsh console" does) and implements driver.SerialConsoler: reads return what the guest writes on it,
// writes are typed into it; a read returns io.EOF when the stream ends (the domain stopped). ctx bounds
// connecting only; the console lasts until Close, which leaves the domain running.
//
// Each console has a connection to libvirtd of its own: go-libvirt delivers a stream's data on the
// connection's only reader, so a console read slowly must not hold up the driver's other calls. It opens
// with VIR_DOMAIN_CONSOLE_SAFE and never with VIR_DOMAIN_CONSOLE_FORCE: a console another client holds
// (virsh console, another session) is not taken over; the call fails with an error wrapping
// driver.ErrUnavailable instead. ErrNotFound when the domain is not defined, ErrUnavailable when it is not
// running.
func (d *Driver) OpenSerial(ctx context.Context, id uuid.UUID) (io.ReadWriteCloser, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.opts.CallTimeout)
		defer cancel()
	}
	st, err := d.State(ctx, id)
	if err != nil {
		return nil, err
	}
	switch st.Power {
	case driver.PowerMissing:
		return nil, errkind.New(driver.ErrNotFound, entity, id.String(), "domain is not defined")
	case driver.PowerRunning, driver.PowerPaused, driver.PowerStopping:
	default:
		return nil, errkind.New(driver.ErrUnavailable, entity, id.String(), "serial console: domain is not running (%s)", st.Power)
	}
	l, nc, err := d.dialConsoleConn(ctx, id)
	if err != nil {
		return nil, err
	}
	return openSerialStream(ctx, id, l, nc)
}

// dialConsoleConn opens a connection to libvirtd for one console, bounded by ctx and Options.DialTimeout.
func (d *Driver) dialConsoleConn(ctx context.Context, id uuid.UUID) (*golibvirt.Libvirt, net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, d.opts.DialTimeout)
	nc, err := d.c.dialer.DialContext(dctx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctxError(ctx, id.String(), "serial console: connect")
		}
		return nil, nil, errkind.Wrap(driver.ErrUnavailable, err, entity, id.String(), "serial console: libvirtd at %s (%s) not reachable",
			d.opts.Socket, d.opts.URI)
	}
	l := golibvirt.NewWithDialer(dialers.NewAlreadyConnected(nc))
	done := make(chan error, 1)
	go func() { done <- l.ConnectToURI(golibvirt.ConnectURI(d.opts.URI)) }()
	select {
	case err := <-done:
		if err != nil {
			nc.Close()
			return nil, nil, errkind.Wrap(driver.ErrUnavailable, err, entity, id.String(), "serial console: open %s", d.opts.URI)
		}
		return l, nc, nil
	case <-ctx.Done():
		nc.Close() // unblocks the handshake; its goroutine then ends
		return nil, nil, ctxError(ctx, id.String(), "serial console: connect to "+d.opts.URI)
	}
}

// openSerialStream starts the console stream on a connection of its own and waits until libvirtd has
// accepted it (or refused it, or ctx ended). On failure the connection is closed.
func openSerialStream(ctx context.Context, id uuid.UUID, l *golibvirt.Libvirt, nc net.Conn) (io.ReadWriteCloser, error) {
	outR, outW := io.Pipe() // guest output: written by go-libvirt, read by Read
	inR, inW := io.Pipe()   // input: written by Write, read by go-libvirt's stream sender
	c := &serialConn{outR: outR, inW: inW, nc: nc, done: make(chan struct{})}
	opened := make(chan struct{})
	src := &firstRead{r: inR, first: func() { close(opened) }}
	go func() {
		defer close(c.done)
		// go-libvirt starts reading src only after libvirtd accepted the console: its first read says the
		// console is open. The call returns when the stream ends, either way.
		err := l.DomainOpenConsoleBidirectional(golibvirt.Domain{Name: DomainName(id), UUID: golibvirt.UUID(id), ID: -1},
			nil, src, discardWhenClosed{outW}, uint32(golibvirt.DomainConsoleSafe))
		c.err = err
		if err == nil {
			err = io.EOF
		}
		// Reads drain what is buffered, then see the end; writes fail from now on. The connection served
		// this console only: it goes now, whether or not the caller closes the console.
		outW.CloseWithError(err)
		inR.CloseWithError(errSerialClosed)
		_ = nc.Close()
	}()
	select {
	case <-opened:
		return c, nil
	case <-c.done:
		_ = c.Close()
		return nil, serialOpenError(c.err, id)
	case <-ctx.Done():
		_ = c.Close()
		return nil, ctxError(ctx, id.String(), "serial console: open")
	}
}

// serialOpenError classifies the failure to open a console: a console in use or a domain that is not
// running is unavailable (retry later), other libvirt errors as usual.
func serialOpenError(err error, id uuid.UUID) error {
	if err == nil {
		return errkind.New(driver.ErrUnavailable, entity, id.String(), "serial console: the stream ended at once")
	}
	var lerr golibvirt.Error
	if asLibvirtError(err, &lerr) {
		msg := strings.ToLower(lerr.Message)
		switch {
		case strings.Contains(msg, "session exists") || (strings.Contains(msg, "console") && strings.Contains(msg, "busy")):
			return errkind.Wrap(driver.ErrUnavailable, err, entity, id.String(), "serial console is in use by another client")
		case golibvirt.ErrorNumber(lerr.Code) == golibvirt.ErrOperationInvalid:
			return errkind.Wrap(driver.ErrUnavailable, err, entity, id.String(), "serial console: domain is not running")
		}
	}
	return mapError(err, id.String(), "serial console")
}

// serialConn is an open serial console.
type serialConn struct {
	outR *io.PipeReader
	inW  *io.PipeWriter
	nc   net.Conn
	done chan struct{} // closed when the console call returned
	err  error         // the call's error, set before done is closed
	once sync.Once
}

// Read returns what the guest wrote; io.EOF once the stream ended.
func (c *serialConn) Read(p []byte) (int, error) {
	n, err := c.outR.Read(p)
	if errors.Is(err, io.ErrClosedPipe) {
		err = errSerialClosed
	}
	return n, err
}

// Write types p into the console; it returns when go-libvirt has taken the bytes.
func (c *serialConn) Write(p []byte) (int, error) {
	n, err := c.inW.Write(p)
	if errors.Is(err, io.ErrClosedPipe) {
		err = errSerialClosed
	}
	return n, err
}

// Close ends the console: it finishes the stream, waits a moment for libvirtd to acknowledge it, then closes
// the console's connection, and returns once go-libvirt's goroutines for it are done. The domain runs on.
func (c *serialConn) Close() error {
	c.once.Do(func() {
		// From now on the guest's output is dropped, never left pending: go-libvirt delivers stream data
		// while holding its callback lock, so a stalled writer would wedge the connection's teardown.
		c.outR.CloseWithError(errSerialClosed)
		_ = c.inW.Close() // the sender reads EOF and finishes the stream
		t := time.NewTimer(serialCloseGrace)
		select {
		case <-c.done:
		case <-t.C:
		}
		t.Stop()
		_ = c.nc.Close() // ends the call if libvirtd did not, and go-libvirt's reader
		<-c.done
	})
	return nil
}

// firstRead calls first once, on the first Read.
type firstRead struct {
	r     io.Reader
	once  sync.Once
	first func()
}

func (f *firstRead) Read(p []byte) (int, error) {
	f.once.Do(f.first)
	return f.r.Read(p)
}

// discardWhenClosed writes to a pipe and drops the data once the pipe's reader is closed, so that go-libvirt
// keeps draining the stream instead of failing in the middle of a delivery.
type discardWhenClosed struct{ w *io.PipeWriter }

func (d discardWhenClosed) Write(p []byte) (int, error) {
	n, err := d.w.Write(p)
	if errors.Is(err, errSerialClosed) || errors.Is(err, io.ErrClosedPipe) {
		return len(p), nil
	}
	return n, err
}
