package sqlstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/event"
	"github.com/openvair/openvair/internal/testenv/pg"
	"github.com/openvair/openvair/repo/repotest"
	sqlstore "github.com/openvair/openvair/repo/sql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// woken waits up to d for a value on ch.
func woken(ch <-chan struct{}, d time.Duration) bool {
	select {
	case _, ok := <-ch:
		return ok
	case <-time.After(d):
		return false
	}
}

// Two stores on one PostgreSQL database, as two processes: an append committed through one wakes Listen
// on the other; a rolled-back one does not; the listener survives the loss of its connection; the channel
// closes when the context ends.
func TestListenWakesOtherProcesses(t *testing.T) {
	dsn := pg.Start(t)
	writer, follower := openStore(t, dsn), openStore(t, dsn)
	ctx := testCtx(t)
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	var n event.Notifier = follower
	ch, err := n.Listen(lctx)
	require.NoError(t, err)
	assert.Equal(t, 1, cap(ch), "wake-ups coalesce")
	assert.False(t, woken(ch, 200*time.Millisecond), "nothing appended yet")

	require.NoError(t, writer.Events().Append(ctx, repotest.NewEvent(1, time.Now())))
	assert.True(t, woken(ch, 10*time.Second), "an append by another store wakes the follower")

	boom := errors.New("boom")
	err = writer.InTx(ctx, func(ctx context.Context) error {
		require.NoError(t, writer.Events().Append(ctx, repotest.NewEvent(2, time.Now())))
		return boom
	})
	require.ErrorIs(t, err, boom)
	assert.False(t, woken(ch, 300*time.Millisecond), "a rolled-back append notifies nobody")

	// The listener's connection is killed: it reconnects and listens again.
	listeners := func() []int {
		var pids []int
		rows, err := sqlstore.DBOf(writer).QueryContext(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'`)
		require.NoError(t, err)
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var pid int
			require.NoError(t, rows.Scan(&pid))
			pids = append(pids, pid)
		}
		require.NoError(t, rows.Err())
		return pids
	}
	before := listeners()
	require.Len(t, before, 1)
	var killed bool
	require.NoError(t, sqlstore.DBOf(writer).QueryRowContext(ctx, "SELECT pg_terminate_backend(?)", before[0]).Scan(&killed))
	require.True(t, killed)
	assert.True(t, woken(ch, 10*time.Second), "a lost connection wakes the follower: it may have missed events")
	require.Eventually(t, func() bool {
		pids := listeners()
		return len(pids) == 1 && pids[0] != before[0]
	}, 10*time.Second, 20*time.Millisecond, "the listener reconnected")
	select { // drop a wake-up of the reconnection
	case <-ch:
	default:
	}
	require.NoError(t, writer.Events().Append(ctx, repotest.NewEvent(3, time.Now())))
	assert.True(t, woken(ch, 10*time.Second), "woken again after reconnecting")

	stop()
	require.Eventually(t, func() bool {
		select {
		case _, ok := <-ch:
			return !ok
		default:
			return false
		}
	}, 10*time.Second, 10*time.Millisecond, "the channel closes when the context ends")
	assert.Eventually(t, func() bool { return len(listeners()) == 0 }, 10*time.Second, 20*time.Millisecond,
		"the listener's connection is closed")
}

// A SQLite store is not shared by processes that could notify each other.
func TestListenSQLiteUnsupported(t *testing.T) {
	s := openStore(t, sqliteDSN(t))
	_, err := s.Listen(testCtx(t))
	assert.ErrorIs(t, err, errkind.Unsupported)
}
