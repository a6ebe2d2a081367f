package refserver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/vm"
)

// Console kinds: what a console ticket opens.
const (
	// ConsoleVNC is the VM's graphical console (VNC), GET /api/v1/vms/{id}/console/ws.
	ConsoleVNC = "vnc"
	// ConsoleSerial is the VM's first serial console, GET /api/v1/vms/{id}/console/serial/ws.
	ConsoleSerial = "serial"
)

// Console ticket limits.
const (
	// ConsoleTicketTTL is how long a console ticket is valid after it is issued.
	ConsoleTicketTTL = 60 * time.Second
	// MaxConsoleTickets is how many unexpired, unused console tickets a server keeps; beyond that, issuing
	// one is 503 until some are used or expire.
	MaxConsoleTickets = 10000
)

// ConsoleTicketRequest asks for a console ticket.
type ConsoleTicketRequest struct {
	Kind string `json:"kind,omitempty" enum:"vnc,serial" default:"vnc" doc:"The console the ticket opens: vnc (the graphical console, default) or serial (the first serial console)."`
}

// ConsoleTicket is a single-use ticket that opens one console WebSocket of one VM without an Authorization
// header (browsers cannot set one on a WebSocket). It is valid for 60 seconds, for its first use, on the
// server process that issued it only.
type ConsoleTicket struct {
	Ticket      string    `json:"ticket" doc:"The ticket: 32 random bytes, base64url without padding. Pass it as ?ticket= to the WebSocket."`
	Kind        string    `json:"kind" enum:"vnc,serial" doc:"The console the ticket opens."`
	ExpiresAt   time.Time `json:"expires_at" doc:"When the ticket stops being valid (60 seconds after it was issued)."`
	WSURL       string    `json:"ws_url,omitempty" doc:"For kind vnc: the VNC WebSocket URL with the ticket (binary messages, subprotocol binary, RFB inside)."`
	SerialWSURL string    `json:"serial_ws_url,omitempty" doc:"For kind serial: the serial console WebSocket URL with the ticket (text messages both ways)."`
	PageURL     string    `json:"page_url,omitempty" doc:"For kind vnc: the server's noVNC page that opens the console in a browser with the ticket."`
}

type consoleTicketInput struct {
	ID   string                `path:"id" format:"uuid" doc:"The entity's id."`
	Body *ConsoleTicketRequest `required:"false"`

	host  string
	https bool
}

// Resolve keeps what the URLs of the answer are made of: the request's host and scheme.
func (in *consoleTicketInput) Resolve(ctx huma.Context) []error {
	in.host = ctx.Host()
	in.https = ctx.TLS() != nil || strings.EqualFold(ctx.Header("X-Forwarded-Proto"), "https")
	return nil
}

type consoleTicketOutput struct {
	CacheControl string `header:"Cache-Control"`
	Body         ConsoleTicket
}

// ticketEntry is what a ticket is bound to.
type ticketEntry struct {
	vm        uuid.UUID
	kind      string
	requester string // the name of the token that asked for it, for the session's logs
	expires   time.Time
}

// ticketStore keeps the console tickets of one server process in memory, by the SHA-256 of their secret:
// a ticket is valid only on the process that issued it. Expired tickets are pruned on every issue and use.
type ticketStore struct {
	mu  sync.Mutex
	m   map[[sha256.Size]byte]ticketEntry
	ttl time.Duration
	max int
	now func() time.Time
}

func newTicketStore() *ticketStore {
	return &ticketStore{m: map[[sha256.Size]byte]ticketEntry{}, ttl: ConsoleTicketTTL, max: MaxConsoleTickets, now: time.Now}
}

// errTicketInvalid is why a ticket was refused; errTooManyTickets why none was issued.
var (
	errTicketInvalid  = errors.New("the console ticket is not valid: unknown, already used or expired")
	errTicketMismatch = errors.New("the console ticket was issued for another VM or another console")
	errTooManyTickets = errors.New("too many console tickets are outstanding; try again in a minute")
)

// pruneLocked drops the expired tickets; the caller holds mu.
func (s *ticketStore) pruneLocked(now time.Time) {
	for k, e := range s.m {
		if !now.Before(e.expires) {
			delete(s.m, k)
		}
	}
}

// issue makes a ticket for a console of a VM.
func (s *ticketStore) issue(id uuid.UUID, kind, requester string) (secret string, expires time.Time, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", time.Time{}, err
	}
	secret = base64.RawURLEncoding.EncodeToString(b)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.pruneLocked(now)
	if len(s.m) >= s.max {
		return "", time.Time{}, errTooManyTickets
	}
	expires = now.Add(s.ttl)
	s.m[sha256.Sum256([]byte(secret))] = ticketEntry{vm: id, kind: kind, requester: requester, expires: expires}
	return secret, expires, nil
}

// consume uses a ticket for a console of a VM and returns the name of the token that asked for it. A
// ticket is used up by its first presentation, even one for another VM or console.
func (s *ticketStore) consume(secret string, id uuid.UUID, kind string) (requester string, err error) {
	key := sha256.Sum256([]byte(secret))
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.pruneLocked(now)
	e, ok := s.m[key]
	if !ok {
		return "", errTicketInvalid
	}
	delete(s.m, key)
	if e.vm != id || e.kind != kind {
		return "", errTicketMismatch
	}
	return e.requester, nil
}

// count is the number of tickets kept (expired ones included until the next prune).
func (s *ticketStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// consoleURLs are the URLs a ticket answer names, absolute on the request's host.
func (s *server) consoleURLs(host string, https bool, id uuid.UUID, kind, ticket string) (ws, page string) {
	scheme, wsScheme := "http", "ws"
	if https {
		scheme, wsScheme = "https", "wss"
	}
	base := s.cfg.BasePath
	q := url.Values{"ticket": {ticket}}
	switch kind {
	case ConsoleSerial:
		return wsScheme + "://" + host + base + "/api/v1/vms/" + id.String() + "/console/serial/ws?" + q.Encode(), ""
	default:
		pq := url.Values{"vm": {id.String()}, "ticket": {ticket}}
		return wsScheme + "://" + host + base + "/api/v1/vms/" + id.String() + "/console/ws?" + q.Encode(),
			scheme + "://" + host + base + "/console/?" + pq.Encode()
	}
}

// registerConsoleTicket registers POST /api/v1/vms/{id}/console/ticket.
func (s *server) registerConsoleTicket(api huma.API, tickets *ticketStore) {
	o := admin(notSDKWrite(s.op(http.MethodPost, "/api/v1/vms/{id}/console/ticket", "createVMConsoleTicket",
		"Get a single-use ticket that opens a running VM's console WebSocket in a browser (role admin)", "vms",
		http.StatusNotFound, http.StatusConflict, http.StatusServiceUnavailable)))
	o.Description = "Returns a ticket that opens one console WebSocket of a running VM without an Authorization header, " +
		"for browsers (which cannot set one on a WebSocket): kind vnc (default) opens GET /api/v1/vms/{id}/console/ws " +
		"(binary messages, subprotocol binary, the VM's VNC stream), and /console/?vm={id}&ticket=... is a noVNC page " +
		"that shows it; kind serial opens GET /api/v1/vms/{id}/console/serial/ws (text messages both ways, the first " +
		"serial console). Both WebSockets also take the bearer token instead of a ticket, role admin. A ticket is valid " +
		"for 60 seconds, for one use (even a refused one: it is bound to the VM and the kind), and only on the server " +
		"process that issued it: behind a load balancer, open the WebSocket on the same instance. The WebSockets " +
		"refuse an Origin other than the request's host (cross-site WebSocket hijacking). Consoles are control of the guest."
	huma.Register(api, o, func(ctx context.Context, in *consoleTicketInput) (*consoleTicketOutput, error) {
		return byID(ctx, s, in.ID, func(id uuid.UUID) (*consoleTicketOutput, error) {
			kind := ConsoleVNC
			if in.Body != nil && in.Body.Kind != "" {
				kind = in.Body.Kind
			}
			if err := s.consoleReady(ctx, id, kind); err != nil {
				return nil, err
			}
			secret, expires, err := tickets.issue(id, kind, principalOf(ctx))
			if errors.Is(err, errTooManyTickets) {
				return nil, newProblem(http.StatusServiceUnavailable, "unavailable", err.Error())
			}
			if err != nil {
				return nil, err
			}
			out := &consoleTicketOutput{CacheControl: "no-store",
				Body: ConsoleTicket{Ticket: secret, Kind: kind, ExpiresAt: expires.UTC()}}
			ws, page := s.consoleURLs(in.host, in.https, id, kind, secret)
			if kind == ConsoleSerial {
				out.Body.SerialWSURL = ws
			} else {
				out.Body.WSURL, out.Body.PageURL = ws, page
			}
			return out, nil
		})
	})
}

// consoleReady checks that a VM has the console a ticket is asked for, now: a VNC console of a running VM,
// or a running VM for the serial console.
func (s *server) consoleReady(ctx context.Context, id uuid.UUID, kind string) error {
	if kind == ConsoleSerial {
		v, err := s.sys.VMs.Get(ctx, id)
		if err != nil {
			return err
		}
		if v.PowerState != vm.PowerRunning && v.PowerState != vm.PowerPaused {
			return errkind.New(errkind.WrongState, "vm", id.String(), "the serial console is only there while the VM runs (power state %q)", v.PowerState)
		}
		return nil
	}
	c, err := s.sys.VMs.Console(ctx, id)
	if err != nil {
		return err
	}
	if c.Type != ConsoleVNC {
		return errkind.New(errkind.Unsupported, "vm", id.String(), "the graphical console is %s; only VNC is proxied", c.Type)
	}
	return nil
}
