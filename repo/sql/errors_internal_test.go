package sqlstore

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/testenv/pg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSQLiteConstraintName(t *testing.T) {
	for msg, want := range map[string]string{
		"constraint failed: UNIQUE constraint failed: volumes.storage_id, volumes.name (2067)": "volumes_storage_id_name_key",
		"UNIQUE constraint failed: storages.name":                                              "storages_name_key",
		"UNIQUE constraint failed: vm_interfaces.mac (2067)":                                   "vm_interfaces_mac_key",
		"something else": "",
	} {
		assert.Equal(t, want, sqliteConstraint(msg, false), msg)
	}
	assert.Equal(t, "vms_pkey", sqliteConstraint("UNIQUE constraint failed: vms.id (1555)", true))
}

// The driver errors of violated constraints (what a racing writer that lost gets, bypassing the checks)
// map to the typed kinds with the rule's message, on both databases.
func TestConstraintViolationsMap(t *testing.T) {
	for name, dsn := range map[string]func() string{
		"SQLite":   func() string { return "sqlite://" + filepath.Join(t.TempDir(), "x.db") },
		"Postgres": func() string { return pg.Start(t) },
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s, err := Open(ctx, dsn())
			require.NoError(t, err)
			defer func() { _ = s.Close() }()
			sid, vid := uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7())
			insStorage := "INSERT INTO storages (id, name, type, location, status, version) VALUES (?, ?, 'localfs', ?, 'available', 1)"
			_, err = s.db.ExecContext(ctx, insStorage, sid, "a", "dir:/a")
			require.NoError(t, err)

			var errs []error
			err = s.InTx(ctx, func(ctx context.Context) error {
				c := conn{s: s, db: s.txOf(ctx).tx, t: s.txOf(ctx)}
				_, err := c.exec(ctx, insStorage, uuid.Must(uuid.NewV7()), "a", "dir:/b")
				errs = append(errs, err)
				return err
			})
			require.Error(t, err)
			assert.ErrorIs(t, errs[0], errkind.AlreadyExists)
			assert.Contains(t, errs[0].Error(), "a storage with this name exists")

			mapped := func(query string, args ...any) error {
				_, err := s.db.ExecContext(ctx, query, args...)
				require.Error(t, err)
				return s.mapErr(ctx, err)
			}
			err = mapped(insStorage, uuid.Must(uuid.NewV7()), "b", "dir:/a")
			assert.ErrorIs(t, err, errkind.AlreadyExists)
			assert.Contains(t, err.Error(), "another storage already uses this location")
			err = mapped("INSERT INTO volumes (id, name, storage_id, format, size, status, version) VALUES (?, 'v', ?, 'raw', 1, 'available', 1)", vid, uuid.Must(uuid.NewV7()))
			assert.ErrorIs(t, err, errkind.NotFound, "volume on a missing storage: %v", err)

			_, err = s.db.ExecContext(ctx, "INSERT INTO volumes (id, name, storage_id, format, size, status, version) VALUES (?, 'v', ?, 'raw', 1, 'available', 1)", vid, sid)
			require.NoError(t, err)
			err = s.write(ctx, func(ctx context.Context, c conn) error {
				_, err := c.exec(ctx, "DELETE FROM storages WHERE id = ?", sid)
				return err
			})
			assert.ErrorIs(t, err, errkind.InUse, "storage still holding a volume: %v", err)
		})
	}
}
