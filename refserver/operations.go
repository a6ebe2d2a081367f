package refserver

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/google/uuid"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/operation"
	"github.com/openvair/openvair/internal/reqctx"
)

// Operations over HTTP. Every write of the API (a create, change, delete or action) runs as an SDK
// operation; its answer names it in the Operation-Id header. With Prefer: respond-async a write whose work
// can run on any worker answers 202 Accepted at once, with the pending operation as its body and its URL
// in Location (Preference-Applied: respond-async); a write that can only run in this process answers as
// usual. The operations endpoints list, read, wait for and cancel operations.

// Metadata keys of operations (huma.Operation.Metadata), set by server.op.
const (
	// sdkWrite marks a write through the SDK: Prefer: respond-async, Operation-Id and, on a POST,
	// Idempotency-Key apply to it.
	sdkWrite = "openvair-sdk-write"
	// entityWrite marks an sdkWrite to the entity of the path's {id}: If-Match applies to it.
	entityWrite = "openvair-entity-write"
)

// isSDKWrite reports whether op is a write through the SDK.
func isSDKWrite(op *huma.Operation) bool { return op != nil && op.Metadata[sdkWrite] == true }

// isEntityWrite reports whether op writes the entity of its {id}.
func isEntityWrite(op *huma.Operation) bool { return op != nil && op.Metadata[entityWrite] == true }

// The headers of operations.
const (
	operationIDHeader       = "Operation-Id"
	preferenceAppliedHeader = "Preference-Applied"
	respondAsync            = "respond-async"
)

// prefersAsync reports whether a request's Prefer headers (RFC 7240) hold respond-async.
func prefersAsync(values []string) bool {
	for _, v := range values {
		for _, pref := range strings.Split(v, ",") {
			name, _, _ := strings.Cut(pref, ";")
			name, _, _ = strings.Cut(name, "=")
			if strings.EqualFold(strings.TrimSpace(name), respondAsync) {
				return true
			}
		}
	}
	return false
}

// operationMiddleware gives every SDK write a sink for the id of the operation it starts, which the
// answer names in Operation-Id, and asks the SDK for asynchronous execution when the request prefers it.
func (s *server) operationMiddleware(ctx huma.Context, next func(huma.Context)) {
	if !isSDKWrite(ctx.Operation()) {
		next(ctx)
		return
	}
	c, sink := reqctx.WithOpSink(ctx.Context())
	r, _ := humago.Unwrap(ctx)
	// An If-Match travels with an asynchronous operation: the worker checks it at the entity's first write.
	if prefersAsync(r.Header.Values("Prefer")) {
		c = operation.WithAsync(c)
	}
	next(&operationContext{wrappedContext: huma.WithContext(ctx, c), sink: sink})
}

// operationContext sets Operation-Id, once the handler has run the SDK call, just before the status is
// sent (headers cannot follow the body).
type operationContext struct {
	wrappedContext
	sink *reqctx.OpSink
}

// Unwrap returns the wrapped context.
func (c *operationContext) Unwrap() huma.Context { return c.wrappedContext }

// SetStatus names the operation the request started, if any.
func (c *operationContext) SetStatus(code int) {
	if id := c.sink.ID(); id != uuid.Nil {
		_, w := humago.Unwrap(c.wrappedContext)
		if w.Header().Get(operationIDHeader) == "" {
			w.Header().Set(operationIDHeader, id.String())
		}
	}
	c.wrappedContext.SetStatus(code)
}

// acceptedResponse is the 202 answer of a write the SDK accepted for asynchronous execution. Handlers
// return it as their error: Huma writes its status, its headers and its body (the operation).
type acceptedResponse struct {
	op     *Operation
	header http.Header
}

// Error implements error.
func (a *acceptedResponse) Error() string { return "operation " + a.op.ID.String() + " accepted" }

// GetStatus implements huma.StatusError.
func (a *acceptedResponse) GetStatus() int { return http.StatusAccepted }

// GetHeaders implements huma.HeadersError.
func (a *acceptedResponse) GetHeaders() http.Header { return a.header }

// MarshalJSON writes the operation.
func (a *acceptedResponse) MarshalJSON() ([]byte, error) { return json.Marshal(a.op) }

// accepted returns the 202 answer for op.
func (s *server) accepted(op *operation.Operation) *acceptedResponse {
	h := http.Header{}
	h.Set("Location", s.location("operations", op.ID))
	h.Set(operationIDHeader, op.ID.String())
	h.Set(preferenceAppliedHeader, respondAsync)
	return &acceptedResponse{op: operationOut(op), header: h}
}

// fail turns the error of an SDK call into the handler's error: 202 when the SDK accepted the call for
// asynchronous execution, the problem itself when it is one, else the problem of the SDK error.
func (s *server) fail(ctx context.Context, err error) error {
	if p, ok := err.(*Problem); ok {
		return p
	}
	var acc *operation.Accepted
	if errors.As(err, &acc) && acc.Op != nil {
		return s.accepted(acc.Op)
	}
	return s.problemOf(ctx, err)
}

// operationOutput is one operation, with its version as ETag.
type operationOutput struct {
	ETag string `header:"ETag" doc:"The operation's version as a strong entity tag."`
	Body *Operation
}

func (s *server) operationOut(op *operation.Operation) *operationOutput {
	return &operationOutput{ETag: etag(op.Version), Body: operationOut(op)}
}

// OperationPage is one page of operations; next_cursor is absent on the last page.
type OperationPage struct {
	Items      []*Operation `json:"items" nullable:"false"`
	NextCursor string       `json:"next_cursor,omitempty"`
}

type operationPageOutput struct{ Body OperationPage }

type listOperationsInput struct {
	Limit     int    `query:"limit" minimum:"1" maximum:"1000" default:"100" doc:"Page size, 1 to 1000 (default 100)."`
	Cursor    string `query:"cursor" maxLength:"64" doc:"The next_cursor of the previous page."`
	TargetID  string `query:"target_id" format:"uuid" doc:"Only operations on this entity."`
	Kind      string `query:"kind" maxLength:"64" doc:"Only operations of this kind (volume.create, vm.stop, ...)."`
	Status    string `query:"status" enum:"pending,running,succeeded,failed,cancelled" doc:"Only operations with this status."`
	RequestID string `query:"request_id" maxLength:"128" doc:"Only operations started by the request with this X-Request-Id."`
}

type waitOperationInput struct {
	ID      string `path:"id" format:"uuid" doc:"The entity's id."`
	Timeout int    `query:"timeout" minimum:"0" maximum:"300" default:"30" doc:"Seconds to wait for the operation to end, 0 to 300 (default 30)."`
}

// maxWait is the longest wait of GET /api/v1/operations/{id}/wait.
const maxWait = 300 * time.Second

// waitMargin is what a wait leaves of the request's deadline to write its answer.
const waitMargin = 5 * time.Second

// noOperations is the problem of a System that records no operations.
func noOperations() *Problem {
	return newProblem(http.StatusServiceUnavailable, "unavailable", "this server records no operations")
}

func (s *server) registerOperations(api huma.API) {
	const tag = "operations"
	svc := s.sys.Operations

	list := s.op(http.MethodGet, "/api/v1/operations", "listOperations", "List operations", tag, http.StatusServiceUnavailable)
	list.Description = "Lists operations, newest first, a page at a time: pass next_cursor as cursor for the next page. " +
		"Filters combine: target_id (the entity acted on), kind (volume.create, vm.stop, ...), status, and request_id " +
		"(the X-Request-Id of the request that started them). An unknown status is 422."
	huma.Register(api, list, func(ctx context.Context, in *listOperationsInput) (*operationPageOutput, error) {
		if svc == nil {
			return nil, noOperations()
		}
		tid, err := optionalID("target_id", in.TargetID)
		if err != nil {
			return nil, err
		}
		page, err := svc.List(ctx, operation.ListOptions{TargetID: tid, Kind: in.Kind, Status: operation.Status(in.Status),
			RequestID: in.RequestID, Cursor: in.Cursor, Limit: in.Limit})
		if err != nil {
			return nil, s.problemOf(ctx, locateFields(err, inQuery))
		}
		out := &operationPageOutput{Body: OperationPage{Items: make([]*Operation, 0, len(page.Items)), NextCursor: page.Next}}
		for _, op := range page.Items {
			out.Body.Items = append(out.Body.Items, operationOut(op))
		}
		return out, nil
	})

	get := s.op(http.MethodGet, "/api/v1/operations/{id}", "getOperation", "Get an operation", tag,
		http.StatusNotFound, http.StatusServiceUnavailable)
	get.Description = "Returns one operation: its status, progress, requester, and its result (the entity it produced " +
		"or changed) or its error."
	huma.Register(api, get, func(ctx context.Context, in *idInput) (*operationOutput, error) {
		return byID(ctx, s, in.ID, func(id uuid.UUID) (*operationOutput, error) {
			if svc == nil {
				return nil, noOperations()
			}
			op, err := svc.Get(ctx, id)
			if err != nil {
				return nil, err
			}
			return s.operationOut(op), nil
		})
	})

	wait := s.op(http.MethodGet, "/api/v1/operations/{id}/wait", "waitOperation", "Wait for an operation to end", tag,
		http.StatusNotFound, http.StatusServiceUnavailable)
	wait.Description = "Returns the operation once it has ended (status succeeded, failed or cancelled), waiting up to " +
		"timeout seconds (default 30, at most 300, and never past the server's request timeout). When the time is up first " +
		"it answers 200 with the operation as it is then, its status still pending or running: call it again."
	huma.Register(api, wait, func(ctx context.Context, in *waitOperationInput) (*operationOutput, error) {
		return byID(ctx, s, in.ID, func(id uuid.UUID) (*operationOutput, error) {
			if svc == nil {
				return nil, noOperations()
			}
			op, err := s.wait(ctx, svc, id, time.Duration(in.Timeout)*time.Second)
			if err != nil {
				return nil, err
			}
			return s.operationOut(op), nil
		})
	})

	cancel := notSDKWrite(s.op(http.MethodDelete, "/api/v1/operations/{id}", "cancelOperation", "Cancel an operation", tag,
		http.StatusNotFound, http.StatusConflict, http.StatusServiceUnavailable))
	cancel.DefaultStatus = http.StatusOK
	cancel.Description = "Cancels an operation and returns it: a pending one is cancelled at once; a running one stops " +
		"when its kind is cancellable (cancel_requested is set, and it ends cancelled soon after), else 409 wrong_state. " +
		"An operation that has ended is returned as it is. Role admin only."
	huma.Register(api, cancel, func(ctx context.Context, in *idInput) (*operationOutput, error) {
		return byID(ctx, s, in.ID, func(id uuid.UUID) (*operationOutput, error) {
			if svc == nil {
				return nil, noOperations()
			}
			op, err := svc.Cancel(ctx, id)
			if err != nil {
				return nil, err
			}
			return s.operationOut(op), nil
		})
	})
}

// wait waits up to d (within the request's deadline) for operation id to end and returns it, ended or not.
func (s *server) wait(ctx context.Context, svc *operation.Service, id uuid.UUID, d time.Duration) (*operation.Operation, error) {
	d = min(d, maxWait)
	if limit := s.cfg.RequestTimeout - waitMargin; d > limit {
		d = max(limit, 0)
	}
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	op, err := svc.Wait(wctx, id)
	if err == nil || ctx.Err() != nil {
		return op, err
	}
	if errors.Is(err, errkind.NotFound) {
		return nil, err
	}
	if wctx.Err() != nil {
		// The time is up: the operation as it is now.
		return svc.Get(ctx, id)
	}
	return nil, err
}

// notSDKWrite marks a write that is not an SDK call (it starts no operation).
func notSDKWrite(o huma.Operation) huma.Operation {
	md := make(map[string]any, len(o.Metadata))
	for k, v := range o.Metadata {
		if k != sdkWrite && k != entityWrite {
			md[k] = v
		}
	}
	o.Metadata = md
	return o
}
