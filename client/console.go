package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/openvair/openvair/internal/errkind"
)

// consoleTicket is the part of the server's ticket answer the client uses.
type consoleTicket struct {
	Ticket string `json:"ticket"`
}

// SerialConsole connects to the first serial console of a running VM (vm.Service.SerialConsole): reads
// return what the guest writes on it, writes are typed into it, and a read returns io.EOF when the console
// ends. It asks the server for a single-use serial console ticket (role admin) and opens the console's
// WebSocket with it. ctx bounds connecting only; the console lasts until the caller closes it, which leaves
// the VM running. Errors match the SDK's kinds: openvair.ErrWrongState while the VM does not run,
// openvair.ErrUnavailable when another client holds the console, openvair.ErrUnsupported when the
// hypervisor has no serial consoles.
func (c *Client) SerialConsole(ctx context.Context, id uuid.UUID) (io.ReadWriteCloser, error) {
	t, err := call[consoleTicket](ctx, c, request{method: http.MethodPost, path: idPath("vms", id) + "/console/ticket",
		body: map[string]string{"kind": "serial"}, idem: true})
	if err != nil {
		return nil, err
	}
	u := c.base.String() + idPath("vms", id) + "/console/serial/ws?" + url.Values{"ticket": {t.Ticket}}.Encode()
	ws, res, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: c.http})
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("client: serial console of vm %s: %w", id, ctx.Err())
		}
		if res != nil && res.StatusCode != http.StatusSwitchingProtocols {
			return nil, c.decode(res, nil)
		}
		return nil, fmt.Errorf("client: serial console of vm %s: %w: %v", id, errkind.Unavailable, err)
	}
	ws.SetReadLimit(-1)
	// The console outlives ctx: it ends when the caller closes it (or the guest's side ends).
	return &serialConn{conn: websocket.NetConn(context.Background(), ws, websocket.MessageText), ws: ws}, nil
}

// serialConn is a serial console over a WebSocket.
type serialConn struct {
	conn io.ReadWriteCloser
	ws   *websocket.Conn
}

// Read returns what the guest wrote; io.EOF once the console ended.
func (s *serialConn) Read(p []byte) (int, error) {
	n, err := s.conn.Read(p)
	if err != nil && isClosed(err) {
		err = io.EOF
	}
	return n, err
}

// Write types p into the console.
func (s *serialConn) Write(p []byte) (int, error) { return s.conn.Write(p) }

// Close ends the console; the VM keeps running.
func (s *serialConn) Close() error { return s.conn.Close() }

// isClosed reports whether err says that the WebSocket was closed with a close frame.
func isClosed(err error) bool { return websocket.CloseStatus(err) != -1 }
