package refserver

import (
	"context"
	"net/http"
	"strings"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"
	"github.com/openvair/openvair/storage"
)

// op is the common shape of an /api/v1 operation: bearer security, the JSON body limit and the error
// responses it may give besides 401 (403 on every write). Every write is marked an SDK write (Prefer,
// Operation-Id, Idempotency-Key on a POST), and a write to the entity of a {id} path an entity write
// (If-Match); see notSDKWrite for a write that is not.
func (s *server) op(method, path, id, summary, tag string, errs ...int) huma.Operation {
	codes := []int{http.StatusUnauthorized}
	md := map[string]any{}
	if method != http.MethodGet {
		codes = append(codes, http.StatusForbidden)
		md[sdkWrite] = true
		if strings.Contains(path, "{id}") {
			md[entityWrite] = true
		}
	}
	return huma.Operation{OperationID: id, Method: method, Path: path, Summary: summary, Tags: []string{tag},
		Security: []map[string][]string{{securityScheme: {}}}, Errors: append(codes, errs...),
		MaxBodyBytes: s.cfg.MaxBodyBytes, Metadata: md}
}

// admin marks a GET operation that only role admin may call.
func admin(o huma.Operation) huma.Operation {
	md := map[string]any{adminOnly: true}
	for k, v := range o.Metadata {
		md[k] = v
	}
	o.Metadata = md
	return o
}

// created sets the status of a create operation.
func created(o huma.Operation) huma.Operation {
	o.DefaultStatus = http.StatusCreated
	return o
}

// noContent sets the status of a delete operation.
func noContent(o huma.Operation) huma.Operation {
	o.DefaultStatus = http.StatusNoContent
	return o
}

// idInput is the input of an operation on one entity.
type idInput struct {
	ID string `path:"id" format:"uuid" doc:"The entity's id."`
}

// inQuery locates the fields of a list's options: they are query parameters.
func inQuery(field string) string { return "query." + field }

// parseID parses a path id (Huma has checked its format already).
func parseID(s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, invalidUUID("path", "id", s)
	}
	return id, nil
}

type storageOutput struct {
	Location string `header:"Location" doc:"Set on create."`
	ETag     string `header:"ETag" doc:"The storage's version as a strong entity tag (\"3\"), for If-Match and If-None-Match."`
	Body     *Storage
}

func storageResp(st *storage.Storage) *storageOutput {
	return &storageOutput{ETag: etag(st.Version), Body: storageOut(st)}
}

// StoragePage is one page of storages; next_cursor is absent on the last page.
type StoragePage struct {
	Items      []*Storage `json:"items" nullable:"false"`
	NextCursor string     `json:"next_cursor,omitempty"`
}

type storagePageOutput struct{ Body StoragePage }

type listStoragesInput struct {
	Limit  int    `query:"limit" minimum:"1" maximum:"1000" default:"100" doc:"Page size, 1 to 1000 (default 100)."`
	Cursor string `query:"cursor" maxLength:"64" doc:"The next_cursor of the previous page."`
	Status string `query:"status" enum:"creating,available,deleting,error" doc:"Only storages with this status."`
	Type   string `query:"type" maxLength:"32" pattern:"^[a-z][a-z0-9_-]{0,31}$" doc:"Only storages of this type (the name of a storage backend, GET /api/v1/storage-types)."`
	Name   string `query:"name" maxLength:"255" doc:"Only the storage with this name."`
}

type createStorageInput struct{ Body StorageCreateBody }

type editStorageInput struct {
	ID   string `path:"id" format:"uuid" doc:"The entity's id."`
	Body MetaEdit
}

func (s *server) location(kind string, id uuid.UUID) string {
	return s.cfg.BasePath + "/api/v1/" + kind + "/" + id.String()
}

func (s *server) registerStorages(api huma.API) {
	const tag = "storages"
	svc := s.sys.Storages

	huma.Register(api, s.op(http.MethodGet, "/api/v1/storages", "listStorages", "List storages", tag),
		func(ctx context.Context, in *listStoragesInput) (*storagePageOutput, error) {
			page, err := svc.List(ctx, storage.ListOptions{Limit: in.Limit, Cursor: in.Cursor,
				Status: storage.Status(in.Status), Type: storage.Type(in.Type), Name: in.Name})
			if err != nil {
				return nil, s.problemOf(ctx, locateFields(err, inQuery))
			}
			out := &storagePageOutput{Body: StoragePage{Items: make([]*Storage, 0, len(page.Items)), NextCursor: page.NextCursor}}
			for _, st := range page.Items {
				out.Body.Items = append(out.Body.Items, storageOut(st))
			}
			return out, nil
		})

	huma.Register(api, created(s.op(http.MethodPost, "/api/v1/storages", "createStorage",
		"Create a storage (a local directory or device, or an NFS export)", tag,
		http.StatusBadRequest, http.StatusConflict, http.StatusServiceUnavailable, http.StatusGatewayTimeout)),
		func(ctx context.Context, in *createStorageInput) (*storageOutput, error) {
			if in.Body.err != nil {
				return nil, s.problemOf(ctx, locateFields(in.Body.err, in.Body.locate))
			}
			st, err := svc.Create(ctx, in.Body.req)
			if err != nil {
				return nil, s.fail(ctx, locateFields(err, in.Body.locate))
			}
			out := storageResp(st)
			out.Location = s.location("storages", st.ID)
			return out, nil
		})

	huma.Register(api, s.op(http.MethodGet, "/api/v1/storages/{id}", "getStorage", "Get a storage", tag, http.StatusNotFound),
		func(ctx context.Context, in *idInput) (*storageOutput, error) {
			return byID(ctx, s, in.ID, func(id uuid.UUID) (*storageOutput, error) {
				st, err := svc.Get(ctx, id)
				if err != nil {
					return nil, err
				}
				return storageResp(st), nil
			})
		})

	huma.Register(api, s.op(http.MethodPatch, "/api/v1/storages/{id}", "editStorage", "Rename or describe a storage", tag,
		http.StatusBadRequest, http.StatusNotFound, http.StatusConflict),
		func(ctx context.Context, in *editStorageInput) (*storageOutput, error) {
			return byID(ctx, s, in.ID, func(id uuid.UUID) (*storageOutput, error) {
				st, err := svc.Edit(ctx, id, storage.EditRequest{Name: in.Body.Name, Description: in.Body.Description})
				if err != nil {
					return nil, err
				}
				return storageResp(st), nil
			})
		})

	huma.Register(api, noContent(s.op(http.MethodDelete, "/api/v1/storages/{id}", "deleteStorage",
		"Delete a storage that holds no volumes or images", tag, http.StatusNotFound, http.StatusConflict,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout)),
		func(ctx context.Context, in *idInput) (*struct{}, error) {
			return byID(ctx, s, in.ID, func(id uuid.UUID) (*struct{}, error) {
				if err := svc.Delete(ctx, id); err != nil {
					return nil, err
				}
				return nil, nil
			})
		})
}
