package volume

import (
	"github.com/google/uuid"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/validate"
)

// CreateRequest asks for a new volume.
type CreateRequest struct {
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	StorageID   uuid.UUID `json:"storage_id"`
	Format      Format    `json:"format"`
	Size        int64     `json:"size"` // bytes
	ReadOnly    bool      `json:"read_only,omitempty"`
	Shareable   bool      `json:"shareable,omitempty"`
	// Source, when set, is what the volume's content starts from: an image or another volume. Format,
	// StorageID and Size may then be left out: they default to the source's (qcow2 for a linked volume).
	Source *Source `json:"source,omitempty"`
}

// Validate reports every bad field at once.
func (r *CreateRequest) Validate() error {
	v := &errkind.Validator{Entity: "volume"}
	r.validate(v, "")
	return v.Err()
}

// validate checks the request's fields, naming them with prefix (for requests embedded in others).
func (r *CreateRequest) validate(v *errkind.Validator, prefix string) {
	validate.NormalizeName(&r.Name)
	validate.Name(v, prefix+"name", r.Name)
	validate.Description(v, prefix+"description", r.Description)
	if r.Source != nil {
		r.Source.validate(v, prefix+"source")
		v.Check(r.Format == "" || r.Format == FormatQCOW2 || r.Format == FormatRaw, prefix+"format", "must be qcow2 or raw")
		v.Check(r.Size >= 0, prefix+"size", "must not be negative")
		return
	}
	v.Check(r.StorageID != uuid.Nil, prefix+"storage_id", "is required")
	v.Check(r.Format == FormatQCOW2 || r.Format == FormatRaw, prefix+"format", "must be qcow2 or raw")
	v.Check(r.Size > 0, prefix+"size", "must be greater than 0 bytes")
}

// ValidateAs checks the request as part of a larger one, naming fields with prefix ("disks[0].new.").
func (r *CreateRequest) ValidateAs(v *errkind.Validator, prefix string) { r.validate(v, prefix) }

// EditRequest changes a volume's metadata; nil fields stay as they are.
type EditRequest struct {
	Name        *string `json:"name,omitempty"`
	Description *string `json:"description,omitempty"`
	ReadOnly    *bool   `json:"read_only,omitempty"`
	Shareable   *bool   `json:"shareable,omitempty"`
}

// Validate reports every bad field at once.
func (r *EditRequest) Validate() error {
	v := &errkind.Validator{Entity: "volume"}
	validate.NameAndDescription(v, r.Name, r.Description)
	return v.Err()
}

// ListOptions filters and pages a list of volumes.
type ListOptions struct {
	Limit     int       // 1..1000, default 100
	Cursor    string    // from the previous page's NextCursor
	StorageID uuid.UUID // uuid.Nil for any
	Status    Status    // "" for any
	Name      string    // exact name, "" for any
	Attached  *bool     // true: only attached volumes, false: only free ones, nil: both
}

// validate checks the filters (ErrInvalid naming each bad one) and normalizes the name filter.
func (o *ListOptions) validate() error {
	v := &errkind.Validator{Entity: "volume list"}
	validate.ListFilters(v, &o.Name, o.Cursor, o.Status, transitions)
	return v.Err()
}

// Page is one page of volumes; NextCursor is empty on the last page.
type Page struct {
	Items      []*Volume `json:"items"`
	NextCursor string    `json:"next_cursor,omitempty"`
}
