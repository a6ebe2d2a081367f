package refserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"
)

// ConsoleOriginsEnv names the environment variable that lists, comma-separated, the browser origins
// allowed to open console WebSockets besides the request's own host: "https://console.example.com" (scheme
// and host must match) or "console.example.com:8443" (any scheme). The server reads it when it is built.
const ConsoleOriginsEnv = "OPENVAIR_CONSOLE_ORIGINS"

// Console WebSocket timings.
const (
	// consoleOpenTimeout bounds everything before the upgrade: finding the console, connecting to it.
	consoleOpenTimeout = 30 * time.Second
	// consoleHandshakeTimeout bounds writing the 101 answer of the WebSocket handshake.
	consoleHandshakeTimeout = 10 * time.Second
	// consolePingInterval is how often an open console pings its browser; a ping unanswered within
	// consolePingTimeout, or a message the browser does not take within consoleWriteTimeout, ends it.
	consolePingInterval = 30 * time.Second
	consolePingTimeout  = 15 * time.Second
	consoleWriteTimeout = 30 * time.Second
	// consoleReadLimit is the largest message a browser may send (noVNC's clipboard, pasted text).
	consoleReadLimit = 1 << 20
)

// consoleProxy serves the console WebSockets: it checks the Origin, the token or ticket, opens the
// console and pipes bytes both ways until either side ends.
type consoleProxy struct {
	s       *server
	tickets *ticketStore
	// origins are the configured origins allowed besides the request's host (ConsoleOriginsEnv).
	origins []string
	// pingInterval, pingTimeout and writeTimeout keep sessions from outliving a vanished browser.
	pingInterval, pingTimeout, writeTimeout time.Duration
	// dial connects to a VNC server.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// registerConsole registers the console ticket operation on the API, and on the mux (Huma does not do
// WebSockets) the VNC and serial console WebSockets and the noVNC page at /console/. The WebSocket handlers
// authenticate themselves: the bearer token of an admin, or a ticket.
func (s *server) registerConsole(api huma.API, mux *http.ServeMux) {
	var d net.Dialer
	c := &consoleProxy{s: s, tickets: newTicketStore(), origins: parseOrigins(os.Getenv(ConsoleOriginsEnv)),
		pingInterval: consolePingInterval, pingTimeout: consolePingTimeout, writeTimeout: consoleWriteTimeout,
		dial: d.DialContext}
	s.registerConsoleTicket(api, c.tickets)
	mux.HandleFunc("GET /api/v1/vms/{id}/console/ws", func(w http.ResponseWriter, r *http.Request) { c.serve(w, r, ConsoleVNC) })
	mux.HandleFunc("GET /api/v1/vms/{id}/console/serial/ws", func(w http.ResponseWriter, r *http.Request) { c.serve(w, r, ConsoleSerial) })
	registerConsolePage(mux)
}

// parseOrigins splits a comma-separated list of origins, dropping blanks and trailing slashes.
func parseOrigins(v string) []string {
	var out []string
	for _, o := range strings.Split(v, ",") {
		if o = strings.TrimSuffix(strings.TrimSpace(o), "/"); o != "" {
			out = append(out, o)
		}
	}
	return out
}

// checkOrigin refuses a WebSocket handshake a browser sends from another site (cross-site WebSocket
// hijacking): an Origin must be an http(s) origin whose host is the request's Host, or one of the allowed
// origins ("scheme://host[:port]", or "host[:port]" for any scheme). A handshake without Origin does not
// come from a browser's page and is allowed (its token or ticket still has to be valid).
func checkOrigin(r *http.Request, allowed []string) error {
	vals := r.Header.Values("Origin")
	if len(vals) == 0 {
		return nil
	}
	if len(vals) > 1 {
		return errors.New("more than one Origin header")
	}
	origin := vals[0]
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return fmt.Errorf("the Origin %q is not an http(s) origin", truncate(origin, 256))
	}
	if strings.EqualFold(u.Host, r.Host) {
		return nil
	}
	for _, a := range allowed {
		if strings.EqualFold(a, u.Scheme+"://"+u.Host) || strings.EqualFold(a, u.Host) {
			return nil
		}
	}
	return fmt.Errorf("the Origin %q may not open consoles on %q (allow it with %s)", truncate(origin, 256),
		truncate(r.Host, 256), ConsoleOriginsEnv)
}

// isWebSocketUpgrade reports whether r asks for a WebSocket.
func isWebSocketUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// consoleAuth is who opens a console, for the session's log.
type consoleAuth struct {
	requester string // the token's name (for a ticket: the name of the token that asked for it)
	by        string // "token" or "ticket"
}

// authorize checks the request's Authorization header (role admin) or, without one, its ticket, and the
// VM id; p is the problem to answer otherwise. The ticket is used up only when everything else is right.
func (c *consoleProxy) authorize(w http.ResponseWriter, r *http.Request, kind string) (id uuid.UUID, who consoleAuth, p *Problem) {
	authz := r.Header.Get("Authorization")
	ticket := r.URL.Query().Get("ticket")
	if authz != "" {
		name, role, wwwAuth, p := c.s.authenticate(authz)
		if p != nil {
			w.Header().Set("WWW-Authenticate", wwwAuth)
			return uuid.Nil, who, p
		}
		if role != RoleAdmin {
			return uuid.Nil, who, newProblem(http.StatusForbidden, "forbidden",
				fmt.Sprintf("token %q has role %q, which may not open a console (role admin only)", name, role))
		}
		who = consoleAuth{requester: name, by: "token"}
	} else if ticket == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="openvair"`)
		return uuid.Nil, who, newProblem(http.StatusUnauthorized, "unauthenticated",
			"a bearer token (Authorization: Bearer <token>) or a console ticket (?ticket=, from POST /api/v1/vms/{id}/console/ticket) is required")
	}
	id, err := parseID(r.PathValue("id"))
	if err != nil {
		return uuid.Nil, who, err.(*Problem)
	}
	if !isWebSocketUpgrade(r) {
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "websocket")
		return uuid.Nil, who, newProblem(http.StatusUpgradeRequired, "invalid", "this is a WebSocket: the request must ask for an upgrade to websocket")
	}
	if who.by == "" {
		requester, err := c.tickets.consume(ticket, id, kind)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="openvair", error="invalid_token"`)
			return uuid.Nil, who, newProblem(http.StatusUnauthorized, "unauthenticated", err.Error())
		}
		who = consoleAuth{requester: requester, by: "ticket"}
	}
	return id, who, nil
}

// serve answers a console WebSocket of the given kind.
func (c *consoleProxy) serve(w http.ResponseWriter, r *http.Request, kind string) {
	fail := func(p *Problem) {
		p.Instance = truncate(r.URL.Path, 256)
		writeProblemHTTP(w, p)
	}
	if err := checkOrigin(r, c.origins); err != nil {
		fail(newProblem(http.StatusForbidden, "forbidden", err.Error()))
		return
	}
	id, who, p := c.authorize(w, r, kind)
	if p != nil {
		fail(p)
		return
	}

	ctx, cancel := context.WithTimeout(r.Context(), consoleOpenTimeout)
	backend, err := c.open(ctx, id, kind)
	if err != nil {
		p, ok := err.(*Problem)
		if !ok {
			p = c.s.problemOf(ctx, err)
		}
		fail(p)
		cancel()
		return
	}
	cancel()

	rc := http.NewResponseController(w)
	// net/http clears the deadline when the connection is hijacked, after the 101 answer is written.
	_ = rc.SetWriteDeadline(time.Now().Add(consoleHandshakeTimeout))
	// checkOrigin has checked the Origin already, and answered a refused one with a problem.
	opts := &websocket.AcceptOptions{InsecureSkipVerify: true}
	if kind == ConsoleVNC {
		opts.Subprotocols = []string{"binary"} // noVNC asks for it
	}
	ws, err := websocket.Accept(w, r, opts)
	if err != nil {
		_ = backend.Close()
		c.s.log.Info("console: handshake failed", "request_id", requestIDOf(r.Context()), "vm", id, "kind", kind, "err", err)
		return
	}
	ws.SetReadLimit(consoleReadLimit)

	start := time.Now()
	c.s.log.Info("console: opened", "request_id", requestIDOf(r.Context()), "vm", id, "kind", kind,
		"requester", who.requester, "auth", who.by, "remote", r.RemoteAddr)
	st := c.pipe(ws, backend, kind)
	c.s.log.Info("console: closed", "request_id", requestIDOf(r.Context()), "vm", id, "kind", kind,
		"requester", who.requester, "bytes_from_browser", st.in.Load(), "bytes_to_browser", st.out.Load(),
		"duration", time.Since(start).Round(time.Millisecond), "end", st.end())
}

// open connects to a VM's console: its VNC server over TCP, or its serial console through the SDK.
func (c *consoleProxy) open(ctx context.Context, id uuid.UUID, kind string) (io.ReadWriteCloser, error) {
	if kind == ConsoleSerial {
		return c.s.sys.VMs.SerialConsole(ctx, id)
	}
	con, err := c.s.sys.VMs.Console(ctx, id)
	if err != nil {
		return nil, err
	}
	if con.Type != ConsoleVNC {
		return nil, newProblem(http.StatusUnprocessableEntity, "unsupported", "the VM's graphical console is "+con.Type+"; only VNC is proxied")
	}
	host := con.Host
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	addr := net.JoinHostPort(host, strconv.Itoa(con.Port))
	conn, err := c.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, newProblem(http.StatusBadGateway, "backend_failed", "cannot connect to the VM's VNC server at "+addr+": "+err.Error())
	}
	return conn, nil
}

// pipeStats is what a console session moved, and why it ended.
type pipeStats struct {
	in, out atomic.Int64
	mu      sync.Mutex
	why     []string // every side's reason to stop, the first first
}

// end says why the session ended.
func (st *pipeStats) end() string {
	st.mu.Lock()
	defer st.mu.Unlock()
	return strings.Join(st.why, "; ")
}

// pipe copies the browser's messages to the backend and the backend's bytes to the browser (binary
// messages for VNC; text for the serial console, as valid UTF-8), until either side ends: then both are
// closed. It returns once every goroutine it started has ended.
func (c *consoleProxy) pipe(ws *websocket.Conn, backend io.ReadWriteCloser, kind string) *pipeStats {
	st := &pipeStats{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var once sync.Once
	stop := func(why string) {
		if why != "" {
			st.mu.Lock()
			st.why = append(st.why, why)
			st.mu.Unlock()
		}
		once.Do(func() {
			_ = backend.Close()
			cancel()
		})
	}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { // browser → console
		defer wg.Done()
		stop(c.fromBrowser(ctx, ws, backend, st))
	}()
	go func() { // console → browser
		defer wg.Done()
		why := c.toBrowser(ctx, ws, backend, kind, st)
		if ctx.Err() == nil {
			// The console ended first: a graceful close tells the browser (bounded by the library's own
			// timeout). When the browser's side ended first there is nobody to tell.
			_ = ws.Close(websocket.StatusNormalClosure, "the console ended")
		}
		stop(why)
	}()
	go func() { // keepalive
		defer wg.Done()
		if why := c.keepalive(ctx, ws); why != "" {
			_ = ws.CloseNow()
			stop(why)
		}
	}()
	wg.Wait()
	_ = ws.CloseNow()
	return st
}

// fromBrowser writes every message of the browser to the backend; it returns why it stopped.
func (c *consoleProxy) fromBrowser(ctx context.Context, ws *websocket.Conn, backend io.Writer, st *pipeStats) string {
	for {
		_, rd, err := ws.Reader(ctx)
		if err != nil {
			if s := websocket.CloseStatus(err); s != -1 {
				return "browser closed (" + s.String() + ")"
			}
			return "browser: " + err.Error()
		}
		n, err := io.Copy(backend, rd)
		st.in.Add(n)
		if err != nil {
			return "console write: " + err.Error()
		}
	}
}

// toBrowser sends what the backend says to the browser; it returns why it stopped.
func (c *consoleProxy) toBrowser(ctx context.Context, ws *websocket.Conn, backend io.Reader, kind string, st *pipeStats) string {
	buf := make([]byte, 32<<10)
	var text utf8Stream
	send := func(typ websocket.MessageType, p []byte) error {
		wctx, cancel := context.WithTimeout(ctx, c.writeTimeout)
		defer cancel()
		err := ws.Write(wctx, typ, p)
		if err == nil {
			st.out.Add(int64(len(p)))
		} else if errors.Is(wctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("the browser took nothing for %s", c.writeTimeout)
		}
		return err
	}
	for {
		n, rerr := backend.Read(buf)
		if n > 0 {
			var err error
			if kind == ConsoleSerial {
				if s := text.next(buf[:n]); s != "" {
					err = send(websocket.MessageText, []byte(s))
				}
			} else {
				err = send(websocket.MessageBinary, buf[:n])
			}
			if err != nil {
				return "browser write: " + err.Error()
			}
		}
		if rerr != nil {
			if kind == ConsoleSerial {
				if s := text.flush(); s != "" {
					_ = send(websocket.MessageText, []byte(s))
				}
			}
			if errors.Is(rerr, io.EOF) {
				return "console ended"
			}
			return "console read: " + rerr.Error()
		}
	}
}

// keepalive pings the browser until the session ends ("" then), and returns why when a ping is not answered
// in time.
func (c *consoleProxy) keepalive(ctx context.Context, ws *websocket.Conn) string {
	t := time.NewTicker(c.pingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ""
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, c.pingTimeout)
			err := ws.Ping(pctx)
			timedOut := errors.Is(pctx.Err(), context.DeadlineExceeded)
			cancel()
			switch {
			case timedOut:
				return fmt.Sprintf("the browser did not answer a ping within %s", c.pingTimeout)
			case err != nil:
				return "" // the session is ending: the other goroutines say why
			}
		}
	}
}

// utf8Stream cuts a byte stream into valid UTF-8 texts, for text messages: a character split between two
// reads is sent whole with the second, and bytes that are not UTF-8 become U+FFFD.
type utf8Stream struct{ carry []byte }

// next returns the text of p, keeping an incomplete character at its end for the next call.
func (u *utf8Stream) next(p []byte) string {
	b := append(u.carry, p...)
	cut := len(b)
	for i := len(b) - 1; i >= 0 && i > len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				cut = i
			}
			break
		}
	}
	u.carry = append([]byte(nil), b[cut:]...)
	return strings.ToValidUTF8(string(b[:cut]), "\uFFFD")
}

// flush returns what is left at the end of the stream.
func (u *utf8Stream) flush() string {
	s := strings.ToValidUTF8(string(u.carry), "\uFFFD")
	u.carry = nil
	return s
}
