// Package errkind defines the error kinds shared by every layer of openvair and the typed error values that
// carry them. The public packages re-export these names (openvair.ErrNotFound, driver.ErrUnavailable, ...):
// callers test kinds with errors.Is and read details with errors.As.
package errkind

import (
	"errors"
	"fmt"
	"strings"
)

// The kinds. Every error returned by an openvair service or driver wraps exactly one of them.
var (
	// NotFound: the entity or backend object does not exist.
	NotFound = errors.New("not found")
	// AlreadyExists: a uniqueness rule was violated (name, path, export, MAC, ...).
	AlreadyExists = errors.New("already exists")
	// Invalid: the request is malformed; see ValidationError for the fields.
	Invalid = errors.New("invalid argument")
	// WrongState: the entity's status does not allow the operation now.
	WrongState = errors.New("wrong state")
	// InUse: the entity is referenced by others (a storage with volumes, an attached volume, ...).
	InUse = errors.New("in use")
	// Conflict: a concurrent modification won; re-read and retry.
	Conflict = errors.New("concurrent modification")
	// TooLarge: a size limit was exceeded (upload limit, storage space).
	TooLarge = errors.New("too large")
	// Unavailable: a backend (NFS server, libvirtd, database) cannot be reached or is not configured.
	Unavailable = errors.New("backend unavailable")
	// Unsupported: the driver lacks the capability the operation needs.
	Unsupported = errors.New("unsupported")
	// Timeout: an operation did not complete in the time it was given.
	Timeout = errors.New("timed out")
	// Unrunnable: the hypervisor refused the VM's definition on this host (a CPU mode or model, firmware,
	// machine or domain type the host does not offer). Fix the VM; retrying does not help.
	Unrunnable = errors.New("cannot run on this host")
	// BackendFailed: the backend was reached and tried, but failed (QEMU could not open a file, an NFS
	// server refused QEMU's access, QEMU exited at once). The reason is in the message.
	BackendFailed = errors.New("backend failed")
	// PreconditionFailed: the caller expected the entity at another version (HTTP If-Match); re-read it.
	PreconditionFailed = errors.New("precondition failed")
	// Gone: what was asked for existed once but was removed (an event older than the retention).
	Gone = errors.New("gone")
)

// names are the stable names of the kinds, used in problem bodies and stored operation errors.
var names = []struct {
	kind error
	name string
}{
	{Invalid, "invalid"}, {NotFound, "not_found"}, {AlreadyExists, "already_exists"}, {WrongState, "wrong_state"},
	{InUse, "in_use"}, {Conflict, "conflict"}, {TooLarge, "too_large"}, {Unavailable, "unavailable"},
	{Unsupported, "unsupported"}, {Timeout, "timeout"}, {Unrunnable, "unrunnable"}, {BackendFailed, "backend_failed"},
	{PreconditionFailed, "precondition_failed"}, {Gone, "gone"},
}

// Name returns the stable name of the kind err wraps ("not_found", "in_use", ...), or "" for none.
func Name(err error) string {
	for _, n := range names {
		if errors.Is(err, n.kind) {
			return n.name
		}
	}
	return ""
}

// ByName returns the kind a stable name stands for, or nil.
func ByName(name string) error {
	for _, n := range names {
		if n.name == name {
			return n.kind
		}
	}
	return nil
}

// Ref names an entity, for errors that point at other entities ("storage has volumes a, b").
type Ref struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Error is the typed error every openvair layer returns. It matches its Kind with errors.Is and unwraps to
// its cause.
type Error struct {
	Kind   error  // one of the kinds above
	Entity string // "storage", "volume", "image", "vm", or a driver name
	ID     string // the entity's id when known
	Msg    string // human-readable detail
	Refs   []Ref  // related entities (who uses it, who already has the name)
	Reason string // a short, stable classification within the kind ("cpu", "file_access", ...), may be empty
	Err    error  // cause, may be nil
}

// New returns an *Error of the given kind.
func New(kind error, entity, id, format string, args ...any) *Error {
	return &Error{Kind: kind, Entity: entity, ID: id, Msg: fmt.Sprintf(format, args...)}
}

// Wrap returns an *Error of the given kind with cause err.
func Wrap(kind error, err error, entity, id, format string, args ...any) *Error {
	return &Error{Kind: kind, Entity: entity, ID: id, Msg: fmt.Sprintf(format, args...), Err: err}
}

// InUseBy returns an InUse error naming the entities that use this one.
func InUseBy(entity, id, msg string, refs []Ref) *Error {
	return &Error{Kind: InUse, Entity: entity, ID: id, Msg: msg, Refs: refs}
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	if e.Entity != "" {
		b.WriteString(e.Entity)
		if e.ID != "" {
			b.WriteString(" ")
			b.WriteString(e.ID)
		}
		b.WriteString(": ")
	}
	if e.Msg != "" {
		b.WriteString(e.Msg)
	} else if e.Kind != nil {
		b.WriteString(e.Kind.Error())
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Is reports whether target is this error's kind.
func (e *Error) Is(target error) bool { return target == e.Kind }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// FieldError is one bad field of a request.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ValidationError reports every bad field of a request at once. It matches Invalid with errors.Is.
type ValidationError struct {
	Entity string
	Fields []FieldError
}

// Error implements error.
func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Message
	}
	return fmt.Sprintf("invalid %s: %s", e.Entity, strings.Join(parts, "; "))
}

// Is matches Invalid.
func (e *ValidationError) Is(target error) bool { return target == Invalid }

// Field returns a *ValidationError naming one bad field.
func Field(entity, field, format string, args ...any) *ValidationError {
	return &ValidationError{Entity: entity, Fields: []FieldError{{Field: field, Message: fmt.Sprintf(format, args...)}}}
}

// Validator collects field errors; Err returns nil when there are none.
type Validator struct {
	Entity string
	fields []FieldError
}

// Add records a bad field.
func (v *Validator) Add(field, format string, args ...any) {
	v.fields = append(v.fields, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// Check records a bad field when ok is false.
func (v *Validator) Check(ok bool, field, format string, args ...any) {
	if !ok {
		v.Add(field, format, args...)
	}
}

// Err returns a *ValidationError with every recorded field, or nil.
func (v *Validator) Err() error {
	if len(v.fields) == 0 {
		return nil
	}
	return &ValidationError{Entity: v.Entity, Fields: v.fields}
}

// KindOf returns the kind of err (one of the kinds above) or nil when err carries none.
func KindOf(err error) error {
	for _, k := range []error{NotFound, AlreadyExists, Invalid, WrongState, InUse, Conflict, TooLarge, Unavailable, Unsupported, Timeout,
		Unrunnable, BackendFailed} {
		if errors.Is(err, k) {
			return k
		}
	}
	return nil
}
