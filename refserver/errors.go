package refserver

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"
	"github.com/openvair/openvair"
	"github.com/openvair/openvair/internal/errkind"
)

// Problem is an RFC 9457 problem details object, the body of every error response. Kind names the SDK
// error kind ("not_found", "in_use", ...), Refs the entities the error is about (the VMs using a volume,
// the storage that already has a name), Errors the bad fields of an invalid request, RequestID the
// request (its X-Request-Id).
type Problem struct {
	Type      string              `json:"type,omitempty" doc:"A URI reference to the problem type (about:blank)."`
	Title     string              `json:"title,omitempty" doc:"The HTTP status text."`
	Status    int                 `json:"status,omitempty" doc:"The HTTP status code."`
	Detail    string              `json:"detail,omitempty" doc:"What went wrong in this occurrence."`
	Instance  string              `json:"instance,omitempty" doc:"The request path."`
	Kind      string              `json:"kind,omitempty" doc:"The error kind: the SDK's not_found, already_exists, invalid, wrong_state, in_use, conflict, too_large, unavailable, unsupported, timeout, unrunnable (422: the VM cannot run on this host), backend_failed (502: the hypervisor failed), precondition_failed (412: If-Match names another version), gone (410); the server's unauthenticated, forbidden, method_not_allowed, unsupported_media_type (415), internal (500)."`
	Reason    string              `json:"reason,omitempty" doc:"A finer, stable classification within the kind, for unrunnable and backend_failed: cpu, firmware, machine, domain_type, file_access, nfs_access, qemu_exited."`
	Refs      []openvair.Ref      `json:"refs,omitempty" doc:"Entities the error points at."`
	Errors    []*huma.ErrorDetail `json:"errors,omitempty" doc:"The bad fields of an invalid request."`
	RequestID string              `json:"request_id,omitempty" doc:"The request's id, as in its X-Request-Id response header: quote it when reporting the problem; the server's log lines of the request carry it too."`
}

// Error implements error.
func (p *Problem) Error() string { return p.Detail }

// GetStatus implements huma.StatusError.
func (p *Problem) GetStatus() int { return p.Status }

// ContentType implements huma.ContentTypeFilter: problems are application/problem+json.
func (p *Problem) ContentType(ct string) string {
	if ct == "application/json" {
		return "application/problem+json"
	}
	return ct
}

// newProblem returns a problem with the status's title; an empty kind is the status's own (kindOfStatus).
func newProblem(status int, kind, detail string) *Problem {
	if kind == "" {
		kind = kindOfStatus(status)
	}
	return &Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Kind: kind, Detail: detail}
}

// kindOfStatus is the kind of a problem that no SDK error caused (Huma's validation, routing, limits).
func kindOfStatus(status int) string {
	switch status {
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		return "invalid"
	case http.StatusUnauthorized:
		return "unauthenticated"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case http.StatusConflict:
		return "conflict"
	case http.StatusPreconditionFailed:
		return "precondition_failed"
	case http.StatusGone:
		return "gone"
	case http.StatusRequestEntityTooLarge, http.StatusRequestHeaderFieldsTooLarge, http.StatusRequestURITooLong:
		return "too_large"
	case http.StatusUnsupportedMediaType:
		return "unsupported_media_type"
	case http.StatusServiceUnavailable:
		return "unavailable"
	case http.StatusGatewayTimeout:
		return "timeout"
	case http.StatusBadGateway:
		return "backend_failed"
	case statusClientGone:
		return "canceled"
	}
	if status >= 500 {
		return "internal"
	}
	return "invalid"
}

// statusClientGone is the status logged for a request whose client went away before the answer (nginx's
// 499); no client ever sees it.
const statusClientGone = 499

// kinds maps each SDK error kind to its HTTP status; its name in problems is the SDK's (errkind.Name). The
// order matters only for errors that carry several kinds, which the SDK does not produce.
var kinds = []struct {
	err    error
	status int
}{
	{openvair.ErrInvalid, http.StatusUnprocessableEntity},
	{openvair.ErrNotFound, http.StatusNotFound},
	{openvair.ErrAlreadyExists, http.StatusConflict},
	{openvair.ErrWrongState, http.StatusConflict},
	{openvair.ErrInUse, http.StatusConflict},
	{openvair.ErrConflict, http.StatusConflict},
	{openvair.ErrTooLarge, http.StatusRequestEntityTooLarge},
	{openvair.ErrUnavailable, http.StatusServiceUnavailable},
	{openvair.ErrUnsupported, http.StatusUnprocessableEntity},
	{openvair.ErrTimeout, http.StatusGatewayTimeout},
	{openvair.ErrUnrunnable, http.StatusUnprocessableEntity},
	{openvair.ErrBackendFailed, http.StatusBadGateway},
	{openvair.ErrPreconditionFailed, http.StatusPreconditionFailed},
	{openvair.ErrGone, http.StatusGone},
}

// StatusOf is the one mapping from SDK errors to HTTP status codes:
//
//	ErrInvalid                                         422 (the fields are listed in the problem's errors)
//	ErrNotFound                                        404
//	ErrAlreadyExists, ErrWrongState, ErrInUse, ErrConflict  409
//	ErrTooLarge, *http.MaxBytesError                   413
//	ErrUnavailable                                     503
//	ErrUnsupported                                     422 (the request is valid, this backend cannot do it)
//	ErrTimeout                                         504 (the backend or the guest did not finish in time)
//	ErrUnrunnable                                      422 (the VM's definition cannot run on this host: fix the VM)
//	ErrBackendFailed                                   502 (the hypervisor was reached but failed, e.g. QEMU exited)
//	errkind.PreconditionFailed                         412 (If-Match named another version of the entity)
//	errkind.Gone                                       410 (it existed once, and was removed)
//	the client went away (context.Canceled)            499 (never seen by the client)
//	anything else                                      500 (and logged)
func StatusOf(err error) int {
	s, _ := classify(err)
	return s
}

func classify(err error) (int, string) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge, "too_large"
	}
	for _, k := range kinds {
		if errors.Is(err, k.err) {
			return k.status, errkind.Name(k.err)
		}
	}
	if errors.Is(err, context.Canceled) {
		return statusClientGone, "canceled"
	}
	return http.StatusInternalServerError, ""
}

// problemOf turns an SDK error into a problem. Unknown errors become a 500 whose detail hides the cause,
// which is logged instead.
func (s *server) problemOf(ctx context.Context, err error) *Problem {
	status, kind := classify(err)
	if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) {
		// The client went away: whatever the SDK made of its canceled context (a store answering
		// "unavailable", a canceled hypervisor call), it is not a server failure.
		status, kind = statusClientGone, "canceled"
	}
	if status == http.StatusInternalServerError {
		s.log.ErrorContext(ctx, "internal error", "request_id", requestIDOf(ctx), "err", err)
		return newProblem(status, "", "internal error; see the server log")
	}
	p := newProblem(status, kind, err.Error())
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		p.Detail = "request body larger than the limit"
	}
	var ve *openvair.ValidationError
	if errors.As(err, &ve) {
		locate := func(field string) string { return "body." + field }
		var le *locatedError
		if errors.As(err, &le) {
			locate = le.locate
		}
		for _, f := range ve.Fields {
			p.Errors = append(p.Errors, &huma.ErrorDetail{Message: f.Message, Location: locate(f.Field)})
		}
	}
	var oe *openvair.Error
	if errors.As(err, &oe) {
		p.Refs = oe.Refs
		p.Reason = reasonOf(err)
	}
	if status == statusClientGone {
		s.log.DebugContext(ctx, "request canceled by the client", "err", err)
	}
	return p
}

// locatedError names the bad fields of an SDK validation error as the client sent them: the SDK names
// fields after its own request types, which an operation may fill from other places (query parameters,
// a field of another name, the last disk of a VM).
type locatedError struct {
	err    error
	locate func(field string) string
}

func (e *locatedError) Error() string { return e.err.Error() }
func (e *locatedError) Unwrap() error { return e.err }

// locateFields wraps err (when it is not nil) so that problemOf names its fields with locate.
func locateFields(err error, locate func(field string) string) error {
	if err == nil {
		return nil
	}
	return &locatedError{err: err, locate: locate}
}

// problemFields turns every error response into a Problem with all its fields: Huma's own errors
// (validation, a malformed or oversized body, a wrong content type) come as *huma.ErrorModel without
// type, instance and kind.
func problemFields(ctx huma.Context, _ string, v any) (any, error) {
	var p *Problem
	switch e := v.(type) {
	case *huma.ErrorModel:
		p = newProblem(e.Status, "", e.Detail)
		if e.Title != "" {
			p.Title = e.Title
		}
		p.Errors = e.Errors
	case *Problem:
		p = e
	default:
		return v, nil
	}
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	if p.Kind == "" {
		p.Kind = kindOfStatus(p.Status)
	}
	if p.Detail == "" {
		p.Detail = p.Title
	}
	if p.Instance == "" {
		p.Instance = ctx.URL().Path
	}
	if p.RequestID == "" {
		p.RequestID = requestIDOf(ctx.Context())
	}
	return p, nil
}

// reflectProblem is the type of the error bodies.
var reflectProblem = reflect.TypeFor[Problem]()

// useProblemSchema documents every error response of every operation with the Problem schema (Huma's own
// errors are turned into Problems by problemFields).
func useProblemSchema(api huma.API) {
	oapi := api.OpenAPI()
	reg := oapi.Components.Schemas
	schema := reg.Schema(reflectProblem, true, "Problem")
	for _, item := range oapi.Paths {
		for _, op := range []*huma.Operation{item.Get, item.Post, item.Put, item.Patch, item.Delete} {
			if op == nil {
				continue
			}
			for _, resp := range op.Responses {
				for ct, mt := range resp.Content {
					if ct == "application/problem+json" {
						mt.Schema = schema
					}
				}
			}
		}
	}
	delete(reg.Map(), "ErrorModel")
}

// redactErrorValues keeps error responses from repeating secrets: Huma echoes the offending value of a
// field, and the whole body when the content type is wrong. Values of the whole body and of password
// fields are dropped; other values stay, they help the client find its mistake.
func redactErrorValues(_ huma.Context, _ string, v any) (any, error) {
	var details []*huma.ErrorDetail
	switch e := v.(type) {
	case *huma.ErrorModel:
		details = e.Errors
	case *Problem:
		details = e.Errors
	}
	for _, d := range details {
		if d != nil && (d.Location == "body" || strings.Contains(strings.ToLower(d.Location), "password")) {
			d.Value = nil
		}
	}
	return v, nil
}

// byID parses the path id raw, runs fn with it and turns its error into a problem (or the 202 of an
// accepted asynchronous call, see fail): the shape of every handler about one entity.
func byID[O any](ctx context.Context, s *server, raw string, fn func(id uuid.UUID) (O, error)) (O, error) {
	var zero O
	id, err := parseID(raw)
	if err != nil {
		return zero, err
	}
	out, err := fn(id)
	if err != nil {
		return zero, s.fail(ctx, err)
	}
	return out, nil
}

// invalidUUID is the problem of a parameter that should be a UUID; in is "path" or "query".
func invalidUUID(in, name, value string) *Problem {
	p := newProblem(http.StatusUnprocessableEntity, "invalid", name+" is not a UUID")
	p.Errors = []*huma.ErrorDetail{{Message: "must be a UUID", Location: in + "." + name, Value: value}}
	return p
}

// reasonOf returns the first non-empty Reason along err's chain.
func reasonOf(err error) string {
	for err != nil {
		if oe, ok := err.(*openvair.Error); ok && oe.Reason != "" {
			return oe.Reason
		}
		err = errors.Unwrap(err)
	}
	return ""
}
