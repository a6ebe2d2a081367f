package outbox_test

import (
	"context"
	"errors"
	"testing"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/event"
	"github.com/openvair/openvair/internal/reqctx"
	"github.com/openvair/openvair/repo/memory"
	"github.com/openvair/openvair/repo/outbox"
	"github.com/openvair/openvair/repo/repotest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func events(t *testing.T, st *outbox.Store) []event.Event {
	t.Helper()
	evs, err := st.Events().After(context.Background(), 0, 1000)
	require.NoError(t, err)
	return evs
}

func TestChangesBecomeEvents(t *testing.T) {
	ctx := reqctx.WithMeta(context.Background(), reqctx.Meta{RequestID: "r1", Requester: "alice"})
	notified := 0
	st := outbox.Wrap(memory.New(), func() { notified++ })
	s := repotest.NewStorage("pool")
	require.NoError(t, st.Storages().Create(ctx, s))
	s.Description = "changed"
	require.NoError(t, st.Storages().Update(ctx, s))
	require.NoError(t, st.Storages().Delete(ctx, s.ID))

	evs := events(t, st)
	require.Len(t, evs, 3)
	for i, want := range []struct {
		typ     string
		version int64
	}{{"storage.created", 1}, {"storage.updated", 2}, {"storage.deleted", 2}} {
		assert.Equal(t, want.typ, evs[i].Type)
		assert.Equal(t, want.version, evs[i].Version, want.typ)
		assert.Equal(t, s.ID, evs[i].ResourceID)
		assert.Equal(t, "r1", evs[i].RequestID)
		assert.Equal(t, "alice", evs[i].Requester)
	}
	assert.Contains(t, string(evs[1].Data), `"description":"changed"`)
	assert.Empty(t, evs[2].Data, "a delete carries no entity")
	assert.Equal(t, 3, notified, "followers are woken after each commit")
}

func TestRolledBackChangesWriteNoEvent(t *testing.T) {
	ctx := context.Background()
	notified := 0
	st := outbox.Wrap(memory.New(), func() { notified++ })
	boom := errors.New("boom")
	err := st.InTx(ctx, func(ctx context.Context) error {
		require.NoError(t, st.Storages().Create(ctx, repotest.NewStorage("a")))
		require.NoError(t, st.Storages().Create(ctx, repotest.NewStorage("b")))
		return boom
	})
	require.ErrorIs(t, err, boom)
	assert.Empty(t, events(t, st))
	assert.Zero(t, notified)

	// One unit of work with two changes: two events, one wake-up.
	require.NoError(t, st.InTx(ctx, func(ctx context.Context) error {
		if err := st.Storages().Create(ctx, repotest.NewStorage("a")); err != nil {
			return err
		}
		return st.Storages().Create(ctx, repotest.NewStorage("b"))
	}))
	assert.Len(t, events(t, st), 2)
	assert.Equal(t, 1, notified)
}

func TestExpectedVersionIsCheckedAtTheFirstWrite(t *testing.T) {
	st := outbox.Wrap(memory.New(), nil)
	s := repotest.NewStorage("pool")
	require.NoError(t, st.Storages().Create(context.Background(), s))

	err := st.Storages().Delete(reqctx.WithExpectedVersion(context.Background(), s.ID, s.Version+1), s.ID)
	require.ErrorIs(t, err, errkind.PreconditionFailed)
	_, err = st.Storages().Get(context.Background(), s.ID)
	require.NoError(t, err, "nothing deleted")

	// Checked once: the second write of the same call is past the precondition.
	ctx := reqctx.WithExpectedVersion(context.Background(), s.ID, s.Version)
	s.Description = "one"
	require.NoError(t, st.Storages().Update(ctx, s))
	s.Description = "two"
	require.NoError(t, st.Storages().Update(ctx, s))
	assert.Len(t, events(t, st), 3)
}
