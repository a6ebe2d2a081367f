package libvirt

import (
	"context"
	"net"
	"net/url"
	"os"
	"path/filepath"

	"github.com/digitalocean/go-libvirt/socket"
)

// Dialer opens the transport to libvirtd. UnixDialer covers local daemons; SocketDialer adapts any go-libvirt
// dialer (TLS, SSH, TCP) so remote transports plug in without changes to the driver.
type Dialer interface {
	DialContext(ctx context.Context) (net.Conn, error)
}

// UnixDialer connects to a libvirtd unix socket.
type UnixDialer struct {
	Path string
}

// DialContext implements Dialer.
func (u UnixDialer) DialContext(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", u.Path)
}

// SocketDialer adapts a go-libvirt dialer (dialers.NewTLS, dialers.NewSSH, dialers.NewRemote, ...). Those dial
// without a context: when ctx ends first, DialContext returns and the late connection is closed.
func SocketDialer(d socket.Dialer) Dialer { return socketDialer{d} }

type socketDialer struct{ d socket.Dialer }

func (s socketDialer) DialContext(ctx context.Context) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := s.d.Dial()
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		return r.c, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// defaultSocket is where libvirtd listens for the given URI on this host: the per-user socket for session
// URIs, the system socket otherwise. A "socket" query parameter in the URI wins.
func defaultSocket(uri string) string {
	if u, err := url.Parse(uri); err == nil {
		if s := u.Query().Get("socket"); s != "" {
			return s
		}
		if u.Path == "/session" {
			if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
				return filepath.Join(d, "libvirt/libvirt-sock")
			}
			if h, err := os.UserHomeDir(); err == nil {
				return filepath.Join(h, ".cache/libvirt/libvirt-sock")
			}
		}
	}
	return "/var/run/libvirt/libvirt-sock"
}
