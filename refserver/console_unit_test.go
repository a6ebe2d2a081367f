package refserver

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// clockStore is a ticket store on a clock the test moves.
func clockStore() (*ticketStore, *time.Time) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s := newTicketStore()
	s.now = func() time.Time { return now }
	return s, &now
}

func TestConsoleTicketSingleUse(t *testing.T) {
	s, now := clockStore()
	vm := uuid.New()
	secret, expires, err := s.issue(vm, ConsoleVNC, "alice")
	require.NoError(t, err)
	assert.Equal(t, now.Add(60*time.Second), expires, "valid 60 s")
	raw, err := base64.RawURLEncoding.DecodeString(secret)
	require.NoError(t, err, "base64url without padding")
	assert.Len(t, raw, 32, "32 random bytes")
	other, _, err := s.issue(vm, ConsoleVNC, "alice")
	require.NoError(t, err)
	assert.NotEqual(t, secret, other, "random")

	who, err := s.consume(secret, vm, ConsoleVNC)
	require.NoError(t, err)
	assert.Equal(t, "alice", who, "the ticket names who asked for it")
	_, err = s.consume(secret, vm, ConsoleVNC)
	assert.ErrorIs(t, err, errTicketInvalid, "used up by its first use")
	_, err = s.consume("not-a-ticket", vm, ConsoleVNC)
	assert.ErrorIs(t, err, errTicketInvalid)
	_, err = s.consume("", vm, ConsoleVNC)
	assert.ErrorIs(t, err, errTicketInvalid)
}

func TestConsoleTicketBoundToVMAndKind(t *testing.T) {
	s, _ := clockStore()
	vm := uuid.New()
	for name, c := range map[string]struct {
		vm   uuid.UUID
		kind string
	}{"other VM": {uuid.New(), ConsoleVNC}, "other kind": {vm, ConsoleSerial}} {
		t.Run(name, func(t *testing.T) {
			secret, _, err := s.issue(vm, ConsoleVNC, "alice")
			require.NoError(t, err)
			_, err = s.consume(secret, c.vm, c.kind)
			assert.ErrorIs(t, err, errTicketMismatch)
			_, err = s.consume(secret, vm, ConsoleVNC)
			assert.ErrorIs(t, err, errTicketInvalid, "a refused presentation uses the ticket up too")
		})
	}
	secret, _, err := s.issue(vm, ConsoleSerial, "bob")
	require.NoError(t, err)
	who, err := s.consume(secret, vm, ConsoleSerial)
	require.NoError(t, err)
	assert.Equal(t, "bob", who)
}

func TestConsoleTicketExpiry(t *testing.T) {
	s, now := clockStore()
	vm := uuid.New()
	late, _, err := s.issue(vm, ConsoleVNC, "alice")
	require.NoError(t, err)
	*now = now.Add(59 * time.Second)
	onTime, _, err := s.issue(vm, ConsoleVNC, "alice")
	require.NoError(t, err)
	*now = now.Add(time.Second) // late is exactly 60 s old
	_, err = s.consume(late, vm, ConsoleVNC)
	assert.ErrorIs(t, err, errTicketInvalid, "expired after 60 s")
	_, err = s.consume(onTime, vm, ConsoleVNC)
	assert.NoError(t, err, "59 s old: still valid")

	// Expired tickets are pruned: they do not count towards the limit and leave memory.
	s.max = 3
	for range 3 {
		_, _, err := s.issue(vm, ConsoleVNC, "alice")
		require.NoError(t, err)
	}
	_, _, err = s.issue(vm, ConsoleVNC, "alice")
	assert.ErrorIs(t, err, errTooManyTickets, "at most max outstanding")
	*now = now.Add(61 * time.Second)
	_, _, err = s.issue(vm, ConsoleVNC, "alice")
	require.NoError(t, err)
	assert.Equal(t, 1, s.count(), "the expired ones were pruned")
}

func TestConsoleCheckOrigin(t *testing.T) {
	allowed := parseOrigins(" https://ops.example.com/ , console.example.net:8443,,")
	assert.Equal(t, []string{"https://ops.example.com", "console.example.net:8443"}, allowed)
	cases := []struct {
		host   string
		origin []string
		ok     bool
	}{
		{"127.0.0.1:8080", nil, true},                                       // no Origin: not a browser page
		{"127.0.0.1:8080", []string{"http://127.0.0.1:8080"}, true},         // same host
		{"vms.example.com", []string{"https://VMS.example.com"}, true},      // case-insensitive
		{"vms.example.com", []string{"https://vms.example.com/"}, true},     // a trailing slash is still an origin
		{"vms.example.com", []string{"https://evil.example"}, false},        // cross-site
		{"vms.example.com", []string{"https://vms.example.com:444"}, false}, // another port is another origin
		{"vms.example.com", []string{"null"}, false},                        // sandboxed frames, file: pages
		{"vms.example.com", []string{"file://vms.example.com"}, false},
		{"vms.example.com", []string{"https://vms.example.com/x"}, false},
		{"vms.example.com", []string{"https://vms.example.com", "https://vms.example.com"}, false},
		{"vms.example.com", []string{"https://ops.example.com"}, true},         // configured, scheme and host
		{"vms.example.com", []string{"http://ops.example.com"}, false},         // configured for https only
		{"vms.example.com", []string{"http://console.example.net:8443"}, true}, // configured host, any scheme
	}
	for _, c := range cases {
		r, err := http.NewRequest(http.MethodGet, "http://"+c.host+"/api/v1/vms/x/console/ws", nil)
		require.NoError(t, err)
		for _, o := range c.origin {
			r.Header.Add("Origin", o)
		}
		err = checkOrigin(r, allowed)
		assert.Equal(t, c.ok, err == nil, "host %s origin %v: %v", c.host, c.origin, err)
	}
}

func TestConsoleUTF8Stream(t *testing.T) {
	var u utf8Stream
	in := []byte("héllo ✓ wörld")
	var out strings.Builder
	for i := range in { // one byte at a time: every multi-byte character is split
		s := u.next(in[i : i+1])
		assert.True(t, utf8.ValidString(s))
		out.WriteString(s)
	}
	out.WriteString(u.flush())
	assert.Equal(t, string(in), out.String())

	assert.Equal(t, "a\uFFFDb", u.next([]byte("a\xffb")), "a byte that is not UTF-8")
	assert.Equal(t, "x", u.next([]byte("x\xe2\x9c")), "an incomplete character waits")
	assert.Equal(t, "\uFFFD", u.flush(), "and is replaced at the end")
	assert.Equal(t, "", u.flush())
}

// pipeSession runs c.pipe between a WebSocket the test dials (and never reads) and a backend pipe; it
// returns the test's WebSocket, the backend's far end, and what pipe returns.
func pipeSession(t *testing.T, c *consoleProxy) (*websocket.Conn, net.Conn, <-chan *pipeStats) {
	far, backend := net.Pipe()
	done := make(chan *pipeStats, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		done <- c.pipe(ws, backend, ConsoleVNC)
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ws.CloseNow(); _ = far.Close() })
	return ws, far, done
}

func TestConsolePipeEndsWithAVanishedBrowser(t *testing.T) {
	quiet := &server{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	t.Run("unanswered ping", func(t *testing.T) {
		c := &consoleProxy{s: quiet, pingInterval: 50 * time.Millisecond, pingTimeout: 100 * time.Millisecond, writeTimeout: time.Hour}
		_, far, done := pipeSession(t, c) // the browser never reads, so it never answers a ping
		select {
		case st := <-done:
			assert.Contains(t, st.end(), "did not answer a ping")
		case <-time.After(10 * time.Second):
			require.Fail(t, "the session outlived an unanswered ping")
		}
		_, err := far.Read(make([]byte, 1))
		assert.ErrorIs(t, err, io.EOF, "the console was closed")
	})
	t.Run("browser stops reading", func(t *testing.T) {
		c := &consoleProxy{s: quiet, pingInterval: time.Hour, pingTimeout: time.Hour, writeTimeout: 200 * time.Millisecond}
		_, far, done := pipeSession(t, c)
		go func() { // the console floods the browser, which takes nothing
			chunk := make([]byte, 64<<10)
			for {
				if _, err := far.Write(chunk); err != nil {
					return
				}
			}
		}()
		select {
		case st := <-done:
			assert.Contains(t, st.end(), "the browser took nothing for 200ms")
			assert.Greater(t, st.out.Load(), int64(0))
		case <-time.After(30 * time.Second):
			require.Fail(t, "the session outlived a browser that stopped reading")
		}
	})
}
