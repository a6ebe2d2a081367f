package refserver_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/refserver"
)

// consoleHV is the fake hypervisor with consoles that tests control: its VNC console is a TCP server of the
// test (fakeVNC), its serial console the test's end of a pipe.
type consoleHV struct {
	*fake.Hypervisor
	vnc    *fakeVNC
	serial chan net.Conn // the test's ends of the serial consoles opened
}

var _ driver.SerialConsoler = (*consoleHV)(nil)

func (h *consoleHV) Console(ctx context.Context, id uuid.UUID) (driver.Console, error) {
	c, err := h.Hypervisor.Console(ctx, id)
	if err != nil {
		return c, err
	}
	host, port, _ := net.SplitHostPort(h.vnc.ln.Addr().String())
	c.Host = host
	c.Port, _ = strconv.Atoi(port)
	return c, nil
}

func (h *consoleHV) OpenSerial(ctx context.Context, id uuid.UUID) (io.ReadWriteCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	guest, server := net.Pipe()
	h.serial <- guest
	return server, nil
}

// fakeVNC is a TCP server that greets like a VNC server, then echoes what it reads; it reports every
// connection's end.
type fakeVNC struct {
	ln     net.Listener
	mu     sync.Mutex
	conns  []net.Conn
	closed chan struct{} // one value per connection that saw its peer close
}

func newFakeVNC(t *testing.T) *fakeVNC {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	v := &fakeVNC{ln: ln, closed: make(chan struct{}, 100)}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			v.mu.Lock()
			v.conns = append(v.conns, c)
			v.mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				if _, err := c.Write([]byte("RFB 003.008\n")); err != nil {
					return
				}
				_, _ = io.Copy(c, c)
				v.closed <- struct{}{}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		v.mu.Lock()
		for _, c := range v.conns {
			c.Close()
		}
		v.mu.Unlock()
		wg.Wait()
	})
	return v
}

// closeAll ends every connection from the VNC server's side.
func (v *fakeVNC) closeAll() {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, c := range v.conns {
		c.Close()
	}
}

// consoleEnv is a server on the memory store whose hypervisor is a consoleHV, with a running VM.
type consoleEnv struct {
	*env
	hv  *consoleHV
	vm  string // the running VM's id
	off string // a stopped VM's id
}

func newConsoleEnv(t *testing.T) *consoleEnv {
	t.Helper()
	hv := &consoleHV{Hypervisor: fake.NewHypervisor(), vnc: newFakeVNC(t), serial: make(chan net.Conn, 10)}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sys, err := openvair.Open(ctx, openvair.Config{DSN: "memory:", DataDir: dir, HypervisorInstance: hv, Logger: quietLogger()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sys.Close() })
	e := &env{t: t, dir: dir, sys: sys}
	e.admin, err = refserver.GenerateToken()
	require.NoError(t, err)
	e.reader, err = refserver.GenerateToken()
	require.NoError(t, err)
	tokens, err := refserver.NewTokens(
		refserver.Token{Name: "admin", Role: refserver.RoleAdmin, SHA256: refserver.HashToken(e.admin)},
		refserver.Token{Name: "reader", Role: refserver.RoleReader, SHA256: refserver.HashToken(e.reader)})
	require.NoError(t, err)
	h, err := refserver.New(sys, refserver.Config{Tokens: tokens, Logger: quietLogger()})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	e.URL = srv.URL
	ce := &consoleEnv{env: e, hv: hv}
	var v refserver.VM
	e.call("POST", "/api/v1/vms", vmBody("on", nil), 201, &v)
	e.call("POST", "/api/v1/vms/"+v.ID.String()+"/start", nil, 200, &v)
	ce.vm = v.ID.String()
	e.call("POST", "/api/v1/vms", vmBody("off", nil), 201, &v)
	ce.off = v.ID.String()
	return ce
}

// ticket asks for a console ticket of a kind ("" for the default) and requires 200.
func (e *env) ticket(vmID, kind string) refserver.ConsoleTicket {
	e.t.Helper()
	var body any
	if kind != "" {
		body = map[string]any{"kind": kind}
	}
	var tk refserver.ConsoleTicket
	r := e.call("POST", "/api/v1/vms/"+vmID+"/console/ticket", body, 200, &tk)
	assert.Equal(e.t, "no-store", r.Header.Get("Cache-Control"))
	return tk
}

// wsURL is the URL of a console WebSocket of the server.
func (e *env) wsURL(path string, query url.Values) string {
	u := "ws" + strings.TrimPrefix(e.URL, "http") + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	return u
}

// dialConsole opens a WebSocket with headers (name, value pairs); on failure it returns the HTTP status
// and the problem's detail.
func dialConsole(t *testing.T, u string, hdr ...string) (*websocket.Conn, int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h := http.Header{}
	for i := 0; i+1 < len(hdr); i += 2 {
		h.Set(hdr[i], hdr[i+1])
	}
	c, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: h, Subprotocols: []string{"binary"}})
	if err != nil {
		require.NotNil(t, resp, "dial %s: %v", u, err)
		var p refserver.Problem
		b, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(b, &p)
		return nil, resp.StatusCode, p.Detail
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	return c, http.StatusSwitchingProtocols, ""
}

// readBinary reads one message and requires it binary.
func readBinary(t *testing.T, c *websocket.Conn) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	typ, b, err := c.Read(ctx)
	require.NoError(t, err)
	require.Equal(t, websocket.MessageBinary, typ)
	return b
}

var rfbBanner = regexp.MustCompile(`^RFB 003\.00[3-8]\n$`)

func TestConsoleTicketEndpoint(t *testing.T) {
	e := newConsoleEnv(t)
	tk := e.ticket(e.vm, "")
	raw, err := base64.RawURLEncoding.DecodeString(tk.Ticket)
	require.NoError(t, err)
	assert.Len(t, raw, 32)
	assert.Equal(t, "vnc", tk.Kind)
	assert.WithinDuration(t, time.Now().Add(time.Minute), tk.ExpiresAt, 5*time.Second)
	q := url.Values{"ticket": {tk.Ticket}}.Encode()
	assert.Equal(t, e.wsURL("/api/v1/vms/"+e.vm+"/console/ws", nil)+"?"+q, tk.WSURL)
	assert.Equal(t, e.URL+"/console/?"+url.Values{"vm": {e.vm}, "ticket": {tk.Ticket}}.Encode(), tk.PageURL)
	assert.Empty(t, tk.SerialWSURL)

	st := e.ticket(e.vm, "serial")
	assert.Equal(t, "serial", st.Kind)
	assert.Equal(t, e.wsURL("/api/v1/vms/"+e.vm+"/console/serial/ws", url.Values{"ticket": {st.Ticket}}), st.SerialWSURL)
	assert.Empty(t, st.WSURL)
	assert.Empty(t, st.PageURL)

	path := "/api/v1/vms/" + e.vm + "/console/ticket"
	e.do("POST", path, "", nil).problemIs(t, 401, "unauthenticated")
	e.do("POST", path, e.reader, nil).problemIs(t, 403, "forbidden")
	e.do("POST", path, e.admin, map[string]any{"kind": "spice"}).problemIs(t, 422, "invalid")
	e.do("POST", "/api/v1/vms/"+uuid.NewString()+"/console/ticket", e.admin, nil).problemIs(t, 404, "not_found")
	e.do("POST", "/api/v1/vms/"+e.off+"/console/ticket", e.admin, nil).problemIs(t, 409, "wrong_state")
	e.do("POST", "/api/v1/vms/"+e.off+"/console/ticket", e.admin, map[string]any{"kind": "serial"}).problemIs(t, 409, "wrong_state")
	r := e.do("POST", path, e.admin, nil)
	assert.Empty(t, r.Header.Get("Operation-Id"), "a ticket is not an SDK operation")
}

func TestConsoleWebSocketAuth(t *testing.T) {
	e := newConsoleEnv(t)
	vncPath := "/api/v1/vms/" + e.vm + "/console/ws"
	serialPath := "/api/v1/vms/" + e.vm + "/console/serial/ws"
	origin := e.URL

	t.Run("no token", func(t *testing.T) {
		_, status, detail := dialConsole(t, e.wsURL(vncPath, nil))
		assert.Equal(t, 401, status)
		assert.Contains(t, detail, "ticket")
		_, status, _ = dialConsole(t, e.wsURL(serialPath, nil))
		assert.Equal(t, 401, status)
		_, status, _ = dialConsole(t, e.wsURL(vncPath, nil), "Authorization", "Bearer nope")
		assert.Equal(t, 401, status)
	})
	t.Run("reader", func(t *testing.T) {
		_, status, detail := dialConsole(t, e.wsURL(vncPath, nil), "Authorization", "Bearer "+e.reader)
		assert.Equal(t, 403, status)
		assert.Contains(t, detail, "admin")
		_, status, _ = dialConsole(t, e.wsURL(serialPath, nil), "Authorization", "Bearer "+e.reader)
		assert.Equal(t, 403, status)
	})
	t.Run("admin token", func(t *testing.T) {
		c, status, detail := dialConsole(t, e.wsURL(vncPath, nil), "Authorization", "Bearer "+e.admin)
		require.Equal(t, 101, status, detail)
		assert.Regexp(t, rfbBanner, string(readBinary(t, c)))
	})
	t.Run("ticket", func(t *testing.T) {
		tk := e.ticket(e.vm, "")
		c, status, detail := dialConsole(t, tk.WSURL, "Origin", origin)
		require.Equal(t, 101, status, detail)
		assert.Equal(t, "binary", c.Subprotocol())
		assert.Regexp(t, rfbBanner, string(readBinary(t, c)))
		_, status, detail = dialConsole(t, tk.WSURL, "Origin", origin)
		assert.Equal(t, 401, status, "single use")
		assert.Contains(t, detail, "already used")
	})
	t.Run("ticket of another VM or kind", func(t *testing.T) {
		other := e.ticket(e.vm, "")
		_, status, _ := dialConsole(t, e.wsURL("/api/v1/vms/"+e.off+"/console/ws", url.Values{"ticket": {other.Ticket}}))
		assert.Equal(t, 401, status)
		serial := e.ticket(e.vm, "serial")
		_, status, detail := dialConsole(t, e.wsURL(vncPath, url.Values{"ticket": {serial.Ticket}}))
		assert.Equal(t, 401, status)
		assert.Contains(t, detail, "another VM or another console")
		_, status, _ = dialConsole(t, serial.SerialWSURL)
		assert.Equal(t, 401, status, "the refused use used it up")
	})
	t.Run("bad path and plain GET keep the ticket", func(t *testing.T) {
		tk := e.ticket(e.vm, "")
		_, status, _ := dialConsole(t, e.wsURL("/api/v1/vms/not-a-uuid/console/ws", url.Values{"ticket": {tk.Ticket}}))
		assert.Equal(t, 422, status)
		r := e.do("GET", vncPath+"?ticket="+tk.Ticket, "", nil)
		r.problemIs(t, 426, "invalid")
		c, status, detail := dialConsole(t, tk.WSURL)
		require.Equal(t, 101, status, detail)
		assert.Regexp(t, rfbBanner, string(readBinary(t, c)))
	})
	t.Run("cross-site origin", func(t *testing.T) {
		tk := e.ticket(e.vm, "")
		_, status, detail := dialConsole(t, tk.WSURL, "Origin", "https://evil.example")
		assert.Equal(t, 403, status)
		assert.Contains(t, detail, "evil.example")
		_, status, _ = dialConsole(t, e.wsURL(vncPath, nil), "Authorization", "Bearer "+e.admin, "Origin", "https://evil.example")
		assert.Equal(t, 403, status, "a token does not make another site's page trusted")
		c, status, detail := dialConsole(t, tk.WSURL, "Origin", origin)
		require.Equal(t, 101, status, "the refused origin did not use the ticket up: %s", detail)
		_ = c.CloseNow()
	})
	t.Run("stopped VM", func(t *testing.T) {
		_, status, _ := dialConsole(t, e.wsURL("/api/v1/vms/"+e.off+"/console/ws", nil), "Authorization", "Bearer "+e.admin)
		assert.Equal(t, 409, status)
		_, status, _ = dialConsole(t, e.wsURL("/api/v1/vms/"+uuid.NewString()+"/console/ws", nil), "Authorization", "Bearer "+e.admin)
		assert.Equal(t, 404, status)
	})
}

func TestConsoleConfiguredOrigin(t *testing.T) {
	t.Setenv(refserver.ConsoleOriginsEnv, "https://ops.example.com")
	e := newConsoleEnv(t)
	tk := e.ticket(e.vm, "")
	c, status, detail := dialConsole(t, tk.WSURL, "Origin", "https://ops.example.com")
	require.Equal(t, 101, status, detail)
	assert.Regexp(t, rfbBanner, string(readBinary(t, c)))
	tk = e.ticket(e.vm, "")
	_, status, _ = dialConsole(t, tk.WSURL, "Origin", "https://other.example.com")
	assert.Equal(t, 403, status)
}

// consoleGoroutines counts the goroutines of console sessions: the proxy's and the WebSocket library's.
func consoleGoroutines() int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("refserver.(*consoleProxy)")) || bytes.Contains(g, []byte("github.com/coder/websocket.")) {
			n++
		}
	}
	return n
}

// awaitNoConsoleGoroutines waits until no console session goroutine is left.
func awaitNoConsoleGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for consoleGoroutines() > 0 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			require.Failf(t, "console goroutines left", "%s", buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestConsoleVNCProxy(t *testing.T) {
	e := newConsoleEnv(t)
	awaitNoConsoleGoroutines(t)
	before := runtime.NumGoroutine()

	// Bytes go both ways: the fake VNC server echoes.
	c, status, detail := dialConsole(t, e.ticket(e.vm, "").WSURL)
	require.Equal(t, 101, status, detail)
	assert.Regexp(t, rfbBanner, string(readBinary(t, c)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10/16) // larger than the proxy's buffer
	require.NoError(t, c.Write(ctx, websocket.MessageBinary, []byte("RFB 003.008\n")))
	require.NoError(t, c.Write(ctx, websocket.MessageBinary, big))
	var got []byte
	for len(got) < 12+len(big) {
		got = append(got, readBinary(t, c)...)
	}
	assert.Equal(t, append([]byte("RFB 003.008\n"), big...), got)

	// The browser closes: the VNC connection is closed.
	require.NoError(t, c.Close(websocket.StatusNormalClosure, "bye"))
	select {
	case <-e.hv.vnc.closed:
	case <-time.After(10 * time.Second):
		require.Fail(t, "the VNC connection stayed open after the browser closed")
	}

	// The VNC server closes: the browser gets a normal close.
	c, status, detail = dialConsole(t, e.ticket(e.vm, "").WSURL)
	require.Equal(t, 101, status, detail)
	readBinary(t, c)
	e.hv.vnc.closeAll()
	_, _, err := c.Read(ctx)
	assert.Equal(t, websocket.StatusNormalClosure, websocket.CloseStatus(err), "%v", err)

	// A browser that vanishes (its TCP connection dropped without a close) ends the session too.
	c, status, detail = dialConsole(t, e.ticket(e.vm, "").WSURL)
	require.Equal(t, 101, status, detail)
	readBinary(t, c)
	require.NoError(t, c.CloseNow())
	select {
	case <-e.hv.vnc.closed:
	case <-time.After(10 * time.Second):
		require.Fail(t, "the VNC connection stayed open after the browser vanished")
	}

	// Many sessions at once, ended from both sides: nothing is left behind.
	var wg sync.WaitGroup
	for i := range 20 {
		c, status, detail := dialConsole(t, e.wsURL("/api/v1/vms/"+e.vm+"/console/ws", nil), "Authorization", "Bearer "+e.admin)
		require.Equal(t, 101, status, detail)
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, _, _ = c.Read(ctx) // the banner
			if i%2 == 0 {
				_ = c.Close(websocket.StatusNormalClosure, "")
				return
			}
			// Read until the close the proxy sends when the VNC server hangs up (a browser that stops
			// reading is closed anyway, after the WebSocket library's close timeout).
			_ = c.Write(ctx, websocket.MessageBinary, []byte("x"))
			for {
				if _, _, err := c.Read(ctx); err != nil {
					assert.Equal(t, websocket.StatusNormalClosure, websocket.CloseStatus(err), "%v", err)
					return
				}
			}
		})
	}
	time.Sleep(100 * time.Millisecond)
	e.hv.vnc.closeAll()
	wg.Wait()
	awaitNoConsoleGoroutines(t)
	assert.Eventually(t, func() bool { return runtime.NumGoroutine() <= before+2 }, 10*time.Second, 20*time.Millisecond,
		"goroutines: %d before, %d after", before, runtime.NumGoroutine())
}

func TestConsoleSerialProxy(t *testing.T) {
	e := newConsoleEnv(t)
	c, status, detail := dialConsole(t, e.ticket(e.vm, "serial").SerialWSURL)
	require.Equal(t, 101, status, detail)
	var guest net.Conn
	select {
	case guest = <-e.hv.serial:
	case <-time.After(10 * time.Second):
		require.Fail(t, "no serial console opened")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Guest output arrives as text, valid UTF-8 even when a character is split between writes.
	go func() {
		_, _ = guest.Write([]byte("login: \xe2\x9c"))
		_, _ = guest.Write([]byte("\x93 ok\r\n\xff"))
	}()
	var text strings.Builder
	for !strings.Contains(text.String(), "\uFFFD") {
		typ, b, err := c.Read(ctx)
		require.NoError(t, err)
		require.Equal(t, websocket.MessageText, typ)
		text.Write(b)
	}
	assert.Equal(t, "login: ✓ ok\r\n\uFFFD", text.String(), "a byte that is not UTF-8 is U+FFFD")

	// Typed text reaches the guest.
	require.NoError(t, c.Write(ctx, websocket.MessageText, []byte("root\r")))
	buf := make([]byte, 16)
	require.NoError(t, guest.SetReadDeadline(time.Now().Add(10*time.Second)))
	n, err := io.ReadAtLeast(guest, buf, 5)
	require.NoError(t, err)
	assert.Equal(t, "root\r", string(buf[:n]))

	// The console ends (the VM stopped): the browser gets a normal close.
	require.NoError(t, guest.Close())
	_, _, err = c.Read(ctx)
	assert.Equal(t, websocket.StatusNormalClosure, websocket.CloseStatus(err), "%v", err)
	awaitNoConsoleGoroutines(t)

	// The browser closes: the serial console is closed.
	c, status, detail = dialConsole(t, e.wsURL("/api/v1/vms/"+e.vm+"/console/serial/ws", nil), "Authorization", "Bearer "+e.admin)
	require.Equal(t, 101, status, detail)
	guest = <-e.hv.serial
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
	_ = guest.SetReadDeadline(time.Now().Add(10 * time.Second)) // fails when the proxy has closed its end already
	_, err = guest.Read(buf)
	assert.True(t, errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe), "%v", err)
	awaitNoConsoleGoroutines(t)
}

func TestConsolePage(t *testing.T) {
	e := newConsoleEnv(t)
	tk := e.ticket(e.vm, "")
	r := e.do("GET", strings.TrimPrefix(tk.PageURL, e.URL), "", nil)
	require.Equal(t, 200, r.Status, "%s", r.Body)
	assert.Equal(t, "text/html; charset=utf-8", r.Header.Get("Content-Type"))
	csp := r.Header.Get("Content-Security-Policy")
	assert.Contains(t, csp, "script-src 'self';")
	assert.Contains(t, csp, "default-src 'none'")
	assert.Contains(t, csp, "connect-src 'self'")
	assert.Equal(t, "no-store", r.Header.Get("Cache-Control"), "its URL carries a ticket")
	assert.Equal(t, "no-referrer", r.Header.Get("Referrer-Policy"))
	assert.Contains(t, string(r.Body), `<script type="module" src="console.js">`)
	// Nothing comes from elsewhere: every src and href is a file of the page's own directory (or the empty
	// icon, so that the browser does not ask for /favicon.ico).
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(string(r.Body), -1) {
		assert.Regexp(t, `^([a-z]+\.(js|css)|data:,)$`, m[1])
	}
	assert.NotContains(t, string(r.Body), "<script>", "no inline script")

	for path, ct := range map[string]string{
		"/console/console.js":                      "text/javascript; charset=utf-8",
		"/console/core/rfb.js":                     "text/javascript; charset=utf-8",
		"/console/console.css":                     "text/css; charset=utf-8",
		"/console/LICENSE.txt":                     "text/plain; charset=utf-8",
		"/console/vendor/pako/lib/zlib/inflate.js": "text/javascript; charset=utf-8",
	} {
		r := e.do("GET", path, "", nil)
		require.Equal(t, 200, r.Status, path)
		assert.Equal(t, ct, r.Header.Get("Content-Type"), path)
		assert.NotEmpty(t, r.Header.Get("ETag"), path)
		assert.Equal(t, 304, e.do("GET", path, "", nil, "If-None-Match", r.Header.Get("ETag")).Status, path)
	}
	js := e.do("GET", "/console/console.js", "", nil)
	assert.Contains(t, string(js.Body), "import RFB from './core/rfb.js'")
	assert.NotRegexp(t, `https?://`, string(js.Body), "no URL of elsewhere")

	e.do("GET", "/console/core/", "", nil).problemIs(t, 404, "not_found")
	e.do("GET", "/console/nope.js", "", nil).problemIs(t, 404, "not_found")
	req, err := http.NewRequest("GET", e.URL+"/console?vm=x", nil)
	require.NoError(t, err)
	res, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, 302, res.StatusCode)
	assert.Equal(t, "console/?vm=x", res.Header.Get("Location"))
}
