package refserver

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/danielgtaylor/huma/v2"
)

// StorageType is a storage type the server can create: the type name, its backend and what the backend
// can do, and the JSON Schema of its configuration.
type StorageType struct {
	Type          string         `json:"type"`
	Backend       string         `json:"backend" doc:"The backend's name."`
	VolumeFormats []string       `json:"volume_formats" nullable:"false" doc:"Volume formats the backend creates."`
	Extend        bool           `json:"extend" doc:"Volumes can be extended."`
	InstantClone  bool           `json:"instant_clone" doc:"Volume clones share blocks with their source."`
	ConfigSchema  map[string]any `json:"config_schema" doc:"JSON Schema of the configuration (config) of a storage of this type."`
}

type storageTypesOutput struct {
	Body struct {
		Items []StorageType `json:"items" nullable:"false"`
	}
}

// registerStorageTypes publishes the storage types: GET /api/v1/storage-types, and in the OpenAPI
// document one StorageCreate variant per type (oneOf, discriminator type) with the backend's
// configuration schema, so that generated clients are typed.
func (s *server) registerStorageTypes(api huma.API) {
	huma.Register(api, s.op(http.MethodGet, "/api/v1/storage-types", "listStorageTypes", "List storage types", "storages"),
		func(ctx context.Context, _ *struct{}) (*storageTypesOutput, error) {
			out := &storageTypesOutput{}
			out.Body.Items = []StorageType{}
			for _, t := range s.sys.StorageTypes() {
				st := StorageType{Type: string(t.Type), Backend: t.Info.Name, VolumeFormats: []string{},
					Extend: t.Info.Capabilities.Extend, InstantClone: t.Info.Capabilities.InstantClone}
				for _, f := range t.Info.Capabilities.VolumeFormats {
					st.VolumeFormats = append(st.VolumeFormats, string(f))
				}
				_ = json.Unmarshal(t.ConfigSchema, &st.ConfigSchema)
				out.Body.Items = append(out.Body.Items, st)
			}
			return out, nil
		})
}

// documentStorageTypes replaces, in the document only, the loose StorageCreateBody schema the server
// validates with (the SDK and the backends report every bad field) by the typed one: a oneOf with one
// variant per storage type, told apart by type, whose config is the backend's schema. The variant also
// lists the shorthand of earlier versions (the configuration under a key named after the type), marked
// deprecated. The Storage schema gains the same deprecated shorthands.
func (s *server) documentStorageTypes(api huma.API) {
	oapi := api.OpenAPI()
	schemas := oapi.Components.Schemas.Map()
	create := &huma.Schema{Description: "A storage of one of the server's types (GET /api/v1/storage-types): " +
		"type names the type and config is that type's configuration.",
		Discriminator: &huma.Discriminator{PropertyName: "type", Mapping: map[string]string{}}}
	stor := schemas["Storage"]
	for _, t := range s.sys.StorageTypes() {
		name := camel(string(t.Type))
		cfg := &huma.Schema{}
		if err := json.Unmarshal(t.ConfigSchema, cfg); err != nil || cfg.Type == "" {
			cfg = &huma.Schema{Type: huma.TypeObject, AdditionalProperties: true}
		}
		schemas[name+"Config"] = cfg
		ref := &huma.Schema{Ref: "#/components/schemas/" + name + "Config"}
		legacy := &huma.Schema{Ref: ref.Ref, Deprecated: true,
			Description: "Deprecated: the configuration under the type's name, as earlier versions took it; use config."}
		variant := &huma.Schema{Type: huma.TypeObject, Required: []string{"name", "type"},
			Description: "A " + string(t.Type) + " storage (backend " + t.Info.Name + "). Give config, or the deprecated " + string(t.Type) + ".",
			Properties: map[string]*huma.Schema{
				"name": {Type: huma.TypeString, MinLength: intPtr(1), MaxLength: intPtr(255),
					Description: "Printable text of at most 255 characters, without a slash or a backslash; leading and trailing white space is dropped."},
				"description":  {Type: huma.TypeString, MaxLength: intPtr(255), Description: "At most 255 characters, no control characters."},
				"type":         {Type: huma.TypeString, Enum: []any{string(t.Type)}},
				"config":       ref,
				string(t.Type): legacy,
			},
			AdditionalProperties: false}
		schemas["StorageCreate"+name] = variant
		vref := "#/components/schemas/StorageCreate" + name
		create.OneOf = append(create.OneOf, &huma.Schema{Ref: vref})
		create.Discriminator.Mapping[string(t.Type)] = vref
		if stor != nil && stor.Properties != nil && !storageFields[string(t.Type)] {
			stor.Properties[string(t.Type)] = &huma.Schema{Type: huma.TypeObject, AdditionalProperties: true, Deprecated: true,
				Description: "Deprecated: config and state merged, under the type's name, as earlier versions showed them; use config and state."}
		}
	}
	if len(create.OneOf) == 0 {
		return // no backend: keep the loose schema
	}
	schemas["StorageCreate"] = create
	// A new schema object for the document: the validator keeps the one it was registered with.
	if item := oapi.Paths["/api/v1/storages"]; item != nil && item.Post != nil && item.Post.RequestBody != nil {
		if mt := item.Post.RequestBody.Content["application/json"]; mt != nil {
			item.Post.RequestBody.Content["application/json"] = &huma.MediaType{Schema: &huma.Schema{Ref: "#/components/schemas/StorageCreate"},
				Example: mt.Example, Examples: mt.Examples}
		}
	}
}

func intPtr(n int) *int { return &n }

// camel turns a type name such as "localfs" or "my-store" into a schema name part: "Localfs", "MyStore".
func camel(s string) string {
	var b strings.Builder
	for _, part := range strings.FieldsFunc(s, func(r rune) bool { return r == '-' || r == '_' }) {
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}
