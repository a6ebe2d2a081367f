package refserver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/openvair/openvair/internal/reqctx"
)

// Role is what a token may do.
type Role string

// Roles.
const (
	// RoleAdmin may call every operation.
	RoleAdmin Role = "admin"
	// RoleReader may call GET operations only.
	RoleReader Role = "reader"
)

// securityScheme is the name of the bearer scheme in the OpenAPI document.
const securityScheme = "bearer"

// Token is a stored API token: its name (for logs), its role and the hex SHA-256 of its secret. The
// secret itself is never stored.
type Token struct {
	Name   string `json:"name" toml:"name"`
	Role   Role   `json:"role" toml:"role"`
	SHA256 string `json:"sha256" toml:"sha256"`
}

type tokenEntry struct {
	name string
	role Role
	hash [sha256.Size]byte
}

// Tokens is the set of tokens a server accepts. It is immutable and safe for concurrent use.
type Tokens struct {
	entries []tokenEntry
}

// NewTokens checks and loads tokens. Every token needs a name, a known role and a 64-digit hex SHA-256.
func NewTokens(tokens ...Token) (*Tokens, error) {
	t := &Tokens{}
	for i, tok := range tokens {
		if tok.Name == "" {
			return nil, fmt.Errorf("token %d: name is required", i)
		}
		if tok.Role != RoleAdmin && tok.Role != RoleReader {
			return nil, fmt.Errorf("token %q: role must be %q or %q", tok.Name, RoleAdmin, RoleReader)
		}
		b, err := hex.DecodeString(tok.SHA256)
		if err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("token %q: sha256 must be 64 hex digits", tok.Name)
		}
		e := tokenEntry{name: tok.Name, role: tok.Role}
		copy(e.hash[:], b)
		t.entries = append(t.entries, e)
	}
	return t, nil
}

// HashToken returns the hex SHA-256 of a token secret, as Token.SHA256 stores it.
func HashToken(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// GenerateToken returns a new random token secret (256 bits from crypto/rand).
func GenerateToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "ovt_" + base64.RawURLEncoding.EncodeToString(b), nil
}

// Authenticate returns the name and role of the token whose secret is given. It compares the secret's hash
// with every stored hash in constant time, without stopping at the first match.
func (t *Tokens) Authenticate(secret string) (name string, role Role, ok bool) {
	if t == nil || secret == "" {
		return "", "", false
	}
	h := sha256.Sum256([]byte(secret))
	for _, e := range t.entries {
		if subtle.ConstantTimeCompare(h[:], e.hash[:]) == 1 {
			name, role, ok = e.name, e.role, true
		}
	}
	return name, role, ok
}

// Len is the number of tokens.
func (t *Tokens) Len() int { return len(t.entries) }

type principalKey struct{}

// adminOnly marks, in an operation's Metadata, a GET that only role admin may call (a VM's console is
// control of the guest).
const adminOnly = "openvair-admin-only"

// authenticate checks an Authorization header: the token's name and role, or a 401 problem and the
// WWW-Authenticate header to send with it.
func (s *server) authenticate(authz string) (name string, role Role, wwwAuth string, p *Problem) {
	scheme, secret, _ := strings.Cut(authz, " ")
	if !strings.EqualFold(scheme, "bearer") || secret == "" {
		return "", "", `Bearer realm="openvair"`,
			newProblem(http.StatusUnauthorized, "unauthenticated", "a bearer token is required (Authorization: Bearer <token>)")
	}
	name, role, ok := s.cfg.Tokens.Authenticate(strings.TrimSpace(secret))
	if !ok {
		return "", "", `Bearer realm="openvair", error="invalid_token"`,
			newProblem(http.StatusUnauthorized, "unauthenticated", "the bearer token is not valid")
	}
	return name, role, "", nil
}

// authMiddleware authenticates every /api/v1 operation: 401 without a valid bearer token, 403 when a
// reader token calls anything but GET, or a GET marked adminOnly. The request's context then carries
// reqctx.Meta with the request id and the token's name as the requester.
func (s *server) authMiddleware(ctx huma.Context, next func(huma.Context)) {
	op := ctx.Operation()
	if op == nil || !strings.HasPrefix(op.Path, "/api/v1/") {
		next(ctx)
		return
	}
	name, role, wwwAuth, p := s.authenticate(ctx.Header("Authorization"))
	if p != nil {
		ctx.SetHeader("WWW-Authenticate", wwwAuth)
		writeProblem(ctx, withInstance(p, ctx))
		return
	}
	if role != RoleAdmin && (op.Method != http.MethodGet || op.Metadata[adminOnly] == true) {
		what := "may only read (GET)"
		if op.Method == http.MethodGet {
			what = "may not call " + op.OperationID + " (role admin only)"
		}
		writeProblem(ctx, withInstance(newProblem(http.StatusForbidden, "forbidden",
			fmt.Sprintf("token %q has role %q, which %s", name, role, what)), ctx))
		return
	}
	// The request's context names the requester, for the operations and events it starts.
	meta := reqctx.MetaOf(ctx.Context())
	meta.Requester = name
	next(huma.WithContext(ctx, context.WithValue(reqctx.WithMeta(ctx.Context(), meta), principalKey{}, name)))
}

// principalOf returns the name of the token that authenticated the request of ctx ("" for none).
func principalOf(ctx context.Context) string {
	name, _ := ctx.Value(principalKey{}).(string)
	return name
}

func withInstance(p *Problem, ctx huma.Context) *Problem {
	u := ctx.URL()
	p.Instance = truncate(u.Path, 256)
	return p
}
