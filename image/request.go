package image

import (
	"github.com/google/uuid"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/validate"
)

// CreateRequest describes an upload; the content comes as an io.Reader beside it.
type CreateRequest struct {
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	StorageID   uuid.UUID `json:"storage_id"`
	// ContentLength is the length of the content when the caller knows it (an HTTP Content-Length), shown
	// as the total of the upload's progress; 0 when unknown.
	ContentLength int64 `json:"-"`
}

// Validate reports every bad field at once.
func (r *CreateRequest) Validate() error {
	v := &errkind.Validator{Entity: "image"}
	validate.NormalizeName(&r.Name)
	validate.Name(v, "name", r.Name)
	validate.Description(v, "description", r.Description)
	v.Check(r.StorageID != uuid.Nil, "storage_id", "is required")
	return v.Err()
}

// EditRequest changes an image's metadata; nil fields stay as they are.
type EditRequest struct {
	Name        *string `json:"name,omitempty"`
	Description *string `json:"description,omitempty"`
}

// Validate reports every bad field at once.
func (r *EditRequest) Validate() error {
	v := &errkind.Validator{Entity: "image"}
	validate.NameAndDescription(v, r.Name, r.Description)
	return v.Err()
}

// ListOptions filters and pages a list of images.
type ListOptions struct {
	Limit     int       // 1..1000, default 100
	Cursor    string    // from the previous page's NextCursor
	StorageID uuid.UUID // uuid.Nil for any
	Status    Status    // "" for any
	Name      string    // exact name, "" for any
}

// validate checks the filters (ErrInvalid naming each bad one) and normalizes the name filter.
func (o *ListOptions) validate() error {
	v := &errkind.Validator{Entity: "image list"}
	validate.ListFilters(v, &o.Name, o.Cursor, o.Status, transitions)
	return v.Err()
}

// Page is one page of images; NextCursor is empty on the last page.
type Page struct {
	Items      []*Image `json:"items"`
	NextCursor string   `json:"next_cursor,omitempty"`
}
