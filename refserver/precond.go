package refserver

import (
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/google/uuid"

	"github.com/openvair/openvair/internal/reqctx"
)

// Conditional requests (RFC 9110 section 13). Every response about one entity carries its version as a
// strong entity tag, ETag: "<version>". A GET with If-None-Match naming it (or *) answers 304 with no
// body. A PATCH, DELETE or action with If-Match: "<version>" changes the entity only when it is still at
// that version: the SDK checks it at its first write of the entity (reqctx.WithExpectedVersion) and
// answers 412 precondition_failed otherwise; If-Match: * accepts any version.

// etag is the entity tag of a version: the decimal version, quoted (strong).
func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// entityTags splits an If-Match or If-None-Match value into its entity tags (RFC 9110 section 8.8.3:
// a comma-separated list of [W/]"opaque"). ok is false when the value is not such a list.
func entityTags(v string) (tags []string, ok bool) {
	rest := strings.TrimSpace(v)
	for rest != "" {
		start := rest
		rest = strings.TrimPrefix(rest, "W/")
		if !strings.HasPrefix(rest, `"`) {
			return nil, false
		}
		end := strings.IndexByte(rest[1:], '"')
		if end < 0 {
			return nil, false
		}
		opaque := rest[1 : 1+end]
		for i := 0; i < len(opaque); i++ {
			// etagc: %x21 / %x23-7E / obs-text
			if c := opaque[i]; c < 0x21 || c == 0x7f {
				return nil, false
			}
		}
		tags = append(tags, start[:len(start)-len(rest)]+rest[:end+2])
		rest = strings.TrimSpace(rest[end+2:])
		if rest == "" {
			break
		}
		if rest[0] != ',' {
			return nil, false
		}
		rest = strings.TrimSpace(rest[1:])
		if rest == "" {
			return nil, false
		}
	}
	return tags, len(tags) > 0
}

// ifMatch reads an If-Match value: any is true for * (every version matches); otherwise version is the
// one strong "<version>" it names. A value that is not an entity tag list, or that lists several tags, is
// a 400 problem; a weak tag or an opaque one that is no version of ours can never match: 412.
func ifMatch(v string) (version int64, any bool, p *Problem) {
	v = strings.TrimSpace(v)
	if v == "*" {
		return 0, true, nil
	}
	tags, ok := entityTags(v)
	if !ok {
		return 0, false, newProblem(http.StatusBadRequest, "invalid",
			`If-Match must be * or one entity tag as the ETag header gives it, such as "3"`)
	}
	if len(tags) > 1 {
		return 0, false, newProblem(http.StatusBadRequest, "invalid",
			`If-Match may name only one version: * or one entity tag as the ETag header gives it, such as "3"`)
	}
	t := tags[0]
	n, err := strconv.ParseInt(strings.Trim(t, `"`), 10, 64)
	if strings.HasPrefix(t, "W/") || err != nil || n < 0 || strconv.FormatInt(n, 10) != strings.Trim(t, `"`) {
		return 0, false, newProblem(http.StatusPreconditionFailed, "precondition_failed",
			"If-Match "+truncate(t, 80)+" names no version of this entity: its entity tags are strong decimal versions such as \"3\"")
	}
	return n, false, nil
}

// noneMatch reports whether an If-None-Match value matches the entity tag current (weak comparison, as
// RFC 9110 asks for If-None-Match; * matches any entity).
func noneMatch(v, current string) bool {
	v = strings.TrimSpace(v)
	if v == "*" {
		return current != ""
	}
	tags, ok := entityTags(v)
	if !ok || current == "" {
		return false
	}
	weak := func(t string) string { return strings.TrimPrefix(t, "W/") }
	for _, t := range tags {
		if weak(t) == weak(current) {
			return true
		}
	}
	return false
}

// preconditionMiddleware applies If-Match and If-None-Match. On a write to one entity (a {id} path) with
// If-Match, the request's context carries the expected version of that entity, which the SDK checks
// (412 when it differs); a malformed If-Match is refused before the handler runs. On a GET with
// If-None-Match, a 200 answer whose ETag matches becomes 304 without a body.
func (s *server) preconditionMiddleware(ctx huma.Context, next func(huma.Context)) {
	op := ctx.Operation()
	if op == nil {
		next(ctx)
		return
	}
	switch {
	case op.Method == http.MethodGet:
		if v := ctx.Header("If-None-Match"); v != "" {
			next(&notModifiedContext{wrappedContext: ctx, ifNoneMatch: v})
			return
		}
	case isEntityWrite(op):
		v := ctx.Header("If-Match")
		if v == "" {
			break
		}
		version, anyVersion, p := ifMatch(v)
		if p != nil {
			writeProblem(ctx, withInstance(p, ctx))
			return
		}
		id, err := uuid.Parse(ctx.Param("id"))
		if anyVersion || err != nil {
			break // an invalid id is the handler's 422
		}
		ctx = huma.WithContext(ctx, reqctx.WithExpectedVersion(ctx.Context(), id, version))
	}
	next(ctx)
}

// wrappedContext is a huma.Context that a wrapper embeds (an alias, so that the wrapper may override
// methods without a field named Context).
type wrappedContext = huma.Context

// notModifiedContext turns a 200 whose ETag matches If-None-Match into a 304 without a body.
type notModifiedContext struct {
	wrappedContext
	ifNoneMatch string
	discard     bool
}

// Unwrap returns the wrapped context (humago.Unwrap reaches the request through it).
func (c *notModifiedContext) Unwrap() huma.Context { return c.wrappedContext }

// SetStatus sends 304 instead of a 200 about the entity the client already has.
func (c *notModifiedContext) SetStatus(code int) {
	if code == http.StatusOK {
		_, w := humago.Unwrap(c.wrappedContext)
		if noneMatch(c.ifNoneMatch, w.Header().Get("ETag")) {
			w.Header().Del("Content-Type")
			w.Header().Del("Content-Length")
			c.discard = true
			code = http.StatusNotModified
		}
	}
	c.wrappedContext.SetStatus(code)
}

// BodyWriter drops the body of a 304.
func (c *notModifiedContext) BodyWriter() io.Writer {
	if c.discard {
		return io.Discard
	}
	return c.wrappedContext.BodyWriter()
}
