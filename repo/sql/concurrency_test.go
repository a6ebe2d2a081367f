package sqlstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/repo/repotest"
	"github.com/openvair/openvair/storage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const racers = 20

// race runs f from racers goroutines at once and returns their errors.
func race(f func(i int) error) []error {
	errs := make([]error, racers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = f(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// oneWinner asserts exactly one nil error and AlreadyExists for every other.
func oneWinner(t *testing.T, errs []error) {
	t.Helper()
	wins := 0
	for _, err := range errs {
		if err == nil {
			wins++
			continue
		}
		assert.ErrorIs(t, err, errkind.AlreadyExists)
	}
	assert.Equal(t, 1, wins)
}

// Concurrent creates with the same name (or MAC) at the repository level: exactly one winner.
func TestSameNameCreates(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			s := openStore(t, b.dsn(t))
			ctx := testCtx(t)
			oneWinner(t, race(func(i int) error {
				st := repotest.NewStorage("same")
				st.Location = fmt.Sprintf("dir:/srv/%d", i)
				return s.Storages().Create(ctx, st)
			}))
			oneWinner(t, race(func(i int) error {
				st := repotest.NewStorage(fmt.Sprintf("loc%d", i))
				st.Location = "dir:/srv/shared"
				return s.Storages().Create(ctx, st)
			}))
			page, err := s.Storages().List(ctx, storage.ListOptions{})
			require.NoError(t, err)
			require.Len(t, page.Items, 2)
			pool := page.Items[0].ID
			oneWinner(t, race(func(int) error { return s.Volumes().Create(ctx, repotest.NewVolume(pool, "disk")) }))
			oneWinner(t, race(func(int) error { return s.Images().Create(ctx, repotest.NewImage(pool, "cd")) }))
			oneWinner(t, race(func(int) error { return s.VMs().Create(ctx, repotest.NewVM("vm", nil, nil)) }))
			oneWinner(t, race(func(i int) error {
				return s.VMs().Create(ctx, repotest.NewVM(fmt.Sprintf("nic%d", i), nil, nil, "52:54:00:aa:bb:cc"))
			}))
		})
	}
}

// Read-modify-write units of work racing on one row: none is lost (PostgreSQL retries the serialization
// failures, SQLite runs them one after the other).
func TestNoLostUpdates(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			s := openStore(t, b.dsn(t))
			ctx := testCtx(t)
			st := repotest.NewStorage("counter")
			st.Capacity = 0
			require.NoError(t, s.Storages().Create(ctx, st))
			errs := race(func(int) error {
				return s.InTx(ctx, func(ctx context.Context) error {
					cur, err := s.Storages().Get(ctx, st.ID)
					if err != nil {
						return err
					}
					cur.Capacity++
					return s.Storages().Update(ctx, cur)
				})
			})
			for _, err := range errs {
				assert.NoError(t, err)
			}
			got, err := s.Storages().Get(ctx, st.ID)
			require.NoError(t, err)
			assert.EqualValues(t, racers, got.Capacity)
			assert.EqualValues(t, racers+1, got.Version)
		})
	}
}

// Deleting a storage while volumes are created on it: either the delete wins (and every create finds no
// storage) or the volumes exist and the delete is refused; never a volume without its storage.
func TestDeleteRacesCreate(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			s := openStore(t, b.dsn(t))
			ctx := testCtx(t)
			for round := range 5 {
				st := repotest.NewStorage(fmt.Sprintf("pool%d", round))
				require.NoError(t, s.Storages().Create(ctx, st))
				errs := race(func(i int) error {
					if i == round {
						return s.Storages().Delete(ctx, st.ID)
					}
					return s.Volumes().Create(ctx, repotest.NewVolume(st.ID, fmt.Sprintf("v%d", i)))
				})
				created := 0
				for i, err := range errs {
					switch {
					case i == round && err != nil:
						assert.ErrorIs(t, err, errkind.InUse)
					case i != round && err == nil:
						created++
					case i != round:
						assert.ErrorIs(t, err, errkind.NotFound)
					}
				}
				_, err := s.Storages().Get(ctx, st.ID)
				if errs[round] == nil {
					assert.ErrorIs(t, err, errkind.NotFound)
					assert.Zero(t, created)
				} else {
					require.NoError(t, err)
					deps, err := s.Storages().Dependents(ctx, st.ID)
					require.NoError(t, err)
					assert.Len(t, deps, created)
				}
			}
		})
	}
}
