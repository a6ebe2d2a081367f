package driver_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver"
)

type sampleConfig struct {
	Server string `json:"server"`
	Port   int    `json:"port,omitempty"`
	Opts   struct {
		Fast bool `json:"fast"`
	} `json:"opts"`
}

// DecodeConfig reads configurations strictly and names the field at fault as config.<path>.
func TestDecodeConfig(t *testing.T) {
	var c sampleConfig
	require.NoError(t, driver.DecodeConfig(json.RawMessage(`{"server":"a","port":2,"opts":{"fast":true}}`), &c))
	assert.Equal(t, "a", c.Server)
	assert.True(t, c.Opts.Fast)
	for _, empty := range []string{"", "null", "  "} {
		c = sampleConfig{}
		require.NoError(t, driver.DecodeConfig(json.RawMessage(empty), &c), "%q decodes as {}", empty)
	}
	for raw, field := range map[string]string{
		`[]`:                          "config",
		`"x"`:                         "config",
		`{"server":1}`:                "config.server",
		`{"opts":{"fast":"yes"}}`:     "config.opts.fast",
		`{"serverx":"a"}`:             "config.serverx",
		`{"server":"a"} {"server":1}`: "config",
		`{"server":`:                  "config",
	} {
		err := driver.DecodeConfig(json.RawMessage(raw), &sampleConfig{})
		require.ErrorIs(t, err, driver.ErrInvalid, raw)
		var ve *driver.ValidationError
		require.True(t, errors.As(err, &ve), raw)
		require.Len(t, ve.Fields, 1, raw)
		assert.Equal(t, field, ve.Fields[0].Field, raw)
	}
}

// A ConfigChecker reports every bad field at once under config; no field, no error.
func TestConfigChecker(t *testing.T) {
	var v driver.ConfigChecker
	require.NoError(t, v.Err())
	v.Check(true, "server", "fine")
	v.Check(false, "server", "bad %d", 1)
	v.Add("", "as a whole")
	err := v.Err()
	var ve *driver.ValidationError
	require.True(t, errors.As(err, &ve))
	assert.Equal(t, []driver.FieldError{{Field: "config.server", Message: "bad 1"}, {Field: "config", Message: "as a whole"}}, ve.Fields)
}

// Apply records the state a backend reported, and keeps the recorded one when it reports none.
func TestPoolStateApply(t *testing.T) {
	pool := driver.PoolSpec{State: json.RawMessage(`{"a":1}`)}
	assert.JSONEq(t, `{"a":1}`, string(driver.PoolState{}.Apply(pool).State))
	assert.JSONEq(t, `{"b":2}`, string(driver.PoolState{State: json.RawMessage(`{"b":2}`)}.Apply(pool).State))
	var st struct{ A int }
	require.NoError(t, driver.DecodeState(pool.State, &st))
	assert.Equal(t, 1, st.A)
	require.NoError(t, driver.DecodeState(nil, &st), "no state leaves v as it is")
	require.ErrorIs(t, driver.DecodeState(json.RawMessage(`{`), &st), driver.ErrInvalid)
}

// UsesDisks is the one statement of which power states hold a VM's disks open.
func TestPowerStateUsesDisks(t *testing.T) {
	for p, want := range map[driver.PowerState]bool{driver.PowerRunning: true, driver.PowerPaused: true, driver.PowerStopping: true,
		driver.PowerShutOff: false, driver.PowerCrashed: false, driver.PowerMissing: false} {
		assert.Equal(t, want, p.UsesDisks(), p)
	}
}
