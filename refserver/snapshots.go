package refserver

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"github.com/openvair/openvair/volume"
)

// Snapshot is a volume's content at one moment, kept on the volume's storage.
type Snapshot struct {
	ID           uuid.UUID     `json:"id" format:"uuid"`
	VolumeID     uuid.UUID     `json:"volume_id" format:"uuid"`
	StorageID    uuid.UUID     `json:"storage_id" format:"uuid"`
	Name         string        `json:"name"`
	Description  string        `json:"description"`
	Format       volume.Format `json:"format" enum:"qcow2,raw"`
	Size         int64         `json:"size" doc:"The volume's virtual size when taken, in bytes."`
	Allocated    int64         `json:"allocated" doc:"Bytes it takes on the storage."`
	Status       volume.Status `json:"status" enum:"creating,available,deleting,error"`
	StatusReason string        `json:"status_reason,omitempty"`
	CreatedAt    time.Time     `json:"created_at"`
	UpdatedAt    time.Time     `json:"updated_at"`
	Version      int64         `json:"version"`
}

func snapshotOut(sn *volume.Snapshot) *Snapshot {
	return &Snapshot{ID: sn.ID, VolumeID: sn.VolumeID, StorageID: sn.StorageID, Name: sn.Name, Description: sn.Description,
		Format: sn.Format, Size: sn.Size, Allocated: sn.Allocated, Status: sn.Status, StatusReason: sn.StatusReason,
		CreatedAt: sn.CreatedAt, UpdatedAt: sn.UpdatedAt, Version: sn.Version}
}

// SnapshotCreate asks for a snapshot of a volume.
type SnapshotCreate struct {
	Name        string `json:"name" minLength:"1" maxLength:"255" doc:"Unique among the volume's snapshots."`
	Description string `json:"description,omitempty" maxLength:"255"`
}

type snapshotOutput struct {
	Location string `header:"Location" doc:"Set on create."`
	ETag     string `header:"ETag"`
	Body     *Snapshot
}

type snapshotListOutput struct {
	Body struct {
		Items []*Snapshot `json:"items" nullable:"false"`
	}
}

type createSnapshotInput struct {
	ID   string `path:"id" format:"uuid" doc:"The volume's id."`
	Body SnapshotCreate
}

func (s *server) registerSnapshots(api huma.API) {
	const tag = "volumes"
	svc := s.sys.Volumes
	resp := func(sn *volume.Snapshot) *snapshotOutput {
		return &snapshotOutput{ETag: etag(sn.Version), Body: snapshotOut(sn)}
	}

	o := created(s.op(http.MethodPost, "/api/v1/volumes/{id}/snapshots", "createSnapshot", "Take a snapshot of a volume", tag,
		http.StatusBadRequest, http.StatusNotFound, http.StatusConflict, http.StatusRequestEntityTooLarge,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout))
	o.Description = "Takes a snapshot of a volume that no running VM uses (409 otherwise): a clone of its file on its " +
		"storage (a reflink where the filesystem shares blocks, a sparse copy elsewhere, 413 when the storage has no " +
		"room for it), which later writes to the volume do not change."
	huma.Register(api, o, func(ctx context.Context, in *createSnapshotInput) (*snapshotOutput, error) {
		return byID(ctx, s, in.ID, func(id uuid.UUID) (*snapshotOutput, error) {
			sn, err := svc.CreateSnapshot(ctx, id, volume.SnapshotRequest{Name: in.Body.Name, Description: in.Body.Description})
			if err != nil {
				return nil, err
			}
			out := resp(sn)
			out.Location = s.location("snapshots", sn.ID)
			return out, nil
		})
	})

	l := s.op(http.MethodGet, "/api/v1/volumes/{id}/snapshots", "listSnapshots", "List a volume's snapshots", tag, http.StatusNotFound)
	l.Description = "Lists a volume's snapshots, oldest first."
	huma.Register(api, l, func(ctx context.Context, in *idInput) (*snapshotListOutput, error) {
		return byID(ctx, s, in.ID, func(id uuid.UUID) (*snapshotListOutput, error) {
			list, err := svc.Snapshots(ctx, id)
			if err != nil {
				return nil, err
			}
			out := &snapshotListOutput{}
			out.Body.Items = make([]*Snapshot, 0, len(list))
			for _, sn := range list {
				out.Body.Items = append(out.Body.Items, snapshotOut(sn))
			}
			return out, nil
		})
	})

	g := s.op(http.MethodGet, "/api/v1/snapshots/{id}", "getSnapshot", "Get a snapshot", tag, http.StatusNotFound)
	g.Description = "Returns one snapshot."
	huma.Register(api, g, func(ctx context.Context, in *idInput) (*snapshotOutput, error) {
		return byID(ctx, s, in.ID, func(id uuid.UUID) (*snapshotOutput, error) {
			sn, err := svc.Snapshot(ctx, id)
			if err != nil {
				return nil, err
			}
			return resp(sn), nil
		})
	})

	d := noContent(s.op(http.MethodDelete, "/api/v1/snapshots/{id}", "deleteSnapshot", "Delete a snapshot", tag,
		http.StatusNotFound, http.StatusConflict, http.StatusServiceUnavailable, http.StatusGatewayTimeout))
	d.Description = "Deletes a snapshot and its file; the volume is unchanged."
	huma.Register(api, d, func(ctx context.Context, in *idInput) (*struct{}, error) {
		return byID(ctx, s, in.ID, func(id uuid.UUID) (*struct{}, error) {
			return nil, svc.DeleteSnapshot(ctx, id)
		})
	})

	r := s.op(http.MethodPost, "/api/v1/snapshots/{id}/revert", "revertSnapshot", "Revert a volume to a snapshot", tag,
		http.StatusNotFound, http.StatusConflict, http.StatusServiceUnavailable, http.StatusGatewayTimeout)
	r.Description = "Gives the snapshot's volume, which no running VM may use (409), the content of the snapshot; the " +
		"snapshot stays. Returns the volume. Should the copy fail, the volume is left in error and a new revert completes it."
	huma.Register(api, r, func(ctx context.Context, in *idInput) (*volumeOutput, error) {
		return byID(ctx, s, in.ID, func(id uuid.UUID) (*volumeOutput, error) {
			v, err := svc.RevertSnapshot(ctx, id)
			if err != nil {
				return nil, err
			}
			return volumeResp(v), nil
		})
	})
}
