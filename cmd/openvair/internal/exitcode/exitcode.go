// Package exitcode maps the CLI's errors to process exit codes, so that scripts can tell a missing entity
// from a conflict, an unreachable server, a refused token or a bad request without parsing messages.
package exitcode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/client"
)

// The exit codes.
const (
	// OK: the command did what it was asked.
	OK = 0
	// Other: any failure without a more precise code (a server error, a timed-out graceful stop, ...).
	Other = 1
	// Usage: the command line is wrong (unknown command or flag, wrong arguments, a malformed flag value).
	Usage = 2
	// NotFound: an entity named on the command line, or by the request, does not exist (404).
	NotFound = 3
	// Conflict: the request conflicts with the server's state: already exists, in use, wrong state, a
	// concurrent change or a version mismatch (409, 412).
	Conflict = 4
	// Unavailable: the server cannot be reached, did not answer in time, or answered 503.
	Unavailable = 5
	// Unauthorized: no token, an unknown token, or a token whose role may not do this (401, 403).
	Unauthorized = 6
	// Invalid: the server refused the request's content (400, 413, 422).
	Invalid = 7
)

// Help is the table printed in the CLI's help.
const Help = `Exit codes:
  0  success
  1  other error (server error, timeout of a graceful stop, ...)
  2  usage error (unknown command or flag, wrong arguments, malformed value)
  3  not found
  4  conflict (already exists, in use, wrong state, concurrent change, version mismatch)
  5  server unreachable or unavailable (network error, deadline, 503)
  6  unauthorized or forbidden (401, 403)
  7  invalid input (400, 413, 422)`

// UsageError is an error in the command line.
type UsageError struct{ Err error }

// Error implements error.
func (e *UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a *UsageError with a formatted message.
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// Of returns the exit code for err.
func Of(err error) int {
	if err == nil {
		return OK
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		return Usage
	}
	switch {
	case errors.Is(err, openvair.ErrNotFound):
		return NotFound
	case errors.Is(err, openvair.ErrConflict), errors.Is(err, openvair.ErrInUse), errors.Is(err, openvair.ErrWrongState),
		errors.Is(err, openvair.ErrAlreadyExists), errors.Is(err, openvair.ErrPreconditionFailed):
		return Conflict
	case errors.Is(err, openvair.ErrInvalid), errors.Is(err, openvair.ErrTooLarge), errors.Is(err, openvair.ErrUnrunnable):
		return Invalid
	}
	var ce *client.Error
	if errors.As(err, &ce) {
		switch ce.Status {
		case http.StatusNotFound:
			return NotFound
		case http.StatusConflict, http.StatusPreconditionFailed:
			return Conflict
		case http.StatusServiceUnavailable:
			return Unavailable
		case http.StatusUnauthorized, http.StatusForbidden:
			return Unauthorized
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
			return Invalid
		}
		return Other
	}
	var ne net.Error
	if errors.Is(err, openvair.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) {
		return Unavailable
	}
	return Other
}
