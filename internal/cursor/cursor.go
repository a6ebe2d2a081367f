// Package cursor encodes the opaque pagination cursors of openvair lists. Lists are ordered by id (UUIDv7,
// so by creation time); a cursor is the last id of a page, encoded so callers treat it as opaque.
package cursor

import (
	"encoding/base64"

	"github.com/google/uuid"
	"github.com/openvair/openvair/internal/errkind"
)

// DefaultLimit is the page size when the caller gives none; MaxLimit is the largest page served.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Encode returns the cursor that resumes a list after id.
func Encode(id uuid.UUID) string { return base64.RawURLEncoding.EncodeToString(id[:]) }

// Decode returns the id a cursor resumes after; the empty cursor is uuid.Nil (start of the list).
func Decode(c string) (uuid.UUID, error) {
	if c == "" {
		return uuid.Nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) != 16 {
		return uuid.Nil, &errkind.ValidationError{Entity: "list", Fields: []errkind.FieldError{{Field: "cursor", Message: "is not a cursor returned by a previous page"}}}
	}
	return uuid.UUID(b), nil
}

// Limit clamps a requested page size to 1..MaxLimit, DefaultLimit when zero or negative.
func Limit(n int) int {
	switch {
	case n <= 0:
		return DefaultLimit
	case n > MaxLimit:
		return MaxLimit
	}
	return n
}
