package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/testenv/pg"
	"github.com/openvair/openvair/repo/repotest"
	sqlstore "github.com/openvair/openvair/repo/sql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A database that goes down under an open store gives a typed Unavailable error within the deadline.
func TestPostgresDown(t *testing.T) {
	c := pg.NewCluster(t)
	s := openStore(t, c.AdminDSN())
	ctx := testCtx(t)
	st := repotest.NewStorage("before")
	require.NoError(t, s.Storages().Create(ctx, st))

	require.NoError(t, c.Stop())
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := s.Storages().Get(dctx, st.ID)
	require.Error(t, err)
	assert.ErrorIs(t, err, errkind.Unavailable, "read: %v", err)
	t.Logf("read from a stopped server: %v", err)
	err = s.Storages().Create(dctx, repotest.NewStorage("after"))
	assert.ErrorIs(t, err, errkind.Unavailable, "write: %v", err)
	err = s.InTx(dctx, func(context.Context) error { return nil })
	assert.ErrorIs(t, err, errkind.Unavailable, "unit of work: %v", err)
}

// Opening a database nobody serves is refused with Unavailable, not a hang.
func TestOpenUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close()) // nothing listens there now

	ctx, cancel := context.WithTimeout(testCtx(t), 5*time.Second)
	defer cancel()
	_, err = sqlstore.Open(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/x?sslmode=disable", port))
	assert.ErrorIs(t, err, errkind.Unavailable, "closed port: %v", err)

	// A server that accepts connections but never answers: the context deadline bounds the wait.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer func() { _ = silent.Close() }()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() })
		}
	}()
	short, cancel2 := context.WithTimeout(testCtx(t), 300*time.Millisecond)
	defer cancel2()
	_, err = sqlstore.Open(short, "postgres://postgres@"+silent.Addr().String()+"/x?sslmode=disable")
	assert.ErrorIs(t, err, errkind.Unavailable, "silent server: %v", err)
	t.Logf("open on a silent server: %v", err)
	assert.True(t, errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errkind.Unavailable), "%v", err)

	_, err = sqlstore.Open(testCtx(t), "sqlite://"+filepath.Join(t.TempDir(), "no", "such", "dir", "x.db"))
	assert.ErrorIs(t, err, errkind.Unavailable, "SQLite file in a missing directory: %v", err)
}

// A unit of work that fails after writing to several tables leaves nothing behind.
func TestFailedUnitOfWorkLeavesNothing(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			s := openStore(t, b.dsn(t))
			ctx := testCtx(t)
			boom := errors.New("boom")
			st := repotest.NewStorage("pool")
			err := s.InTx(ctx, func(ctx context.Context) error {
				require.NoError(t, s.Storages().Create(ctx, st))
				v := repotest.NewVolume(st.ID, "disk")
				require.NoError(t, s.Volumes().Create(ctx, v))
				img := repotest.NewImage(st.ID, "cd")
				require.NoError(t, s.Images().Create(ctx, img))
				m := repotest.NewVM("web", []uuid.UUID{v.ID}, []uuid.UUID{img.ID}, "52:54:00:00:00:01")
				require.NoError(t, s.VMs().Create(ctx, m))
				return boom
			})
			require.ErrorIs(t, err, boom)
			for _, table := range []string{"storages", "volumes", "images", "vms", "vm_disks", "vm_cdroms", "vm_interfaces"} {
				var n int
				require.NoError(t, sqlstore.DBOf(s).QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n))
				assert.Zero(t, n, table)
			}

			// A panic inside the unit of work rolls back as well.
			assert.Panics(t, func() {
				_ = s.InTx(ctx, func(ctx context.Context) error {
					require.NoError(t, s.Storages().Create(ctx, st))
					panic("bug")
				})
			})
			_, err = s.Storages().Get(ctx, st.ID)
			assert.ErrorIs(t, err, errkind.NotFound)
		})
	}
}
