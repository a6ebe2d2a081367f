package urlfetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/errkind"
)

// loopback allows the loopback ranges, for the tests' servers.
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// server is a loopback test server that counts its requests.
type server struct {
	*httptest.Server
	hits atomic.Int64
}

func newServer(t testing.TB, h http.HandlerFunc) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewServer(s.count(h))
	t.Cleanup(s.Close)
	return s
}

func newTLSServer(t testing.TB, h http.HandlerFunc) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewUnstartedServer(s.count(h))
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes of the tests
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// newServer6 starts a server on [::1], or skips the test when the host has no IPv6 loopback.
func newServer6(t testing.TB, h http.HandlerFunc) *server {
	t.Helper()
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	s := &server{}
	s.Server = httptest.NewUnstartedServer(s.count(h))
	s.Listener.Close()
	s.Listener = l
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func (s *server) count(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		h(w, r)
	}
}

// port is the server's port.
func (s *server) port() string {
	u, _ := url.Parse(s.URL)
	return u.Port()
}

// at returns the server's URL with another host name.
func (s *server) at(host, path string) string {
	u, _ := url.Parse(s.URL)
	return u.Scheme + "://" + net.JoinHostPort(host, u.Port()) + path
}

func serveBytes(data []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data)
	}
}

// fakeResolver answers from a table; answers[host][i] is the answer to the i-th look-up (the last repeats).
type fakeResolver struct {
	mu      sync.Mutex
	answers map[string][][]netip.Addr
	calls   map[string]int
}

func resolver(answers map[string][]string) *fakeResolver {
	r := &fakeResolver{answers: map[string][][]netip.Addr{}, calls: map[string]int{}}
	for host, seq := range answers {
		for _, ans := range seq {
			var addrs []netip.Addr
			for _, a := range strings.Split(ans, ",") {
				addrs = append(addrs, netip.MustParseAddr(a))
			}
			r.answers[host] = append(r.answers[host], addrs)
		}
	}
	return r
}

func (r *fakeResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if network != "ip" {
		return nil, fmt.Errorf("unexpected network %q", network)
	}
	seq := r.answers[strings.TrimSuffix(strings.ToLower(host), ".")]
	if len(seq) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	i := min(r.calls[host], len(seq)-1)
	r.calls[host]++
	return seq[i], nil
}

func (r *fakeResolver) lookups(host string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[host]
}

// requireRefused checks err is a refused URL: errkind.Invalid, a ValidationError on field "url" whose
// message has every want.
func requireRefused(t *testing.T, err error, want ...string) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, errkind.Invalid)
	var ve *errkind.ValidationError
	require.ErrorAs(t, err, &ve, "%v", err)
	require.Len(t, ve.Fields, 1)
	require.Equal(t, "url", ve.Fields[0].Field)
	for _, w := range want {
		require.Contains(t, ve.Fields[0].Message, w)
	}
}

// requireKind checks err is an *errkind.Error of kind whose message has every want.
func requireKind(t *testing.T, err error, kind error, want ...string) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, kind, "%v", err)
	var ke *errkind.Error
	require.ErrorAs(t, err, &ke)
	for _, w := range want {
		require.Contains(t, err.Error(), w)
	}
}

func fetchAll(t *testing.T, f *Fetcher, rawURL string) ([]byte, *Response, error) {
	t.Helper()
	resp, err := f.Open(context.Background(), rawURL)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return data, resp, err
}

func TestLoopbackAllowedOrRefusedByDefault(t *testing.T) {
	content := []byte("disk image bytes")
	for _, tc := range []struct {
		name  string
		start func(testing.TB, http.HandlerFunc) *server
		addr  string
		rng   string
	}{
		{"ipv4", newServer, "127.0.0.1", "127.0.0.0/8"},
		{"ipv6", newServer6, "::1", "::1/128"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := tc.start(t, serveBytes(content))
			rawURL := srv.URL + "/images/a.qcow2?token=SECRET"

			data, resp, err := fetchAll(t, New(Config{AllowCIDRs: loopback}), rawURL)
			require.NoError(t, err)
			require.Equal(t, content, data)
			require.EqualValues(t, len(content), resp.ContentLength)
			require.Equal(t, rawURL, resp.URL.String())
			require.EqualValues(t, 1, srv.hits.Load())

			_, err = New(Config{}).Open(context.Background(), rawURL)
			requireRefused(t, err, tc.addr+" is a loopback address ("+tc.rng+")", "allow it with AllowCIDRs or AllowHosts")
			require.NotContains(t, err.Error(), "SECRET")
			require.EqualValues(t, 1, srv.hits.Load(), "a refused URL is never fetched")
			requireRefused(t, New(Config{}).Check(context.Background(), rawURL), "loopback")
			require.NoError(t, New(Config{AllowCIDRs: loopback}).Check(context.Background(), rawURL))
		})
	}
}

func TestRefusedLiteralAddresses(t *testing.T) {
	f := New(Config{})
	for _, tc := range []struct{ url, want string }{
		{"http://127.0.0.2:8080/x", "127.0.0.2 is a loopback address"},
		{"http://[::1]/x", "::1 is a loopback address"},
		{"http://[::ffff:127.0.0.1]/x", "::ffff:127.0.0.1 is a loopback address (127.0.0.0/8)"},
		{"http://0.0.0.0/", "0.0.0.0 is the unspecified address"},
		{"http://[::]/", ":: is the unspecified address"},
		{"http://169.254.169.254/latest/meta-data/", "169.254.169.254 is the link-local cloud metadata address"},
		{"http://[fe80::1%25eth0]/", "fe80::1%eth0 is a link-local address"},
		{"http://10.1.2.3/", "10.1.2.3 is a private address (10.0.0.0/8)"},
		{"http://172.16.0.1/", "a private address (172.16.0.0/12)"},
		{"https://192.168.1.1/", "a private address (192.168.0.0/16)"},
		{"http://[fd00::1]/", "a private (unique local) address"},
		{"http://100.64.0.1/", "a carrier-grade NAT address"},
		{"http://255.255.255.255/", "the broadcast address"},
		{"http://224.0.0.1/", "a multicast address"},
		{"http://[2002:7f00:1::1]/", "a 6to4 address embedding 127.0.0.1, a loopback address"},
		{"http://[64:ff9b::a9fe:a9fe]/", "a NAT64 address embedding 169.254.169.254, the link-local cloud metadata address"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			_, err := f.Open(context.Background(), tc.url)
			requireRefused(t, err, tc.want)
		})
	}
}

func TestRefusedThroughDNS(t *testing.T) {
	t.Run("localhost via the real resolver", func(t *testing.T) {
		srv := newServer(t, serveBytes([]byte("x")))
		_, err := New(Config{}).Open(context.Background(), srv.at("localhost", "/x"))
		requireRefused(t, err, "host localhost resolves to", "a loopback address")
		require.Zero(t, srv.hits.Load())

		// Allowed by name, it is fetched.
		data, _, err := fetchAll(t, New(Config{AllowHosts: []string{"LocalHost."}}), srv.at("localhost", "/x"))
		require.NoError(t, err)
		require.Equal(t, "x", string(data))
	})
	for _, tc := range []struct{ answer, want string }{
		{"127.0.0.1", "resolves to 127.0.0.1, a loopback address (127.0.0.0/8)"},
		{"::1", "resolves to ::1, a loopback address (::1/128)"},
		{"::ffff:127.0.0.1", "resolves to ::ffff:127.0.0.1, a loopback address (127.0.0.0/8)"},
		{"169.254.169.254", "resolves to 169.254.169.254, the link-local cloud metadata address"},
		{"10.0.0.1", "resolves to 10.0.0.1, a private address (10.0.0.0/8)"},
		{"0.0.0.0", "resolves to 0.0.0.0, the unspecified address"},
		{"fe80::1", "resolves to fe80::1, a link-local address"},
		// one refused address among allowed ones refuses the URL
		{"93.184.215.14,2606:2800:21f:cb07:6820:80da:af6b:8b2c,10.0.0.1", "resolves to 10.0.0.1, a private address"},
	} {
		t.Run(tc.answer, func(t *testing.T) {
			r := resolver(map[string][]string{"evil.test": {tc.answer}})
			_, err := New(Config{Resolver: r}).Open(context.Background(), "https://evil.test/disk.img?sig=SECRET")
			requireRefused(t, err, "host evil.test "+tc.want)
			require.NotContains(t, err.Error(), "SECRET")
			require.Equal(t, 1, r.lookups("evil.test"))
		})
	}
	t.Run("no such host", func(t *testing.T) {
		_, err := New(Config{Resolver: resolver(nil)}).Open(context.Background(), "http://nowhere.test/")
		requireRefused(t, err, "host nowhere.test does not resolve")
	})
}

func TestAllowCIDRsAndHosts(t *testing.T) {
	srv := newServer(t, serveBytes([]byte("ok")))
	r := resolver(map[string][]string{"mirror.test": {"127.0.0.1"}})
	for _, tc := range []struct {
		name string
		cfg  Config
		url  string
		ok   bool
	}{
		{"exact /32", Config{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}, srv.URL, true},
		{"mapped form of an IPv4 range", Config{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("::ffff:127.0.0.0/104")}}, srv.URL, true},
		{"another range", Config{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, srv.URL, false},
		{"host allowed", Config{Resolver: r, AllowHosts: []string{"mirror.test"}}, srv.at("mirror.test", "/"), true},
		{"host allowed, other case and a trailing dot in the URL", Config{Resolver: r, AllowHosts: []string{"mirror.test"}}, srv.at("MIRROR.test.", "/"), true},
		{"another host allowed", Config{Resolver: r, AllowHosts: []string{"other.test"}}, srv.at("mirror.test", "/"), false},
		{"IP literal allowed as a host", Config{AllowHosts: []string{"127.0.0.1"}}, srv.URL, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := fetchAll(t, New(tc.cfg), tc.url)
			if tc.ok {
				require.NoError(t, err)
			} else if err != nil {
				requireRefused(t, err, "loopback")
			}
		})
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		// allowed
		{"8.8.8.8", ""},
		{"93.184.215.14", ""},
		{"::ffff:8.8.8.8", ""},
		{"2606:4700:4700::1111", ""},
		{"2002:808:808::1", ""},      // 6to4 of a public address
		{"64:ff9b::808:808", ""},     // NAT64 of a public address
		{"100.63.255.255", ""},       // just below CGNAT
		{"100.128.0.0", ""},          // just above CGNAT
		{"172.32.0.1", ""},           // just above 172.16/12
		{"198.20.0.1", ""},           // just above benchmarking
		{"223.255.255.255", ""},      // just below multicast
		{"192.0.1.1", ""},            // between 192.0.0/24 and 192.0.2/24
		{"2a00:1450:4001::200e", ""}, // global unicast
		// refused
		{"0.1.2.3", `a "this network" address (0.0.0.0/8)`},
		{"0.0.0.0", "the unspecified address (0.0.0.0/32)"},
		{"127.255.255.254", "a loopback address (127.0.0.0/8)"},
		{"169.254.1.1", "a link-local address (169.254.0.0/16)"},
		{"169.254.169.254", "the link-local cloud metadata address (169.254.169.254/32)"},
		{"192.0.0.8", "an IETF protocol assignment address (192.0.0.0/24)"},
		{"192.0.2.1", "a documentation address (192.0.2.0/24)"},
		{"198.51.100.1", "a documentation address"},
		{"203.0.113.1", "a documentation address"},
		{"192.88.99.1", "a 6to4 relay anycast address"},
		{"198.19.255.255", "a benchmarking address (198.18.0.0/15)"},
		{"239.255.255.250", "a multicast address (224.0.0.0/4)"},
		{"240.0.0.1", "a reserved address (240.0.0.0/4)"},
		{"255.255.255.255", "the broadcast address"},
		{"::ffff:10.0.0.1", "a private address (10.0.0.0/8)"},
		{"::ffff:169.254.169.254", "the link-local cloud metadata address"},
		{"::", "the unspecified address (::/128)"},
		{"::1", "a loopback address (::1/128)"},
		{"::127.0.0.1", "an IPv4-compatible address"},
		{"64:ff9b::7f00:1", "a NAT64 address embedding 127.0.0.1, a loopback address"},
		{"64:ff9b::a00:1", "a NAT64 address embedding 10.0.0.1, a private address"},
		{"64:ff9b:1::1", "a local-use NAT64 address"},
		{"2002:a9fe:a9fe::1", "a 6to4 address embedding 169.254.169.254"},
		{"2002:c0a8:101::", "a 6to4 address embedding 192.168.1.1, a private address"},
		{"100::1", "a discard-only address"},
		{"2001::1", "a Teredo address"},
		{"2001:2::1", "a benchmarking address"},
		{"2001:db8::1", "a documentation address (2001:db8::/32)"},
		{"3fff::1", "a documentation address (3fff::/20)"},
		{"fc00::1", "a private (unique local) address (fc00::/7)"},
		{"fdff::1", "a private (unique local) address"},
		{"fe80::1%eth0", "a link-local address (fe80::/10)"},
		{"fec0::1", "a site-local address"},
		{"ff02::1", "a multicast address (ff00::/8)"},
		{"4000::1", "not a global unicast address"},
		{"::ffff:0:a00:1", "not a global unicast address"}, // IPv4-translated, not mapped
	} {
		t.Run(tc.addr, func(t *testing.T) {
			got := Classify(netip.MustParseAddr(tc.addr))
			if tc.want == "" {
				require.Empty(t, got)
			} else {
				require.Contains(t, got, tc.want)
			}
		})
	}
	require.Equal(t, "not a valid address", Classify(netip.Addr{}))
}

func TestSyntaxRefused(t *testing.T) {
	f := New(Config{AllowCIDRs: loopback})
	for _, tc := range []struct{ url, want string }{
		{"", "must not be empty"},
		{"ftp://127.0.0.1/disk.img", `scheme "ftp" is not allowed`},
		{"file:///etc/passwd", `scheme "file" is not allowed`},
		{"gopher://127.0.0.1:70/_GET%20/", `scheme "gopher" is not allowed`},
		{"mailto:root@localhost", `scheme "mailto" is not allowed`},
		{"javascript:alert(1)", `scheme "javascript" is not allowed`},
		{"127.0.0.1/disk.img", "has no scheme"},
		{"//127.0.0.1/disk.img", "has no scheme"},
		{"http://user:pass@127.0.0.1/disk.img", "must not contain a user name or password"},
		{"http://user@127.0.0.1/disk.img", "must not contain a user name or password"},
		{"http://evil.test@127.0.0.1/", "must not contain a user name or password"},
		{"http:///disk.img", "has no host"},
		{"http://:8080/disk.img", "has no host"},
		{"http:disk.img", "has no host"},
		{"http://127.0.0.1:0/", `port "0" is not a valid port`},
		{"http://127.0.0.1:65536/", `port "65536" is not a valid port`},
		{"http://127.0.0.1:/", "has an empty port"},
		{"http://[::1/", "is not a valid URL"},
		{"http://127.0.0.1/\x00?token=SECRET", "is not a valid URL"},
		{"http://127.0.0.1:8o/x?token=SECRET", "is not a valid URL"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			_, err := f.Open(context.Background(), tc.url)
			requireRefused(t, err, tc.want)
			require.NotContains(t, err.Error(), "SECRET")
			require.NotContains(t, err.Error(), "user:pass")
		})
	}
}

func TestRedirects(t *testing.T) {
	target := newServer(t, serveBytes([]byte("final")))
	r := resolver(map[string][]string{"mirror.test": {"127.0.0.1"}})
	front := newServer(t, func(w http.ResponseWriter, req *http.Request) {
		switch req.URL.Path {
		case "/to-loopback":
			http.Redirect(w, req, target.URL+"/file?token=SECRET", http.StatusFound)
		case "/to-localhost-name":
			http.Redirect(w, req, target.at("localhost", "/file"), http.StatusMovedPermanently)
		case "/to-relative":
			http.Redirect(w, req, "/final", http.StatusSeeOther)
		case "/final":
			w.Write([]byte("relative"))
		case "/to-ftp":
			http.Redirect(w, req, "ftp://mirror.test/file", http.StatusTemporaryRedirect)
		case "/to-userinfo":
			http.Redirect(w, req, "http://a:b@mirror.test:"+target.port()+"/file", http.StatusPermanentRedirect)
		case "/no-location":
			w.WriteHeader(http.StatusFound)
		}
	})
	guarded := New(Config{Resolver: r, AllowHosts: []string{"mirror.test"}})

	t.Run("to a loopback address", func(t *testing.T) {
		_, err := guarded.Open(context.Background(), front.at("mirror.test", "/to-loopback"))
		requireRefused(t, err, "redirect 1 to "+target.URL+"/file: 127.0.0.1 is a loopback address")
		require.NotContains(t, err.Error(), "SECRET")
		require.Zero(t, target.hits.Load())
	})
	t.Run("to a name that resolves to loopback", func(t *testing.T) {
		withLocalhost := resolver(map[string][]string{"mirror.test": {"127.0.0.1"}, "localhost": {"127.0.0.1"}})
		_, err := New(Config{Resolver: withLocalhost, AllowHosts: []string{"mirror.test"}}).Open(context.Background(),
			front.at("mirror.test", "/to-localhost-name"))
		requireRefused(t, err, "redirect 1 to http://localhost:"+target.port()+"/file: host localhost resolves to 127.0.0.1")
		require.Zero(t, target.hits.Load())
	})
	t.Run("to another scheme", func(t *testing.T) {
		_, err := guarded.Open(context.Background(), front.at("mirror.test", "/to-ftp"))
		requireRefused(t, err, `redirect 1 to ftp://mirror.test/file: scheme "ftp" is not allowed`)
	})
	t.Run("to a URL with user info", func(t *testing.T) {
		_, err := guarded.Open(context.Background(), front.at("mirror.test", "/to-userinfo"))
		requireRefused(t, err, "must not contain a user name or password")
		require.NotContains(t, err.Error(), "a:b")
	})
	t.Run("without Location", func(t *testing.T) {
		_, err := guarded.Open(context.Background(), front.at("mirror.test", "/no-location"))
		requireKind(t, err, errkind.Unavailable, "302 Found without a Location")
	})
	t.Run("allowed, relative", func(t *testing.T) {
		data, resp, err := fetchAll(t, guarded, front.at("mirror.test", "/to-relative"))
		require.NoError(t, err)
		require.Equal(t, "relative", string(data))
		require.Equal(t, front.at("mirror.test", "/final"), resp.URL.String())
	})
	t.Run("allowed by AllowCIDRs", func(t *testing.T) {
		data, resp, err := fetchAll(t, New(Config{AllowCIDRs: loopback}), front.URL+"/to-loopback")
		require.NoError(t, err)
		require.Equal(t, "final", string(data))
		require.Equal(t, target.URL+"/file?token=SECRET", resp.URL.String())
	})
}

func TestTooManyRedirects(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/r/"))
		if n >= 10 {
			w.Write([]byte("end"))
			return
		}
		http.Redirect(w, r, fmt.Sprintf("/r/%d", n+1), http.StatusFound)
	})
	for _, tc := range []struct {
		max, start int
		hits       int64
		ok         bool
		want       string
	}{
		{max: 0, start: 5, hits: 6, ok: true}, // the default, 5, is enough for 5
		{max: 0, start: 4, hits: 6, want: "at most 5 redirects"},
		{max: 3, start: 7, hits: 4, ok: true},
		{max: 3, start: 0, hits: 4, want: "at most 3 redirects"},
		{max: -1, start: 9, hits: 1, want: "at most 0 redirects"},
		{max: -1, start: 10, hits: 1, ok: true},
	} {
		t.Run(fmt.Sprintf("max %d from %d", tc.max, tc.start), func(t *testing.T) {
			before := srv.hits.Load()
			data, _, err := fetchAll(t, New(Config{AllowCIDRs: loopback, MaxRedirects: tc.max}), fmt.Sprintf("%s/r/%d", srv.URL, tc.start))
			if tc.ok {
				require.NoError(t, err)
				require.Equal(t, "end", string(data))
			} else {
				requireRefused(t, err, tc.want)
			}
			require.Equal(t, tc.hits, srv.hits.Load()-before)
		})
	}
}

func TestTLS(t *testing.T) {
	plain := newServer(t, serveBytes([]byte("plain")))
	secure := newTLSServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/downgrade":
			http.Redirect(w, r, plain.URL+"/x", http.StatusFound)
		case "/upgrade":
			http.Redirect(w, r, "/file", http.StatusFound)
		default:
			w.Write([]byte("secure"))
		}
	})
	roots := x509.NewCertPool()
	roots.AddCert(secure.Certificate())
	// httptest's certificate is for example.com, 127.0.0.1 and ::1.
	r := resolver(map[string][]string{"example.com": {"127.0.0.1"}, "mirror.test": {"127.0.0.1"}})
	f := New(Config{AllowCIDRs: loopback, RootCAs: roots, Resolver: r})

	t.Run("https to http is refused", func(t *testing.T) {
		_, err := f.Open(context.Background(), secure.URL+"/downgrade")
		requireRefused(t, err, "redirect 1 from "+secure.URL+"/downgrade to "+plain.URL+"/x goes from https to http")
		require.Zero(t, plain.hits.Load())
	})
	t.Run("https to https", func(t *testing.T) {
		data, _, err := fetchAll(t, f, secure.URL+"/upgrade")
		require.NoError(t, err)
		require.Equal(t, "secure", string(data))
	})
	t.Run("the certificate is verified against the URL's host, not the pinned address", func(t *testing.T) {
		data, _, err := fetchAll(t, f, secure.at("example.com", "/"))
		require.NoError(t, err)
		require.Equal(t, "secure", string(data))

		_, err = f.Open(context.Background(), secure.at("mirror.test", "/"))
		requireKind(t, err, errkind.Unavailable, "certificate")
		var ce *tls.CertificateVerificationError
		require.ErrorAs(t, err, &ce)
	})
	t.Run("unknown authority", func(t *testing.T) {
		_, err := New(Config{AllowCIDRs: loopback}).Open(context.Background(), secure.URL)
		requireKind(t, err, errkind.Unavailable, "certificate")
	})
}

func TestPinning(t *testing.T) {
	var hosts sync.Map
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		hosts.Store(r.URL.Path, r.Host)
		if r.URL.Path == "/hop" {
			http.Redirect(w, r, "/file", http.StatusFound)
			return
		}
		w.Write([]byte("pinned"))
	})
	// rebind.test does not exist for the real resolver: anything but the pinned address fails.
	allowed := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

	t.Run("one look-up per hop, the connection goes to its answer", func(t *testing.T) {
		r := resolver(map[string][]string{"rebind.test": {"127.0.0.1", "10.0.0.1"}})
		data, _, err := fetchAll(t, New(Config{AllowCIDRs: allowed, Resolver: r}), srv.at("rebind.test", "/file"))
		require.NoError(t, err)
		require.Equal(t, "pinned", string(data))
		require.Equal(t, 1, r.lookups("rebind.test"))
		h, _ := hosts.Load("/file")
		require.Equal(t, "rebind.test:"+srv.port(), h, "the Host header keeps the name")
	})
	t.Run("a redirect is a new hop, resolved and checked again", func(t *testing.T) {
		r := resolver(map[string][]string{"rebind.test": {"127.0.0.1", "10.0.0.1"}})
		before := srv.hits.Load()
		_, err := New(Config{AllowCIDRs: allowed, Resolver: r}).Open(context.Background(), srv.at("rebind.test", "/hop"))
		requireRefused(t, err, "redirect 1 to http://rebind.test:"+srv.port()+"/file: host rebind.test resolves to 10.0.0.1")
		require.Equal(t, 2, r.lookups("rebind.test"))
		require.EqualValues(t, 1, srv.hits.Load()-before)
	})
	t.Run("the pinned addresses are tried in order", func(t *testing.T) {
		// 127.0.0.2 has no server on that port here (nothing listens there), 127.0.0.1 has.
		dead := closedPort(t)
		r := resolver(map[string][]string{"multi.test": {"127.0.0.1"}})
		_, err := New(Config{AllowCIDRs: allowed, Resolver: r}).Open(context.Background(), "http://multi.test:"+dead+"/")
		requireKind(t, err, errkind.Unavailable, "GET http://multi.test:"+dead+"/", "connection refused")

		r = resolver(map[string][]string{"multi.test": {"127.0.0.2,127.0.0.1"}})
		data, _, err := fetchAll(t, New(Config{AllowCIDRs: allowed, Resolver: r}), srv.at("multi.test", "/file"))
		if err != nil { // 127.0.0.2 may answer on some hosts (a server bound to 0.0.0.0 there)
			t.Skipf("127.0.0.2 did not refuse: %v", err)
		}
		require.Equal(t, "pinned", string(data))
	})
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	_, port, _ := net.SplitHostPort(l.Addr().String())
	l.Close()
	return port
}

func TestNoProxyFromEnvironment(t *testing.T) {
	srv := newServer(t, serveBytes([]byte("direct")))
	proxy := newServer(t, serveBytes([]byte("proxied")))
	t.Setenv("HTTP_PROXY", proxy.URL)
	t.Setenv("http_proxy", proxy.URL)
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")
	data, _, err := fetchAll(t, New(Config{AllowCIDRs: loopback}), srv.at("127.0.0.1", "/x"))
	require.NoError(t, err)
	require.Equal(t, "direct", string(data))
	require.Zero(t, proxy.hits.Load())
}

func TestStatus(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		w.WriteHeader(code)
	})
	f := New(Config{AllowCIDRs: loopback})
	for _, tc := range []struct {
		code int
		kind error
	}{
		{404, errkind.NotFound}, {410, errkind.NotFound},
		{500, errkind.Unavailable}, {502, errkind.Unavailable}, {503, errkind.Unavailable},
		{429, errkind.Unavailable}, {408, errkind.Unavailable},
		{403, errkind.Invalid}, {401, errkind.Invalid}, {400, errkind.Invalid},
		{304, errkind.Unavailable},
	} {
		t.Run(strconv.Itoa(tc.code), func(t *testing.T) {
			_, err := f.Open(context.Background(), fmt.Sprintf("%s/%d?token=SECRET", srv.URL, tc.code))
			require.ErrorIs(t, err, tc.kind, "%v", err)
			require.Contains(t, err.Error(), fmt.Sprintf("GET %s/%d: %d", srv.URL, tc.code, tc.code))
			require.NotContains(t, err.Error(), "SECRET")
		})
	}
	t.Run("connection refused", func(t *testing.T) {
		_, err := f.Open(context.Background(), "http://127.0.0.1:"+closedPort(t)+"/x?token=SECRET")
		requireKind(t, err, errkind.Unavailable, "connection refused")
		require.NotContains(t, err.Error(), "SECRET")
	})
	t.Run("connection closed early", func(t *testing.T) {
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			w.Write(make([]byte, 10))
		})
		data, _, err := fetchAll(t, f, srv.URL)
		requireKind(t, err, errkind.Unavailable, "connection closed after 10 of 100 bytes")
		require.Len(t, data, 10)
	})
}

func TestMaxSize(t *testing.T) {
	content := bytes.Repeat([]byte("0123456789"), 100) // 1000 bytes
	chunked := func(n int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			for i := 0; i < n; i += 100 {
				w.Write(content[:100])
				w.(http.Flusher).Flush() // no Content-Length: chunked
			}
		}
	}
	for _, tc := range []struct {
		name    string
		h       http.HandlerFunc
		max     int64
		length  int64
		openErr bool
		read    int
		readErr bool
	}{
		{"length over the limit", serveBytes(content), 999, 0, true, 0, false},
		{"length at the limit", serveBytes(content), 1000, 1000, false, 1000, false},
		{"no limit", serveBytes(content), 0, 1000, false, 1000, false},
		{"chunked over the limit", chunked(2000), 1000, -1, false, 1000, true},
		{"chunked just over the limit", chunked(1000), 999, -1, false, 999, true},
		{"chunked at the limit", chunked(1000), 1000, -1, false, 1000, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, tc.h)
			resp, err := New(Config{AllowCIDRs: loopback, MaxSize: tc.max}).Open(context.Background(), srv.URL+"/big?token=SECRET")
			if tc.openErr {
				requireKind(t, err, errkind.TooLarge, "Content-Length 1000 is over the limit of 999 bytes")
				require.NotContains(t, err.Error(), "SECRET")
				return
			}
			require.NoError(t, err)
			defer resp.Body.Close()
			require.Equal(t, tc.length, resp.ContentLength)
			data, err := io.ReadAll(resp.Body)
			require.Len(t, data, tc.read)
			if tc.readErr {
				requireKind(t, err, errkind.TooLarge, fmt.Sprintf("the body is over the limit of %d bytes", tc.max))
				_, again := resp.Body.Read(make([]byte, 10))
				require.ErrorIs(t, again, errkind.TooLarge, "the error sticks")
			} else {
				require.NoError(t, err)
			}
		})
	}
}

// stalling serves head, then waits until the client goes away (then closes gone) or the test ends.
func stalling(t *testing.T, head []byte, beforeHeader bool) (srv *server, gone chan struct{}) {
	release, gone := make(chan struct{}), make(chan struct{})
	srv = newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if !beforeHeader {
			w.Write(head)
			w.(http.Flusher).Flush()
		}
		select {
		case <-r.Context().Done():
			close(gone)
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // runs before the server's Close
	return srv, gone
}

func TestTimeouts(t *testing.T) {
	t.Run("idle body", func(t *testing.T) {
		srv, _ := stalling(t, []byte("0123456789"), false)
		resp, err := New(Config{AllowCIDRs: loopback, IdleTimeout: 200 * time.Millisecond}).Open(context.Background(), srv.URL)
		require.NoError(t, err)
		defer resp.Body.Close()
		start := time.Now()
		data, err := io.ReadAll(resp.Body)
		requireKind(t, err, errkind.Timeout, "no data for 200ms after 10 bytes")
		require.Equal(t, "0123456789", string(data))
		require.Less(t, time.Since(start), 5*time.Second)
	})
	t.Run("a slow reader is not idle", func(t *testing.T) {
		srv := newServer(t, serveBytes([]byte("abc")))
		resp, err := New(Config{AllowCIDRs: loopback, IdleTimeout: 50 * time.Millisecond}).Open(context.Background(), srv.URL)
		require.NoError(t, err)
		defer resp.Body.Close()
		var got []byte
		buf := make([]byte, 1)
		for {
			time.Sleep(100 * time.Millisecond)
			n, err := resp.Body.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			require.NoError(t, err)
		}
		require.Equal(t, "abc", string(got))
	})
	t.Run("header", func(t *testing.T) {
		srv, _ := stalling(t, nil, true)
		start := time.Now()
		_, err := New(Config{AllowCIDRs: loopback, HeaderTimeout: 200 * time.Millisecond}).Open(context.Background(), srv.URL+"/x?token=SECRET")
		requireKind(t, err, errkind.Timeout, "GET "+srv.URL+"/x", "timeout awaiting response headers")
		require.NotContains(t, err.Error(), "SECRET")
		require.Less(t, time.Since(start), 5*time.Second)
	})
}

func TestContext(t *testing.T) {
	f := New(Config{AllowCIDRs: loopback})
	t.Run("cancelled while reading", func(t *testing.T) {
		srv, _ := stalling(t, []byte("head"), false)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		resp, err := f.Open(ctx, srv.URL)
		require.NoError(t, err)
		defer resp.Body.Close()
		time.AfterFunc(100*time.Millisecond, cancel)
		data, err := io.ReadAll(resp.Body)
		require.Equal(t, "head", string(data))
		require.ErrorIs(t, err, context.Canceled)
		require.Nil(t, errkind.KindOf(err), "a cancel is no failure kind: %v", err)
	})
	t.Run("deadline while reading", func(t *testing.T) {
		srv, _ := stalling(t, []byte("head"), false)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		resp, err := f.Open(ctx, srv.URL)
		require.NoError(t, err)
		defer resp.Body.Close()
		_, err = io.ReadAll(resp.Body)
		requireKind(t, err, errkind.Timeout)
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})
	t.Run("cancelled while waiting for the header", func(t *testing.T) {
		srv, _ := stalling(t, nil, true)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		_, err := f.Open(ctx, srv.URL)
		require.ErrorIs(t, err, context.Canceled)
	})
	t.Run("cancelled before", func(t *testing.T) {
		srv := newServer(t, serveBytes([]byte("x")))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := f.Open(ctx, srv.URL)
		require.ErrorIs(t, err, context.Canceled)
		require.Zero(t, srv.hits.Load())
	})
	t.Run("close from another goroutine aborts a read", func(t *testing.T) {
		srv, gone := stalling(t, []byte("head"), false)
		resp, err := f.Open(context.Background(), srv.URL)
		require.NoError(t, err)
		time.AfterFunc(100*time.Millisecond, func() { resp.Body.Close() })
		_, err = io.ReadAll(resp.Body)
		require.ErrorIs(t, err, errClosed)
		<-gone
	})
	t.Run("close releases the connection", func(t *testing.T) {
		srv, gone := stalling(t, []byte("head"), false)
		resp, err := f.Open(context.Background(), srv.URL)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		_, err = resp.Body.Read(make([]byte, 1))
		require.Error(t, err)
		select { // the server sees the client go away
		case <-gone:
		case <-time.After(5 * time.Second):
			t.Fatal("the connection is still open after Close")
		}
	})
}

// BenchmarkFetch reads 256 MiB from a loopback server through a Fetcher, through a bare net/http client
// and with curl (when installed, `curl -o /dev/null`), for comparison; b.SetBytes makes each report MB/s.
// On a 2-CPU Xeon VM (server and client share the CPUs) all three read 3.8 to 5.3 GB/s, the run-to-run
// noise being larger than their differences: the guard costs nothing measurable, and hashing with SHA-256
// (urlfetch+sha256, 1.1 to 1.2 GB/s) is the bottleneck of an import, not the download.
func BenchmarkFetch(b *testing.B) {
	const size = 256 << 20
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i)
	}
	srv := newServer(b, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		for i := 0; i < size; i += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	rawURL := srv.URL + "/disk.img"
	drain := func(b *testing.B, r io.Reader) {
		buf := make([]byte, 256<<10)
		var n int64
		for {
			m, err := r.Read(buf)
			n += int64(m)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		if n != size {
			b.Fatalf("read %d bytes, want %d", n, size)
		}
	}

	b.Run("urlfetch", func(b *testing.B) {
		f := New(Config{AllowCIDRs: loopback, MaxSize: size})
		b.SetBytes(size)
		for b.Loop() {
			resp, err := f.Open(context.Background(), rawURL)
			if err != nil {
				b.Fatal(err)
			}
			drain(b, resp.Body)
			resp.Body.Close()
		}
	})
	b.Run("urlfetch+sha256", func(b *testing.B) {
		f := New(Config{AllowCIDRs: loopback, MaxSize: size})
		b.SetBytes(size)
		for b.Loop() {
			resp, err := f.Open(context.Background(), rawURL)
			if err != nil {
				b.Fatal(err)
			}
			h := sha256.New()
			drain(b, io.TeeReader(resp.Body, h))
			resp.Body.Close()
		}
	})
	b.Run("net_http", func(b *testing.B) {
		c := &http.Client{Transport: &http.Transport{DisableCompression: true}}
		defer c.CloseIdleConnections()
		b.SetBytes(size)
		for b.Loop() {
			resp, err := c.Get(rawURL)
			if err != nil {
				b.Fatal(err)
			}
			drain(b, resp.Body)
			resp.Body.Close()
		}
	})
	b.Run("curl", func(b *testing.B) {
		curl, err := exec.LookPath("curl")
		if err != nil {
			b.Skip("curl not installed")
		}
		b.SetBytes(size)
		for b.Loop() {
			out, err := exec.Command(curl, "-sS", "--fail", "--noproxy", "*", "-o", "/dev/null", "-w", "%{size_download}", rawURL).Output()
			if err != nil {
				b.Fatal(err)
			}
			if string(out) != strconv.Itoa(size) {
				b.Fatalf("curl read %s bytes", out)
			}
		}
	})
}
