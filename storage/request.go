package storage

import (
	"encoding/json"
	"regexp"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/validate"
)

// CreateRequest asks for a new storage: a type (the name of a registered backend) and that backend's
// configuration, which the backend checks (driver.StorageConfigurer.CheckConfig).
type CreateRequest struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Type        Type   `json:"type"`
	// Config is the backend's configuration: a value that encodes to a JSON object, such as a
	// localfs.Config, a json.RawMessage or a map. Nil means {}.
	Config any `json:"config,omitempty"`
}

// typeRE is the form of a storage type name.
var typeRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

// UnmarshalJSON reads a request, accepting the shorthand of earlier versions: the configuration under a
// key named after the type ({"type": "nfs", "nfs": {...}}) instead of under "config". Any other unknown
// key is refused.
func (r *CreateRequest) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return errkind.Field("storage", "body", "must be a JSON object")
	}
	v := &errkind.Validator{Entity: "storage"}
	var out CreateRequest
	str := func(key string, dst *string) {
		if raw, ok := m[key]; ok {
			v.Check(json.Unmarshal(raw, dst) == nil, key, "must be a string")
			delete(m, key)
		}
	}
	var typ string
	str("name", &out.Name)
	str("description", &out.Description)
	str("type", &typ)
	out.Type = Type(typ)
	if raw, ok := m["config"]; ok {
		out.Config = raw
		delete(m, "config")
	}
	if raw, ok := m[typ]; ok && typ != "" {
		v.Check(out.Config == nil, typ, "give the configuration either under config or under %s (the older form), not both", typ)
		out.Config = raw
		delete(m, typ)
	}
	for k := range m {
		v.Add(k, "is not a field of a storage request")
	}
	if err := v.Err(); err != nil {
		return err
	}
	*r = out
	return nil
}

// config returns the configuration as JSON.
func (r *CreateRequest) config() (json.RawMessage, error) {
	switch c := r.Config.(type) {
	case nil:
		return json.RawMessage("{}"), nil
	case json.RawMessage:
		return c, nil
	case []byte:
		return c, nil
	}
	b, err := json.Marshal(r.Config)
	if err != nil {
		return nil, errkind.Field("storage", "config", "cannot be encoded as JSON: %v", err)
	}
	return b, nil
}

// Validate reports every bad field the storage service checks at once; the configuration is the
// backend's to check.
func (r *CreateRequest) Validate() error {
	v := &errkind.Validator{Entity: "storage"}
	validate.NormalizeName(&r.Name)
	validate.Name(v, "name", r.Name)
	validate.Description(v, "description", r.Description)
	v.Check(typeRE.MatchString(string(r.Type)), "type", "must name a storage backend (lower case letters, digits, - and _)")
	return v.Err()
}

// EditRequest changes a storage's metadata; nil fields stay as they are.
type EditRequest struct {
	Name        *string `json:"name,omitempty"`
	Description *string `json:"description,omitempty"`
}

// Validate reports every bad field at once.
func (r *EditRequest) Validate() error {
	v := &errkind.Validator{Entity: "storage"}
	validate.NameAndDescription(v, r.Name, r.Description)
	return v.Err()
}

// ListOptions filters and pages a list of storages.
type ListOptions struct {
	Limit  int    // 1..1000, default 100
	Cursor string // from the previous page's NextCursor
	Status Status // "" for any
	Type   Type   // "" for any
	Name   string // exact name, "" for any
}

// validate checks the filters (ErrInvalid naming each bad one) and normalizes the name filter.
func (o *ListOptions) validate() error {
	v := &errkind.Validator{Entity: "storage list"}
	validate.ListFilters(v, &o.Name, o.Cursor, o.Status, transitions)
	v.Check(o.Type == "" || typeRE.MatchString(string(o.Type)), "type", "must name a storage backend")
	return v.Err()
}

// Page is one page of storages; NextCursor is empty on the last page.
type Page struct {
	Items      []*Storage `json:"items"`
	NextCursor string     `json:"next_cursor,omitempty"`
}
