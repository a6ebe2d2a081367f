package driver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/openvair/openvair/internal/errkind"
)

// StorageConfigurer is the part of a storage backend that owns its storages' configuration. openvair
// never names a storage type: a storage is a type name plus a configuration object that only its backend
// understands, checked by CheckConfig, stored as it returns it, and handed back in PoolSpec.Config.
type StorageConfigurer interface {
	// ConfigSchema returns the JSON Schema (2020-12) of the configuration object: an object schema whose
	// properties describe every field CheckConfig accepts. The reference server publishes it.
	ConfigSchema() json.RawMessage
	// CheckConfig checks the configuration of a new storage before anything is recorded. It may look at
	// the host (a directory exists, a device is a block device) but changes nothing. It returns the
	// normalized configuration (defaults filled in), the initial state, and the location key that no two
	// storages may share (two names of one directory give one key). A bad configuration is a
	// *ValidationError whose fields are paths such as "config.server" (see InvalidConfig); other errors
	// keep their kind (ErrUnavailable when the host cannot be asked).
	CheckConfig(ctx context.Context, config json.RawMessage) (CheckedConfig, error)
}

// CheckedConfig is a storage configuration a backend accepted.
type CheckedConfig struct {
	Config   json.RawMessage // normalized configuration, stored as PoolSpec.Config
	State    json.RawMessage // initial state, stored as PoolSpec.State; nil for none
	Location string          // unique key of the storage's location, such as "dir:/srv/a" or "nfs:host:/export"
}

// FieldError names one bad field: Field is a path such as "config.server", Message says what is wrong.
type FieldError = errkind.FieldError

// ValidationError reports every bad field of a request at once; it matches ErrInvalid with errors.Is.
type ValidationError = errkind.ValidationError

// ConfigField returns the path of a configuration field as errors name it: "config." + name.
func ConfigField(name string) string { return "config." + name }

// InvalidConfig returns a *ValidationError for a storage configuration, naming each bad field. Fields are
// given by their name inside the configuration ("server", "nfs.version") and reported as
// "config.<name>"; an empty name means the configuration as a whole.
func InvalidConfig(fields ...FieldError) error {
	out := make([]FieldError, len(fields))
	for i, f := range fields {
		out[i] = FieldError{Field: strings.TrimSuffix(ConfigField(f.Field), "."), Message: f.Message}
	}
	return &ValidationError{Entity: "storage", Fields: out}
}

// ConfigChecker collects the bad fields of a configuration, for CheckConfig implementations. Fields are
// named inside the configuration ("server"); Err reports them as "config.<field>".
type ConfigChecker struct{ v errkind.Validator }

// Add records a bad field, named inside the configuration ("" for the configuration as a whole).
func (c *ConfigChecker) Add(field, format string, args ...any) { c.v.Add(field, format, args...) }

// Check records a bad field when ok is false.
func (c *ConfigChecker) Check(ok bool, field, format string, args ...any) {
	c.v.Check(ok, field, format, args...)
}

// Err returns InvalidConfig of the recorded fields, or nil when there are none.
func (c *ConfigChecker) Err() error {
	var ve *ValidationError
	if !errors.As(c.v.Err(), &ve) {
		return nil
	}
	return InvalidConfig(ve.Fields...)
}

// DecodeConfig decodes a configuration object into v strictly: unknown fields, a value of the wrong type,
// trailing data or anything but a JSON object is a *ValidationError naming the field. An empty or null
// configuration decodes as {}.
func DecodeConfig(config json.RawMessage, v any) error {
	trimmed := bytes.TrimSpace(config)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		trimmed = []byte("{}")
	}
	if trimmed[0] != '{' {
		return InvalidConfig(FieldError{Message: "must be a JSON object"})
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			return InvalidConfig(FieldError{Message: "trailing data after the object"})
		}
		return nil
	}
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te):
		return InvalidConfig(FieldError{Field: te.Field, Message: fmt.Sprintf("must be a %s, not a JSON %s", te.Type, te.Value)})
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return InvalidConfig(FieldError{Field: name, Message: "is not a field of this storage type"})
	default:
		return InvalidConfig(FieldError{Message: "is not valid JSON: " + err.Error()})
	}
}

// DecodeState decodes a backend's state (PoolSpec.State) into v; empty or null leaves v as it is.
func DecodeState(state json.RawMessage, v any) error {
	trimmed := bytes.TrimSpace(state)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return nil
	}
	if err := json.Unmarshal(trimmed, v); err != nil {
		return fmt.Errorf("storage state: %w: %v", ErrInvalid, err)
	}
	return nil
}

// MustJSON returns v as JSON, panicking when v cannot be encoded; for configurations written in Go.
func MustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic("driver.MustJSON: " + err.Error())
	}
	return b
}
