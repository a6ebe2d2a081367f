package sqlstore_test

import (
	"encoding/json"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	sqlstore "github.com/openvair/openvair/repo/sql"
)

// Schema version 5 folds the localfs and nfs columns of earlier versions into the backend-owned config and
// state: a database an older openvair wrote opens with every storage as its backend now reads it.
func TestMigrateStorageConfig(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := testCtx(t)
			dsn := b.dsn(t)
			old, err := sqlstore.OpenAt(ctx, dsn, 4)
			require.NoError(t, err)
			v, err := old.SchemaVersion(ctx)
			require.NoError(t, err)
			require.Equal(t, 4, v)
			type row struct {
				id                      uuid.UUID
				name, typ, localfs, nfs string
				location                string
				createdDir              bool
				wantConfig, wantState   string
			}
			rows := []row{
				{uuid.New(), "dir", "localfs", `{"path":"/srv/a","real_path":"/data/a"}`, "", "dir:/data/a", true,
					`{"path":"/srv/a"}`, `{"real_path":"/data/a","created_dir":true}`},
				{uuid.New(), "dev", "localfs", `{"device":"/dev/vdb","fs_type":"xfs","format":true,"fs_uuid":"0b6c-11","real_path":"/dev/vdb"}`, "",
					"dev:/dev/vdb", false, `{"device":"/dev/vdb","fs_type":"xfs","format":true}`, `{"fs_uuid":"0b6c-11","real_path":"/dev/vdb"}`},
				{uuid.New(), "old-dir", "localfs", `{"path":"/srv/b"}`, "", "dir:/srv/b", false, `{"path":"/srv/b"}`, `{}`},
				{uuid.New(), "share", "nfs", "", `{"server":"10.0.0.1","export":"/x","version":3}`, "nfs:10.0.0.1:/x", false,
					`{"server":"10.0.0.1","export":"/x","version":3}`, ""},
			}
			db := sqlstore.DBOf(old)
			for _, r := range rows {
				var localfs, nfs any
				if r.localfs != "" {
					localfs = r.localfs
				}
				if r.nfs != "" {
					nfs = r.nfs
				}
				_, err := db.ExecContext(ctx, `INSERT INTO storages (id, name, description, type, localfs, nfs, location, status,
					status_reason, capacity, available, mount_point, created_dir, created_at, updated_at, version)
					VALUES (?, ?, '', ?, ?, ?, ?, 'available', '', 1, 1, '', ?, 0, 0, 3)`,
					r.id, r.name, r.typ, localfs, nfs, r.location, r.createdDir)
				require.NoError(t, err, r.name)
			}
			require.NoError(t, old.Close())

			s := openStore(t, dsn)
			v, err = s.SchemaVersion(ctx)
			require.NoError(t, err)
			require.Equal(t, sqlstore.LatestSchemaVersion(), v)
			for _, r := range rows {
				got, err := s.Storages().Get(ctx, r.id)
				require.NoError(t, err, r.name)
				assert.Equal(t, r.typ, string(got.Type), r.name)
				assert.Equal(t, r.location, got.Location, r.name)
				assert.JSONEq(t, r.wantConfig, string(got.Config), "%s: config", r.name)
				if r.wantState == "" {
					assert.Empty(t, got.State, "%s: no state", r.name)
				} else {
					assert.JSONEq(t, r.wantState, string(got.State), "%s: state", r.name)
				}
				assert.EqualValues(t, 3, got.Version, "%s: the version is kept", r.name)
				// The storage stays writable as a whole.
				got.Description = "migrated"
				require.NoError(t, s.Storages().Update(ctx, got), r.name)
				again, err := s.Storages().Get(ctx, r.id)
				require.NoError(t, err)
				assert.True(t, json.Valid(again.Config))
				assert.Equal(t, "migrated", again.Description)
			}
		})
	}
}
