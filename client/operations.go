package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/operation"
)

// Operation is an operation as the server reports it. A failed or cancelled one has Error, whose Message is
// the problem's detail.
type Operation = operation.Operation

// opWire is an operation as the server sends it: its error is a problem (status, kind, detail).
type opWire struct {
	operation.Operation
	Error *opProblem `json:"error,omitempty"`
}

// opProblem is why an operation failed, as the server renders it.
type opProblem struct {
	Status int    `json:"status,omitempty"`
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
}

// op returns the SDK's operation.
func (w *opWire) op() *Operation {
	op := w.Operation
	if w.Error != nil {
		op.Error = &operation.Problem{Kind: w.Error.Kind, Message: w.Error.Detail}
	}
	return &op
}

// err is the error of a failed or cancelled operation, nil otherwise.
func (w *opWire) err() error {
	if w.Status != operation.StatusFailed && w.Status != operation.StatusCancelled {
		return nil
	}
	e := &Error{Status: http.StatusInternalServerError, Kind: "internal", Detail: "operation " + w.ID.String() + " " + string(w.Status),
		RequestID: w.RequestID}
	if w.Error != nil {
		e.Kind, e.Detail = w.Error.Kind, w.Error.Detail
		if w.Error.Status != 0 {
			e.Status = w.Error.Status
		} else if w.Error.Kind == kindCancelled {
			e.Status = http.StatusConflict
		}
	}
	return e
}

// kindCancelled is the error kind of a cancelled operation; it matches openvair.ErrWrongState, as the SDK's
// error for a cancelled call does.
const kindCancelled = "cancelled"

// getOp runs r and decodes an operation.
func (c *Client) getOp(ctx context.Context, r request) (*opWire, *http.Response, error) {
	var w opWire
	res, err := c.do(ctx, r, &w)
	if err != nil {
		return nil, res, err
	}
	return &w, res, nil
}

// async runs a write with Prefer: respond-async and returns the operation the server accepted.
func (c *Client) async(ctx context.Context, method, path string, body any) (*Operation, error) {
	w, res, err := c.getOp(ctx, request{method: method, path: path, body: body, idem: method == http.MethodPost,
		header: http.Header{"Prefer": {"respond-async"}}})
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusAccepted {
		return nil, errNotAsync(res.StatusCode)
	}
	return w.op(), nil
}

// GetOperation returns an operation.
func (c *Client) GetOperation(ctx context.Context, id uuid.UUID) (*Operation, error) {
	w, _, err := c.getOp(ctx, request{method: http.MethodGet, path: idPath("operations", id)})
	if err != nil {
		return nil, err
	}
	return w.op(), nil
}

// ListOperations returns every operation the server keeps, newest first, following the pages.
func (c *Client) ListOperations(ctx context.Context) ([]*Operation, error) {
	ws, err := listAll[*opWire](ctx, c, "/api/v1/operations", nil)
	if err != nil {
		return nil, err
	}
	out := make([]*Operation, 0, len(ws))
	for _, w := range ws {
		out = append(out, w.op())
	}
	return out, nil
}

// OperationFilter selects operations (ListOperationsBy); zero fields match everything.
type OperationFilter struct {
	TargetID  uuid.UUID        // the entity acted on
	Kind      string           // volume.create, vm.stop, ...
	Status    operation.Status // pending, running, succeeded, failed, cancelled
	RequestID string           // the X-Request-Id of the request that started them
}

// ListOperationsBy returns the operations that pass f, newest first, following the pages.
func (c *Client) ListOperationsBy(ctx context.Context, f OperationFilter) ([]*Operation, error) {
	ws, err := listAll[*opWire](ctx, c, "/api/v1/operations", query("target_id", idParam(f.TargetID), "kind", f.Kind,
		"status", string(f.Status), "request_id", f.RequestID))
	if err != nil {
		return nil, err
	}
	out := make([]*Operation, 0, len(ws))
	for _, w := range ws {
		out = append(out, w.op())
	}
	return out, nil
}

// CancelOperation cancels an operation and returns it: a pending one is cancelled at once; a running one
// stops when its kind is cancellable (CancelRequested is set, and it ends cancelled soon after), else the
// error matches openvair.ErrWrongState. An operation that has ended is returned as it is.
func (c *Client) CancelOperation(ctx context.Context, id uuid.UUID) (*Operation, error) {
	w, _, err := c.getOp(ctx, request{method: http.MethodDelete, path: idPath("operations", id)})
	if err != nil {
		return nil, err
	}
	return w.op(), nil
}

// WaitOperation waits, for at most timeout seconds (the server caps it), until an operation ends, and
// returns it, ended or not. See Wait to wait until it ends.
func (c *Client) WaitOperation(ctx context.Context, id uuid.UUID, timeout int) (*Operation, error) {
	w, err := c.waitOnce(ctx, id, timeout)
	if err != nil {
		return nil, err
	}
	return w.op(), nil
}

func (c *Client) waitOnce(ctx context.Context, id uuid.UUID, timeout int) (*opWire, error) {
	q := url.Values{"timeout": {strconv.Itoa(timeout)}}
	w, _, err := c.getOp(ctx, request{method: http.MethodGet, path: idPath("operations", id) + "/wait?" + q.Encode()})
	return w, err
}

// maxWaitSeconds is the longest wait Wait asks the server for at a time (the server answers earlier when
// its request timeout is shorter).
const maxWaitSeconds = 60

// Wait waits until op ends, asking the server again each time its bounded wait runs out, and returns it.
// When the operation failed or was cancelled it returns the operation and an *Error with its error kind
// (errors.Is(err, openvair.ErrInUse), ...; a cancelled one matches openvair.ErrWrongState). When ctx ends
// first it returns the operation as last seen and ctx's error.
func (c *Client) Wait(ctx context.Context, op *Operation) (*Operation, error) {
	if op == nil {
		return nil, fmt.Errorf("client: Wait: %w: no operation", errkind.Invalid)
	}
	last := op
	for {
		timeout := maxWaitSeconds
		if hc := c.http.Timeout; hc > 0 {
			// Leave the HTTP client's own timeout time for the answer too.
			timeout = max(0, min(timeout, int(hc/time.Second)-1))
		}
		if dl, ok := ctx.Deadline(); ok {
			// Leave the server time to answer before ctx's deadline.
			timeout = max(0, min(timeout, int(time.Until(dl)/time.Second)-1))
		}
		w, err := c.waitOnce(ctx, op.ID, timeout)
		if err != nil {
			if ctx.Err() != nil {
				return last, waitEnded(op, ctx.Err())
			}
			return last, err
		}
		last = w.op()
		if last.Status.Final() {
			return last, w.err()
		}
		if err := ctx.Err(); err != nil {
			return last, waitEnded(op, err)
		}
		if timeout == 0 {
			// Polling close to the deadline: do not spin.
			select {
			case <-ctx.Done():
				return last, waitEnded(op, ctx.Err())
			case <-time.After(c.backoff):
			}
		}
	}
}

// waitEnded is the error of a wait that ctx ended.
func waitEnded(op *Operation, err error) error {
	return fmt.Errorf("client: wait for operation %s: %w", op.ID, err)
}
