package refserver_test

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOpenAPIDocument checks what Spectral's OAS ruleset asks of the document beyond its schema (every
// operation described and tagged, tags described, servers, a contact) and, with OPENVAIR_OPENAPI_OUT set,
// writes the served document to that file for scripts/spectral.sh.
func TestOpenAPIDocument(t *testing.T) {
	e := start(t, envOptions{})
	r := e.do("GET", "/openapi.json", "", nil)
	require.Equal(t, 200, r.Status)
	if out := os.Getenv("OPENVAIR_OPENAPI_OUT"); out != "" {
		require.NoError(t, os.WriteFile(out, r.Body, 0o644))
	}
	var doc struct {
		Info struct {
			Contact map[string]any `json:"contact"`
		} `json:"info"`
		Servers []map[string]any `json:"servers"`
		Tags    []struct {
			Name        string `json:"name"`
			Description string `json:"description"`
		} `json:"tags"`
		Paths map[string]map[string]struct {
			Description string   `json:"description"`
			Tags        []string `json:"tags"`
		} `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &doc))
	assert.NotEmpty(t, doc.Info.Contact, "info.contact")
	assert.NotEmpty(t, doc.Servers, "servers")
	tags := map[string]bool{}
	for _, tg := range doc.Tags {
		assert.NotEmpty(t, tg.Description, "tag %s", tg.Name)
		tags[tg.Name] = true
	}
	for p, item := range doc.Paths {
		for m, op := range item {
			assert.NotEmpty(t, op.Description, "%s %s has no description", m, p)
			require.NotEmpty(t, op.Tags, "%s %s has no tags", m, p)
			for _, tg := range op.Tags {
				assert.True(t, tags[tg], "%s %s: tag %q is not in the top-level tags", m, p, tg)
			}
		}
	}
}
