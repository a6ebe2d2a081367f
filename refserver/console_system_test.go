package refserver_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/testenv"
	"github.com/openvair/openvair/internal/testenv/tinyguest"
	"github.com/openvair/openvair/refserver"
)

// textSocket collects the text messages of a serial console WebSocket in the background.
type textSocket struct {
	c    *websocket.Conn
	mu   sync.Mutex
	buf  strings.Builder
	err  error
	done chan struct{}
}

func readTextSocket(t *testing.T, c *websocket.Conn) *textSocket {
	s := &textSocket{c: c, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			typ, b, err := c.Read(context.Background()) // ended by closing c
			s.mu.Lock()
			if err != nil {
				s.err = err
				s.mu.Unlock()
				return
			}
			if typ != websocket.MessageText {
				s.err = fmt.Errorf("a %v message on the serial console", typ)
			}
			s.buf.Write(b)
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { _ = c.CloseNow(); <-s.done })
	return s
}

func (s *textSocket) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// await waits until the console said line.
func (s *textSocket) await(t *testing.T, line string) {
	t.Helper()
	deadline := time.Now().Add(guestTimeout)
	for !strings.Contains(s.text(), line) {
		s.mu.Lock()
		err := s.err
		s.mu.Unlock()
		require.NoError(t, err, "the serial console said:\n%s", s.text())
		if time.Now().After(deadline) {
			require.Failf(t, "serial console", "no %q within %s; it said:\n%s", line, guestTimeout, s.text())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestConsoleSystem boots the tiny guest under the system daemon (QEMU as libvirt-qemu, TCG) with VNC
// graphics and opens its consoles through the server: the serial console WebSocket shows what the guest
// prints and takes what is typed, the VNC WebSocket speaks RFB, and a real browser (headless Chromium
// driving the noVNC page) shows the guest's screen.
func TestConsoleSystem(t *testing.T) {
	e := start(t, envOptions{system: true})
	st := e.localStorage("pool", filepath.Join(e.dir, "pool"))
	img := e.uploadFile(st.ID, "tinyguest", tinyguest.ISO(t))
	v := e.tinyGuestVM("console", st.ID, img.ID)
	id := v.ID.String()
	require.Equal(t, "vnc", v.Graphics.Type)
	e.call("POST", "/api/v1/vms/"+id+"/start", nil, 200, &v)

	// (b) The serial console, opened with a ticket as a browser would. The guest printed before it was open:
	// once it has booted (its console log says so), a hard reset makes it boot again, and print again. (A
	// reset early in the boot can hang the tiny guest under TCG.)
	e.awaitConsole(v.ID, tinyguest.LineMarker)
	tk := e.ticket(id, "serial")
	c, status, detail := dialConsole(t, tk.SerialWSURL)
	require.Equal(t, 101, status, detail)
	serial := readTextSocket(t, c)
	e.call("POST", "/api/v1/vms/"+id+"/reset", nil, 200, nil)
	serial.await(t, tinyguest.LineBooted)
	serial.await(t, tinyguest.LineMarker)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, c.Write(ctx, websocket.MessageText, []byte("typed-through-the-websocket\r")))
	serial.await(t, "typed-through-the-websocket") // echoed by the guest's tty
	_, status, _ = dialConsole(t, e.wsURL("/api/v1/vms/"+id+"/console/serial/ws", nil), "Authorization", "Bearer "+e.admin)
	assert.Equal(t, 503, status, "one serial console client at a time (VIR_DOMAIN_CONSOLE_SAFE)")
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
	<-serial.done

	// (a) The VNC WebSocket, with the token: the RFB greeting of QEMU's VNC server, which listens on loopback.
	var con refserver.Console
	e.call("GET", "/api/v1/vms/"+id+"/console", nil, 200, &con)
	assert.Equal(t, "127.0.0.1", con.Host)
	c, status, detail = dialConsole(t, e.wsURL("/api/v1/vms/"+id+"/console/ws", nil), "Authorization", "Bearer "+e.admin)
	require.Equal(t, 101, status, detail)
	assert.Equal(t, "binary", c.Subprotocol())
	banner := readBinary(t, c)
	assert.Regexp(t, rfbBanner, string(banner))
	t.Logf("VNC greeting through the WebSocket: %q", banner)
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))

	// (c) A real browser shows the guest's screen (a subtest: it alone skips without Chromium).
	t.Run("browser", func(t *testing.T) {
		shot := browserScreenshot(t, e, id)
		t.Logf("screenshot: %s (canvas %dx%d at %v in the page; %d of %d canvas pixels not black, %d bright)",
			shot.path, shot.canvasW, shot.canvasH, shot.rect, shot.lit, shot.total, shot.bright)
		assert.Greater(t, shot.lit, 300, "text on the guest's screen")
		assert.Greater(t, shot.bright, 300, "bright text pixels (VGA text is light grey on black)")
	})

	awaitNoConsoleGoroutines(t)
}

// shotResult is what browserScreenshot saw.
type shotResult struct {
	path             string
	canvasW, canvasH int
	rect             image.Rectangle
	total            int // pixels of the canvas in the screenshot
	lit              int // pixels that are not black
	bright           int // pixels with a channel at 128 or more
}

// browserScreenshot opens the noVNC page with a fresh ticket in headless Chromium (driven over the DevTools
// protocol: a plain --screenshot would race the connection), waits until the page is connected and the
// guest's screen shows text, and keeps the last screenshot as console.png in the test's artifact directory
// (t.ArtifactDir: a temporary directory, kept under -outputdir with go test -artifacts), with Chromium's log.
func browserScreenshot(t *testing.T, e *env, vmID string) shotResult {
	t.Helper()
	bin := testenv.LookPath(t, "chromium")
	if p := "/usr/lib/chromium/chromium"; fileExists(p) {
		bin = p // the binary itself, not Debian's wrapper script
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cdp := startChromium(ctx, t, bin, t.TempDir(), t.ArtifactDir())

	require.NoError(t, cdp.call(ctx, "Log.enable", map[string]any{}, &struct{}{}))
	tk := e.ticket(vmID, "")
	require.NotEmpty(t, tk.PageURL)
	var nav struct {
		ErrorText string `json:"errorText"`
	}
	require.NoError(t, cdp.call(ctx, "Page.navigate", map[string]any{"url": tk.PageURL}, &nav))
	require.Empty(t, nav.ErrorText)

	// Connected, with the guest's framebuffer size.
	type pageState struct {
		State   string   `json:"state"`
		Blocked []string `json:"blocked"`
		Detail  string   `json:"detail"`
		Search  string   `json:"search"`
		W       int      `json:"w"`
		H       int      `json:"h"`
		RX      float64  `json:"rx"`
		RY      float64  `json:"ry"`
		RW      float64  `json:"rw"`
		RH      float64  `json:"rh"`
	}
	const probe = `(() => {
		const s = window.openvairConsole || {};
		const c = document.querySelector('#screen canvas');
		const r = c ? c.getBoundingClientRect() : {x: 0, y: 0, width: 0, height: 0};
		return JSON.stringify({state: s.state || '', detail: s.detail || '', blocked: s.blocked || [], search: location.search,
			w: c ? c.width : 0, h: c ? c.height : 0, rx: r.x, ry: r.y, rw: r.width, rh: r.height});
	})()`
	var ps pageState
	for {
		var res struct {
			Result struct {
				Value string `json:"value"`
			} `json:"result"`
		}
		require.NoError(t, cdp.call(ctx, "Runtime.evaluate", map[string]any{"expression": probe, "returnByValue": true}, &res))
		if res.Result.Value != "" {
			require.NoError(t, json.Unmarshal([]byte(res.Result.Value), &ps))
		}
		if ps.State == "connected" && ps.W > 0 && ps.H > 0 {
			break
		}
		require.NotContains(t, []string{"error", "disconnected", "password"}, ps.State, "the page: %s", ps.Detail)
		require.NoError(t, ctx.Err(), "the page did not connect: %+v", ps)
		time.Sleep(250 * time.Millisecond)
	}
	assert.NotContains(t, ps.Search, "ticket", "the page drops the ticket from its URL")
	assert.Empty(t, ps.Blocked, "the page's Content-Security-Policy blocks nothing noVNC needs")
	for _, l := range cdp.log {
		assert.NotContains(t, l.Text, "Content Security Policy", "the page's policy blocked something: %+v", l)
		if l.Level == "error" {
			t.Logf("the page logged: %+v", l)
		}
	}
	_, status, _ := dialConsole(t, tk.WSURL)
	assert.Equal(t, 401, status, "the browser used the ticket up")

	// Screenshots until the guest's text shows (noVNC draws the first update just after connecting).
	rect := image.Rect(int(ps.RX+0.5), int(ps.RY+0.5), int(ps.RX+ps.RW+0.5), int(ps.RY+ps.RH+0.5))
	out := shotResult{path: filepath.Join(t.ArtifactDir(), "console.png"), canvasW: ps.W, canvasH: ps.H, rect: rect}
	for {
		var shot struct {
			Data string `json:"data"`
		}
		require.NoError(t, cdp.call(ctx, "Page.captureScreenshot", map[string]any{"format": "png"}, &shot))
		raw, err := base64.StdEncoding.DecodeString(shot.Data)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(out.path, raw, 0o644))
		img, err := png.Decode(bytes.NewReader(raw))
		require.NoError(t, err)
		r := rect.Intersect(img.Bounds())
		require.False(t, r.Empty(), "canvas %v outside the screenshot %v", rect, img.Bounds())
		out.total, out.lit, out.bright = r.Dx()*r.Dy(), 0, 0
		for y := r.Min.Y; y < r.Max.Y; y++ {
			for x := r.Min.X; x < r.Max.X; x++ {
				cr, cg, cb, _ := img.At(x, y).RGBA()
				m := max(cr, cg, cb) >> 8
				if m > 16 {
					out.lit++
				}
				if m >= 128 {
					out.bright++
				}
			}
		}
		if out.bright > 300 || ctx.Err() != nil {
			return out
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// cdpConn is a connection to a page of Chromium over the DevTools protocol, for one caller at a time. It
// keeps the page's log entries (Log.entryAdded, once Log.enable ran): CSP violations are among them.
type cdpConn struct {
	c   *websocket.Conn
	id  int
	log []cdpLogEntry
}

// cdpLogEntry is one entry of the page's log.
type cdpLogEntry struct {
	Source string `json:"source"`
	Level  string `json:"level"`
	Text   string `json:"text"`
	URL    string `json:"url"`
}

// call sends a command and decodes its result into out, skipping the events in between.
func (p *cdpConn) call(ctx context.Context, method string, params, out any) error {
	p.id++
	msg, err := json.Marshal(map[string]any{"id": p.id, "method": method, "params": params})
	if err != nil {
		return err
	}
	if err := p.c.Write(ctx, websocket.MessageText, msg); err != nil {
		return err
	}
	for {
		_, b, err := p.c.Read(ctx)
		if err != nil {
			return err
		}
		var r struct {
			ID     int             `json:"id"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			return err
		}
		if r.Method == "Log.entryAdded" {
			var ev struct {
				Entry cdpLogEntry `json:"entry"`
			}
			if json.Unmarshal(r.Params, &ev) == nil {
				p.log = append(p.log, ev.Entry)
			}
		}
		if r.ID != p.id {
			continue // an event
		}
		if r.Error != nil {
			return fmt.Errorf("%s: %d %s", method, r.Error.Code, r.Error.Message)
		}
		return json.Unmarshal(r.Result, out)
	}
}

// startChromium runs headless Chromium in its own process group with a profile under dir and its log in
// logDir, and connects to its first page. The test ends it, and only it, by killing its process group.
func startChromium(ctx context.Context, t *testing.T, bin, dir, logDir string) *cdpConn {
	t.Helper()
	profile := filepath.Join(dir, "profile")
	logPath := filepath.Join(logDir, "chromium.log")
	logf, err := os.Create(logPath)
	require.NoError(t, err)
	defer logf.Close()
	cmd := exec.CommandContext(ctx, bin, "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1024,768",
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--user-data-dir="+profile,
		"--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--disable-default-apps", "--hide-scrollbars", "about:blank")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	require.NoError(t, cmd.Start())
	pgid := cmd.Process.Pid
	t.Cleanup(func() {
		_ = syscall.Kill(-pgid, syscall.SIGKILL) // Chromium and its helpers, which share its process group
		_ = cmd.Wait()
	})

	// Chromium writes the port it chose to DevToolsActivePort in the profile.
	var port string
	for {
		if f, err := os.Open(filepath.Join(profile, "DevToolsActivePort")); err == nil {
			sc := bufio.NewScanner(f)
			if sc.Scan() {
				port = strings.TrimSpace(sc.Text())
			}
			f.Close()
		}
		if port != "" {
			break
		}
		if ctx.Err() != nil {
			b, _ := os.ReadFile(logPath)
			require.Failf(t, "chromium did not start", "%s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+port+"/json/list", nil)
	require.NoError(t, err)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	var targets []struct {
		Type string `json:"type"`
		WS   string `json:"webSocketDebuggerUrl"`
	}
	require.NoError(t, json.NewDecoder(res.Body).Decode(&targets))
	for _, tg := range targets {
		if tg.Type == "page" {
			c, _, err := websocket.Dial(ctx, tg.WS, nil)
			require.NoError(t, err)
			c.SetReadLimit(64 << 20) // screenshots
			t.Cleanup(func() { _ = c.CloseNow() })
			return &cdpConn{c: c}
		}
	}
	require.Failf(t, "no page", "chromium has no page target: %+v", targets)
	return nil
}
