// Package urlfetch downloads a file from a URL that a user gave (an image import, POST /api/v1/images
// {url}), with a guard against server-side request forgery (SSRF) that is on by default.
//
// # Threat model
//
// The user who gives the URL is not trusted with the network position of the host that fetches it. Without
// a guard they could make openvair connect to the host's own services (http://127.0.0.1:5432/, libvirtd,
// the API itself), to the cloud metadata service (http://169.254.169.254/, which hands out credentials), or
// to any machine of the private network behind the host, and read the answers back through the imported
// image, its size, its checksum or the error messages. The attacker controls the URL, the DNS answers for a
// name they own (which may change between two look-ups: DNS rebinding) and the server the URL names (which
// may redirect anywhere). They do not control the operator's Config.
//
// # Rules
//
//   - Only http and https URLs with a host are accepted; a URL with a user name or password is refused (it
//     is a classic way to hide the real host from a reader, and credentials do not belong in a stored URL).
//     Any port is allowed.
//   - The host name is resolved once per hop, with Config.Resolver. Every address it resolves to is checked
//     and one refused address refuses the URL. The connection goes to a checked address only: each hop has
//     its own http.Transport whose DialContext ignores the address the transport asks for and dials the
//     pinned addresses, so the transport never resolves the name again. TLS still verifies the certificate
//     against the URL's host name. No proxy is used, whatever the environment says.
//   - Refused by default (see Classify for the exact list): loopback, private (RFC 1918, fc00::/7),
//     link-local (169.254.0.0/16 with the cloud metadata address, fe80::/10), multicast, the unspecified
//     addresses 0.0.0.0 and ::, 0.0.0.0/8, broadcast, carrier-grade NAT 100.64.0.0/10, 192.0.0.0/24,
//     benchmarking 198.18.0.0/15, reserved 240.0.0.0/4, the documentation ranges (192.0.2.0/24,
//     198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32, 3fff::/20: no public server lives there, so a name
//     that resolves there points at something local), Teredo 2001::/32, and every IPv6 address outside the
//     global unicast range 2000::/3. An IPv4 address written as IPv6 (IPv4-mapped ::ffff:a.b.c.d, NAT64
//     64:ff9b::/96, 6to4 2002::/16) is judged by the IPv4 address it carries.
//   - Config.AllowCIDRs allows ranges although they are refused above (a private mirror);
//     Config.AllowHosts allows host names whatever they resolve to.
//   - Every redirect is checked again the same way (scheme, user info, host, addresses), at most
//     Config.MaxRedirects of them are followed, and a redirect from https to http is refused.
//   - A Content-Length over Config.MaxSize is refused before any byte is read; a body that grows past it
//     fails the read with an error of kind errkind.TooLarge.
//   - Connecting, waiting for the response header and every wait for body bytes have their own time limits
//     (Config.ConnectTimeout, HeaderTimeout, IdleTimeout), and the context given to Open bounds everything,
//     the reading of the body included.
//   - Errors never name the URL's user info, query or fragment, which may carry tokens: only
//     scheme://host:port/path.
//
// # Use
//
// New makes a Fetcher from a Config; Open starts a download and returns its Response, whose Body must be
// closed; Check refuses a URL early (when a request is accepted) without connecting; Redact shortens a URL
// for messages and logs.
//
// # Errors
//
// A refused URL is an *errkind.ValidationError (errkind.Invalid) naming the field "url", whose message says
// why ("host localhost resolves to 127.0.0.1, a loopback address (127.0.0.0/8); allow it with AllowCIDRs
// or AllowHosts"). Other failures are *errkind.Error values: errkind.TooLarge for the size limit,
// errkind.NotFound for 404 and 410, errkind.Timeout for every time limit and a context deadline,
// errkind.Unavailable for network failures, 408, 429 and 5xx answers, errkind.Invalid for the other 4xx
// answers and for too many redirects. A cancelled context gives an error wrapping context.Canceled.
package urlfetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Defaults of the Config fields left zero.
const (
	DefaultConnectTimeout = 10 * time.Second
	DefaultHeaderTimeout  = 30 * time.Second
	DefaultIdleTimeout    = 60 * time.Second
	DefaultMaxRedirects   = 5
	// DefaultEntity is the entity errors name when Config.Entity is empty.
	DefaultEntity = "download"
)

// userAgent is sent with every request.
const userAgent = "openvair-urlfetch/1"

// Resolver resolves host names to addresses; *net.Resolver satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Config configures a Fetcher. The zero value is the safe default: everything the package doc lists is
// refused, sizes are unlimited and the time limits are the Default constants.
type Config struct {
	// AllowCIDRs are ranges allowed although they are refused by default (a mirror on the private network).
	// An IPv4 range also matches the IPv4-mapped IPv6 form of its addresses.
	AllowCIDRs []netip.Prefix
	// AllowHosts are host names allowed whatever they resolve to, matched exactly, without case and
	// without a trailing dot. An IP literal may be listed too.
	AllowHosts []string
	// MaxSize is the largest body accepted, in bytes; 0 means no limit.
	MaxSize int64
	// ConnectTimeout bounds each TCP connection attempt (one per resolved address, tried in order until
	// one connects) and the TLS handshake; 0 means DefaultConnectTimeout, a negative value no limit.
	ConnectTimeout time.Duration
	// HeaderTimeout bounds the wait for the response header once the request is sent; 0 means
	// DefaultHeaderTimeout, a negative value no limit.
	HeaderTimeout time.Duration
	// IdleTimeout aborts the body read when no byte arrives for this long (the time the caller spends
	// between reads does not count); 0 means DefaultIdleTimeout, a negative value no limit.
	IdleTimeout time.Duration
	// MaxRedirects is the most redirects followed; 0 means DefaultMaxRedirects, a negative value none.
	MaxRedirects int
	// Resolver resolves host names; nil means net.DefaultResolver.
	Resolver Resolver
	// RootCAs verifies https servers; nil means the system's roots.
	RootCAs *x509.CertPool
	// Entity is the entity errors name ("image"); empty means DefaultEntity.
	Entity string
}

// Fetcher downloads from URLs under the rules of its Config. It is safe for concurrent use.
type Fetcher struct {
	allowCIDRs     []netip.Prefix
	allowHosts     map[string]bool
	maxSize        int64
	connectTimeout time.Duration
	headerTimeout  time.Duration
	idleTimeout    time.Duration
	maxRedirects   int
	resolver       Resolver
	rootCAs        *x509.CertPool
	entity         string
}

// New returns a Fetcher for cfg, with the defaults filled in. Invalid prefixes in cfg.AllowCIDRs are
// ignored.
func New(cfg Config) *Fetcher {
	f := &Fetcher{
		allowHosts:     map[string]bool{},
		maxSize:        cfg.MaxSize,
		connectTimeout: orDefault(cfg.ConnectTimeout, DefaultConnectTimeout),
		headerTimeout:  orDefault(cfg.HeaderTimeout, DefaultHeaderTimeout),
		idleTimeout:    orDefault(cfg.IdleTimeout, DefaultIdleTimeout),
		maxRedirects:   cfg.MaxRedirects,
		resolver:       cfg.Resolver,
		rootCAs:        cfg.RootCAs,
		entity:         cfg.Entity,
	}
	for _, p := range cfg.AllowCIDRs {
		if !p.IsValid() {
			continue
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		f.allowCIDRs = append(f.allowCIDRs, p.Masked())
	}
	for _, h := range cfg.AllowHosts {
		f.allowHosts[normHost(h)] = true
	}
	if f.maxRedirects == 0 {
		f.maxRedirects = DefaultMaxRedirects
	} else if f.maxRedirects < 0 {
		f.maxRedirects = 0
	}
	if f.resolver == nil {
		f.resolver = net.DefaultResolver
	}
	if f.entity == "" {
		f.entity = DefaultEntity
	}
	return f
}

func orDefault(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

func normHost(h string) string { return strings.TrimSuffix(strings.ToLower(h), ".") }

// Response is a download under way. Body must be closed; closing it releases the connection, the
// transport and the timers.
type Response struct {
	// Body is the response body. Its reads fail with errkind.TooLarge past Config.MaxSize, with
	// errkind.Timeout when no byte comes for Config.IdleTimeout, and when the context given to Open ends.
	Body io.ReadCloser
	// ContentLength is the announced size in bytes, or -1 when unknown.
	ContentLength int64
	// URL is the final URL, after the redirects. It may carry a query: redact it before showing it.
	URL *url.URL
	// Header is the final response's header.
	Header http.Header
}

// Check reports whether Open would accept rawURL's first hop: its syntax and the addresses its host
// resolves to now. It connects to nothing. Open checks again; Check is for refusing a request early.
func (f *Fetcher) Check(ctx context.Context, rawURL string) error {
	u, err := f.parse(rawURL)
	if err != nil {
		return err
	}
	_, err = f.pin(ctx, u, "")
	return err
}

// Open starts a GET of rawURL, following redirects under the same rules, and returns once the final
// response's header is in. ctx bounds the whole download, the reading of Response.Body included.
func (f *Fetcher) Open(ctx context.Context, rawURL string) (*Response, error) {
	u, err := f.parse(rawURL)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancelCause(ctx)
	for hop := 0; ; hop++ {
		via := ""
		if hop > 0 {
			via = fmt.Sprintf("redirect %d to %s: ", hop, Redact(u))
		}
		pinned, err := f.pin(rctx, u, via)
		if err != nil {
			cancel(nil)
			return nil, err
		}
		tr := f.transport(u, pinned)
		req, err := http.NewRequestWithContext(rctx, http.MethodGet, u.String(), nil)
		if err != nil { // cannot happen with a URL that parsed
			cancel(nil)
			return nil, f.invalid("%sis not a valid request: %v", via, err)
		}
		req.Header.Set("User-Agent", userAgent)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			tr.CloseIdleConnections()
			cancel(nil)
			return nil, f.netErr(ctx, err, "GET %s", Redact(u))
		}
		if isRedirect(resp.StatusCode) {
			loc := resp.Header.Get("Location")
			resp.Body.Close()
			tr.CloseIdleConnections()
			if loc == "" {
				cancel(nil)
				return nil, f.fail(errUnavailable, nil, "GET %s: %s without a Location", Redact(u), resp.Status)
			}
			if hop >= f.maxRedirects {
				cancel(nil)
				return nil, f.invalid("GET %s: %s; not followed: at most %d redirects are followed", Redact(u), resp.Status,
					f.maxRedirects)
			}
			next, err := u.Parse(loc)
			if err != nil {
				cancel(nil)
				return nil, f.fail(errUnavailable, nil, "GET %s: %s to an invalid Location: %s", Redact(u), resp.Status,
					parseErrText(err))
			}
			if err := f.checkSyntax(next, fmt.Sprintf("redirect %d to %s: ", hop+1, Redact(next))); err != nil {
				cancel(nil)
				return nil, err
			}
			if u.Scheme == "https" && next.Scheme == "http" {
				cancel(nil)
				return nil, f.invalid("redirect %d from %s to %s goes from https to http, which is refused", hop+1,
					Redact(u), Redact(next))
			}
			u = next
			continue
		}
		if err := f.statusErr(resp, u); err != nil {
			resp.Body.Close()
			tr.CloseIdleConnections()
			cancel(nil)
			return nil, err
		}
		if f.maxSize > 0 && resp.ContentLength > f.maxSize {
			resp.Body.Close()
			tr.CloseIdleConnections()
			cancel(nil)
			return nil, f.fail(errTooLarge, nil, "GET %s: Content-Length %d is over the limit of %d bytes", Redact(u),
				resp.ContentLength, f.maxSize)
		}
		return &Response{
			Body:          f.newBody(ctx, rctx, cancel, tr, resp, Redact(u)),
			ContentLength: resp.ContentLength,
			URL:           u,
			Header:        resp.Header,
		}, nil
	}
}

func isRedirect(code int) bool {
	switch code {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect,
		http.StatusPermanentRedirect:
		return true
	}
	return false
}

// parse parses and checks a URL given by the user.
func (f *Fetcher) parse(rawURL string) (*url.URL, error) {
	if strings.TrimSpace(rawURL) == "" {
		return nil, f.invalid("must not be empty")
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, f.invalid("is not a valid URL: %s", parseErrText(err))
	}
	if err := f.checkSyntax(u, ""); err != nil {
		return nil, err
	}
	return u, nil
}

// parseErrText is the reason of a url.Parse error, without the URL it quotes (which may carry tokens).
func parseErrText(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// checkSyntax applies the rules on the URL's form: scheme, user info, host, port.
func (f *Fetcher) checkSyntax(u *url.URL, via string) error {
	switch u.Scheme {
	case "http", "https":
	case "":
		return f.invalid("%shas no scheme; only http:// and https:// URLs are accepted", via)
	default:
		return f.invalid("%sscheme %q is not allowed; only http and https are", via, u.Scheme)
	}
	if u.User != nil {
		return f.invalid("%smust not contain a user name or password", via)
	}
	if u.Opaque != "" || u.Hostname() == "" {
		return f.invalid("%shas no host", via)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return f.invalid("%sport %q is not a valid port", via, p)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return f.invalid("%shas an empty port", via)
	}
	return nil
}

// pin resolves u's host once and checks every address; it returns the addresses to dial.
func (f *Fetcher) pin(ctx context.Context, u *url.URL, via string) ([]netip.AddrPort, error) {
	host := u.Hostname()
	port := 80
	if u.Scheme == "https" {
		port = 443
	}
	if p := u.Port(); p != "" {
		port, _ = strconv.Atoi(p) // checked by checkSyntax
	}
	var addrs []netip.Addr
	literal := false
	if a, err := netip.ParseAddr(host); err == nil {
		addrs, literal = []netip.Addr{a}, true
	} else {
		addrs, err = f.resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, f.dnsErr(ctx, err, via, host)
		}
		if len(addrs) == 0 {
			return nil, f.fail(errUnavailable, nil, "%shost %s resolves to no address", via, host)
		}
	}
	if !f.allowHosts[normHost(host)] {
		for _, a := range addrs {
			why := f.refused(a)
			if why == "" {
				continue
			}
			if literal {
				return nil, f.invalid("%s%s is %s; allow it with AllowCIDRs or AllowHosts", via, a, why)
			}
			return nil, f.invalid("%shost %s resolves to %s, %s; allow it with AllowCIDRs or AllowHosts", via, host, a, why)
		}
	}
	out := make([]netip.AddrPort, len(addrs))
	for i, a := range addrs {
		z := a.Zone()
		out[i] = netip.AddrPortFrom(a.Unmap().WithZone(z), uint16(port))
	}
	return out, nil
}

// refused returns why a is refused (Classify), or "" when it is allowed by default or by AllowCIDRs.
func (f *Fetcher) refused(a netip.Addr) string {
	a = a.WithZone("").Unmap()
	for _, p := range f.allowCIDRs {
		if p.Contains(a) {
			return ""
		}
	}
	return Classify(a)
}

// transport returns a transport for one hop that dials only the pinned addresses.
func (f *Fetcher) transport(u *url.URL, pinned []netip.AddrPort) *http.Transport {
	d := &net.Dialer{Timeout: f.connectTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy: nil,
		// The transport passes the URL's host:port; it is ignored: the connection goes to the addresses
		// resolved and checked by pin, so the name is never resolved again (DNS rebinding).
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var last error
			for _, ap := range pinned {
				c, err := d.DialContext(ctx, "tcp", ap.String())
				if err == nil {
					return c, nil
				}
				last = err
				if ctx.Err() != nil {
					break
				}
			}
			return nil, last
		},
		TLSClientConfig:        &tls.Config{ServerName: u.Hostname(), RootCAs: f.rootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    f.connectTimeout,
		ResponseHeaderTimeout:  f.headerTimeout,
		DisableKeepAlives:      true,
		DisableCompression:     true, // the bytes as served: a checksum is of those, and no decompression bomb
		MaxResponseHeaderBytes: 1 << 20,
		ReadBufferSize:         64 << 10,
	}
}

// Redact returns u as scheme://host:port/path, without user info, query and fragment, for messages.
func Redact(u *url.URL) string {
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	return r.String()
}
