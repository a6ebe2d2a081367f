package refserver_test

import (
	"context"
	"encoding/json"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/storage"
)

// bucketStore is a storage type defined in this test package, as a program embedding the SDK would
// define one: the fake backend's objects, with a configuration of its own ({"bucket": "..."}), its own
// schema and its own checks. Nothing in the SDK or the server names it.
type bucketStore struct{ *fake.Storage }

var bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

func (bucketStore) ConfigSchema() json.RawMessage {
	return json.RawMessage(`{"type":"object","properties":{"bucket":{"type":"string","pattern":"^[a-z0-9][a-z0-9-]{0,62}$",
		"description":"Bucket name."},"replicas":{"type":"integer","minimum":1,"maximum":5,"default":2}},
		"required":["bucket"],"additionalProperties":false}`)
}

func (bucketStore) CheckConfig(_ context.Context, raw json.RawMessage) (driver.CheckedConfig, error) {
	var c struct {
		Bucket   string `json:"bucket"`
		Replicas int    `json:"replicas,omitempty"`
	}
	if err := driver.DecodeConfig(raw, &c); err != nil {
		return driver.CheckedConfig{}, err
	}
	var v driver.ConfigChecker
	v.Check(bucketRE.MatchString(c.Bucket), "bucket", "must be 1 to 63 lower-case letters, digits and dashes")
	v.Check(c.Replicas >= 0 && c.Replicas <= 5, "replicas", "must be 1 to 5")
	if err := v.Err(); err != nil {
		return driver.CheckedConfig{}, err
	}
	if c.Replicas == 0 {
		c.Replicas = 2
	}
	return driver.CheckedConfig{Config: driver.MustJSON(c), Location: "bucket:" + c.Bucket}, nil
}

// A storage type added by the embedding program is served like the built-in ones: listed with its schema,
// published in the OpenAPI document as its own StorageCreate variant, created with its configuration
// checked by its backend (errors name the fields as sent, including through the older shorthand), and
// usable for volumes.
func TestStorageTypeFromOutside(t *testing.T) {
	e := start(t, envOptions{storageBackends: map[storage.Type]driver.StorageBackend{"bucket": bucketStore{fake.NewStorage(1 << 40)}}})

	var types struct {
		Items []struct {
			Type         string         `json:"type"`
			Backend      string         `json:"backend"`
			ConfigSchema map[string]any `json:"config_schema"`
		} `json:"items"`
	}
	e.call("GET", "/api/v1/storage-types", nil, 200, &types)
	var names []string
	for _, it := range types.Items {
		names = append(names, it.Type)
		if it.Type == "bucket" {
			assert.Contains(t, it.ConfigSchema["properties"], "bucket")
		}
	}
	assert.Subset(t, names, []string{"bucket", "localfs", "nfs"})

	var doc struct {
		Components struct {
			Schemas map[string]map[string]any `json:"schemas"`
		} `json:"components"`
	}
	r := e.do("GET", "/openapi.json", "", nil)
	require.Equal(t, 200, r.Status)
	require.NoError(t, json.Unmarshal(r.Body, &doc))
	create := doc.Components.Schemas["StorageCreate"]
	require.NotNil(t, create)
	disc, _ := create["discriminator"].(map[string]any)
	require.Equal(t, "type", disc["propertyName"])
	mapping, _ := disc["mapping"].(map[string]any)
	assert.Equal(t, "#/components/schemas/StorageCreateBucket", mapping["bucket"])
	assert.Equal(t, "#/components/schemas/StorageCreateLocalfs", mapping["localfs"])
	var refs []string
	for _, v := range create["oneOf"].([]any) {
		refs = append(refs, v.(map[string]any)["$ref"].(string))
	}
	assert.Contains(t, refs, "#/components/schemas/StorageCreateBucket")
	cfg := doc.Components.Schemas["BucketConfig"]
	require.NotNil(t, cfg, "the backend's schema is published")
	assert.Contains(t, cfg["properties"], "replicas")
	variant := doc.Components.Schemas["StorageCreateBucket"]
	props := variant["properties"].(map[string]any)
	assert.Equal(t, true, props["bucket"].(map[string]any)["deprecated"], "the shorthand is announced deprecated")

	var st map[string]any
	e.call("POST", "/api/v1/storages", map[string]any{"name": "b1", "type": "bucket", "config": map[string]any{"bucket": "media"}}, 201, &st)
	assert.Equal(t, "bucket", st["type"])
	assert.Equal(t, map[string]any{"bucket": "media", "replicas": float64(2)}, st["config"], "normalized by the backend")
	assert.Equal(t, "bucket:media", st["location"])
	assert.Equal(t, st["config"], st["bucket"], "the shorthand is shown too")

	e.do("POST", "/api/v1/storages", e.admin, map[string]any{"name": "b2", "type": "bucket", "config": map[string]any{"bucket": "media"}}).
		problemIs(t, 409, "already_exists")
	p := e.do("POST", "/api/v1/storages", e.admin, map[string]any{"name": "b3", "type": "bucket",
		"config": map[string]any{"bucket": "No!", "replicas": 9}}).problemIs(t, 422, "invalid")
	assert.ElementsMatch(t, []string{"body.config.bucket", "body.config.replicas"}, locations(p))
	p = e.do("POST", "/api/v1/storages", e.admin, map[string]any{"name": "b3", "type": "bucket",
		"bucket": map[string]any{"bucket": "No!"}}).problemIs(t, 422, "invalid")
	assert.Equal(t, []string{"body.bucket.bucket"}, locations(p), "errors name the fields as sent")
	p = e.do("POST", "/api/v1/storages", e.admin, map[string]any{"name": "b3", "type": "bucket",
		"config": map[string]any{"bucket": "ok", "region": "x"}}).problemIs(t, 422, "invalid")
	assert.Equal(t, []string{"body.config.region"}, locations(p), "unknown fields are refused")

	id := st["id"].(string)
	var vol map[string]any
	e.call("POST", "/api/v1/volumes", map[string]any{"name": "v", "storage_id": id, "format": "raw", "size": 1 << 20}, 201, &vol)
	assert.Equal(t, "available", vol["status"])
}
