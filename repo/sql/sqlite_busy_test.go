package sqlstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/repo/repotest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Two stores on one SQLite file (as two processes would be): a writer waiting for the other's lock gives
// up at its context deadline with a typed error, and gets through once the lock is released.
func TestSQLiteLockedByAnotherStore(t *testing.T) {
	dsn := sqliteDSN(t)
	a, b := openStore(t, dsn), openStore(t, dsn)
	ctx := testCtx(t)
	holding, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- a.InTx(ctx, func(ctx context.Context) error {
			if err := a.Storages().Create(ctx, repotest.NewStorage("a")); err != nil {
				return err
			}
			close(holding)
			<-release
			return nil
		})
	}()
	<-holding
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	err := b.Storages().Create(short, repotest.NewStorage("b"))
	require.Error(t, err)
	assert.True(t, errors.Is(err, errkind.Unavailable) || errors.Is(err, errkind.Conflict), "%v", err)
	t.Logf("write while another store holds the lock: %v", err)
	close(release)
	require.NoError(t, <-done)
	require.NoError(t, b.Storages().Create(ctx, repotest.NewStorage("b")))
}
