package nfs

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver"
)

// CheckConfig fills in the default version, gives the server and export as the location, and names every
// bad field; it does not contact the server.
func TestCheckConfig(t *testing.T) {
	b := newBackend(t, nil)
	c, err := b.CheckConfig(t.Context(), json.RawMessage(`{"server":"nfs.example","export":"/srv/vm"}`))
	require.NoError(t, err)
	assert.JSONEq(t, `{"server":"nfs.example","export":"/srv/vm","version":3}`, string(c.Config))
	assert.Equal(t, "nfs:nfs.example:/srv/vm", c.Location)
	assert.Nil(t, c.State)
	for raw, fields := range map[string][]string{
		`{"server":"bad host!","export":"x"}`:             {"config.server", "config.export"},
		`{"server":"10.0.0.1","export":"/a/../b"}`:        {"config.export"},
		`{"server":"10.0.0.1","export":"/a","version":4}`: {"config.version"},
		`{"server":"10.0.0.1","export":"/a","path":"/x"}`: {"config.path"},
		`{}`: {"config.server", "config.export"},
	} {
		_, err := b.CheckConfig(t.Context(), json.RawMessage(raw))
		var ve *driver.ValidationError
		require.True(t, errors.As(err, &ve), "%s: %v", raw, err)
		var got []string
		for _, f := range ve.Fields {
			got = append(got, f.Field)
		}
		assert.ElementsMatch(t, fields, got, raw)
	}
}
