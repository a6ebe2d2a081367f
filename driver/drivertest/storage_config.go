package drivertest

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver"
)

// stEqualState checks that two states a backend reported are the same JSON value (nil and null count as
// no state).
func stEqualState(t *testing.T, want, got json.RawMessage, msg string) {
	t.Helper()
	norm := func(s json.RawMessage) string {
		if len(s) == 0 {
			return "null"
		}
		return string(s)
	}
	require.JSONEq(t, norm(want), norm(got), msg)
}

// stTestConfig checks the configuration contract: the schema is a JSON Schema of an object, the harness's
// configuration is accepted with a location key, checking the normalized configuration again gives the
// same location, and bad configurations are refused with a *driver.ValidationError naming fields under
// "config".
func stTestConfig(t *testing.T, h StorageHarness) {
	ctx := stCtx(t)
	var schema map[string]any
	require.NoError(t, json.Unmarshal(h.Backend.ConfigSchema(), &schema), "ConfigSchema is JSON")
	require.Equal(t, "object", schema["type"], "ConfigSchema describes an object")
	props, ok := schema["properties"].(map[string]any)
	require.True(t, ok, "ConfigSchema has properties")

	pool := h.Pool(t)
	checked, err := h.Backend.CheckConfig(ctx, pool.Config)
	require.NoError(t, err, "CheckConfig of the harness's configuration")
	require.NotEmpty(t, checked.Location, "a location key")
	var normalized map[string]any
	require.NoError(t, json.Unmarshal(checked.Config, &normalized), "the normalized configuration is a JSON object")
	for k := range normalized {
		require.Contains(t, props, k, "the normalized configuration's field %q is in the schema", k)
	}
	again, err := h.Backend.CheckConfig(ctx, checked.Config)
	require.NoError(t, err, "CheckConfig of the normalized configuration")
	require.Equal(t, checked.Location, again.Location, "the normalized configuration has the same location")
	require.JSONEq(t, string(checked.Config), string(again.Config), "normalizing is idempotent")

	bad := map[string]string{
		`[]`:                           "config",
		`"x"`:                          "config",
		`{"no_such_field_anywhere":1}`: "config.no_such_field_anywhere",
	}
	for raw, field := range h.BadConfigs {
		bad[raw] = field
	}
	for raw, field := range bad {
		_, err := h.Backend.CheckConfig(ctx, json.RawMessage(raw))
		require.ErrorIs(t, err, driver.ErrInvalid, "CheckConfig(%s)", raw)
		var ve *driver.ValidationError
		require.True(t, errors.As(err, &ve), "CheckConfig(%s) returns a *driver.ValidationError: %v", raw, err)
		var names []string
		for _, f := range ve.Fields {
			require.True(t, f.Field == "config" || strings.HasPrefix(f.Field, "config."), "field paths start with config: %q", f.Field)
			names = append(names, f.Field)
		}
		require.Contains(t, names, field, "CheckConfig(%s) names %s: %v", raw, field, err)
	}
}
