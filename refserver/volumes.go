package refserver

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"
	"github.com/openvair/openvair/volume"
)

type volumeOutput struct {
	Location string `header:"Location" doc:"Set on create."`
	ETag     string `header:"ETag" doc:"The volume's version as a strong entity tag (\"3\"), for If-Match and If-None-Match."`
	Body     *Volume
}

func volumeResp(v *volume.Volume) *volumeOutput {
	return &volumeOutput{ETag: etag(v.Version), Body: volumeOut(v)}
}

// VolumePage is one page of volumes; next_cursor is absent on the last page.
type VolumePage struct {
	Items      []*Volume `json:"items" nullable:"false"`
	NextCursor string    `json:"next_cursor,omitempty"`
}

type volumePageOutput struct{ Body VolumePage }

type listVolumesInput struct {
	Limit     int    `query:"limit" minimum:"1" maximum:"1000" default:"100" doc:"Page size, 1 to 1000 (default 100)."`
	Cursor    string `query:"cursor" maxLength:"64" doc:"The next_cursor of the previous page."`
	StorageID string `query:"storage_id" format:"uuid" doc:"Only volumes on this storage."`
	Status    string `query:"status" enum:"creating,available,extending,reverting,deleting,error" doc:"Only volumes with this status."`
	Name      string `query:"name" maxLength:"255" doc:"Only volumes with this name."`
	Attached  string `query:"attached" enum:"true,false" doc:"true: only volumes attached to a VM; false: only free ones."`
}

type createVolumeInput struct{ Body VolumeCreate }

type editVolumeInput struct {
	ID   string `path:"id" format:"uuid" doc:"The entity's id."`
	Body VolumeEdit
}

type extendVolumeInput struct {
	ID   string `path:"id" format:"uuid" doc:"The entity's id."`
	Body VolumeExtend
}

// optionalID parses an optional id filter.
func optionalID(field, s string) (uuid.UUID, error) {
	if s == "" {
		return uuid.Nil, nil
	}
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, invalidUUID("query", field, s)
	}
	return id, nil
}

func (s *server) registerVolumes(api huma.API) {
	const tag = "volumes"
	svc := s.sys.Volumes

	huma.Register(api, s.op(http.MethodGet, "/api/v1/volumes", "listVolumes", "List volumes", tag),
		func(ctx context.Context, in *listVolumesInput) (*volumePageOutput, error) {
			sid, err := optionalID("storage_id", in.StorageID)
			if err != nil {
				return nil, err
			}
			opts := volume.ListOptions{Limit: in.Limit, Cursor: in.Cursor, StorageID: sid, Status: volume.Status(in.Status), Name: in.Name}
			if in.Attached != "" {
				a := in.Attached == "true"
				opts.Attached = &a
			}
			page, err := svc.List(ctx, opts)
			if err != nil {
				return nil, s.problemOf(ctx, locateFields(err, inQuery))
			}
			out := &volumePageOutput{Body: VolumePage{Items: make([]*Volume, 0, len(page.Items)), NextCursor: page.NextCursor}}
			for _, v := range page.Items {
				out.Body.Items = append(out.Body.Items, volumeOut(v))
			}
			return out, nil
		})

	huma.Register(api, created(s.op(http.MethodPost, "/api/v1/volumes", "createVolume", "Create a volume", tag,
		http.StatusBadRequest, http.StatusNotFound, http.StatusConflict, http.StatusRequestEntityTooLarge, http.StatusServiceUnavailable,
		http.StatusGatewayTimeout)),
		func(ctx context.Context, in *createVolumeInput) (*volumeOutput, error) {
			v, err := svc.Create(ctx, in.Body.request())
			if err != nil {
				return nil, s.fail(ctx, err)
			}
			out := volumeResp(v)
			out.Location = s.location("volumes", v.ID)
			return out, nil
		})

	huma.Register(api, s.op(http.MethodGet, "/api/v1/volumes/{id}", "getVolume", "Get a volume", tag, http.StatusNotFound),
		func(ctx context.Context, in *idInput) (*volumeOutput, error) {
			return byID(ctx, s, in.ID, func(id uuid.UUID) (*volumeOutput, error) {
				v, err := svc.Get(ctx, id)
				if err != nil {
					return nil, err
				}
				return volumeResp(v), nil
			})
		})

	huma.Register(api, s.op(http.MethodPatch, "/api/v1/volumes/{id}", "editVolume", "Change a volume's name, description or flags", tag,
		http.StatusBadRequest, http.StatusNotFound, http.StatusConflict),
		func(ctx context.Context, in *editVolumeInput) (*volumeOutput, error) {
			return byID(ctx, s, in.ID, func(id uuid.UUID) (*volumeOutput, error) {
				v, err := svc.Edit(ctx, id, volume.EditRequest{Name: in.Body.Name, Description: in.Body.Description,
					ReadOnly: in.Body.ReadOnly, Shareable: in.Body.Shareable})
				if err != nil {
					return nil, err
				}
				return volumeResp(v), nil
			})
		})

	huma.Register(api, s.op(http.MethodPost, "/api/v1/volumes/{id}/extend", "extendVolume", "Grow a volume", tag,
		http.StatusBadRequest, http.StatusNotFound, http.StatusConflict, http.StatusRequestEntityTooLarge, http.StatusServiceUnavailable,
		http.StatusGatewayTimeout),
		func(ctx context.Context, in *extendVolumeInput) (*volumeOutput, error) {
			return byID(ctx, s, in.ID, func(id uuid.UUID) (*volumeOutput, error) {
				v, err := svc.Extend(ctx, id, in.Body.Size)
				if err != nil {
					// The SDK names the new size new_size; the client sent it as size.
					return nil, locateFields(err, func(f string) string {
						if f == "new_size" {
							f = "size"
						}
						return "body." + f
					})
				}
				return volumeResp(v), nil
			})
		})

	huma.Register(api, noContent(s.op(http.MethodDelete, "/api/v1/volumes/{id}", "deleteVolume",
		"Delete a volume no VM uses", tag, http.StatusNotFound, http.StatusConflict, http.StatusServiceUnavailable,
		http.StatusGatewayTimeout)),
		func(ctx context.Context, in *deleteVolumeInput) (*struct{}, error) {
			return byID(ctx, s, in.ID, func(id uuid.UUID) (*struct{}, error) {
				del := svc.Delete
				if in.DeleteSnapshots {
					del = svc.DeleteWithSnapshots
				}
				if err := del(ctx, id); err != nil {
					return nil, err
				}
				return nil, nil
			})
		})
	s.registerSnapshots(api)
}

type deleteVolumeInput struct {
	ID              string `path:"id" format:"uuid" doc:"The entity's id."`
	DeleteSnapshots bool   `query:"delete_snapshots" doc:"Delete the volume's snapshots with it; without it a volume with snapshots is 409."`
}
