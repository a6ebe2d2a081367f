package openvair_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/internal/operation"
	"github.com/openvair/openvair/internal/sdktest"
	"github.com/openvair/openvair/repo"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/volume"
	"github.com/stretchr/testify/require"
)

// fakeBackends hands the same fake storage backend out for every type.
type fakeBackends struct{ b *fake.Storage }

func (f fakeBackends) StorageBackend(storage.Type) (storage.Backend, error) { return f.b, nil }
func (f fakeBackends) VolumeBackend(storage.Type) (volume.Backend, error)   { return f.b, nil }

// benchStore opens a fresh store of the named kind.
func benchStore(b *testing.B, kind string) repo.Store {
	b.Helper()
	dsn := "memory:"
	if kind == "sqlite" {
		dsn = "sqlite://" + filepath.Join(b.TempDir(), "bench.db")
	}
	st, err := repo.Open(context.Background(), dsn)
	require.NoError(b, err)
	return st
}

// BenchmarkVolumeEdit compares one synchronous volume edit as it was before operations and events
// ("bare": the volume service alone over the store) with the same call recording its operation and event
// ("recorded": through an opened System), and with the call made asynchronously and waited for
// ("async+wait": Prefer: respond-async plus wait, without HTTP). Report the ratios recorded/bare and
// async+wait/bare of ns/op from one run.
func BenchmarkVolumeEdit(b *testing.B) {
	for _, kind := range []string{"memory", "sqlite"} {
		b.Run(kind+"/bare", func(b *testing.B) {
			st := benchStore(b, kind)
			defer st.Close()
			ctx := context.Background()
			be := fakeBackends{fake.NewStorage(sdktest.Capacity)}
			storages := storage.NewService(st.Storages(), st, be)
			pool, err := storages.Create(ctx, storage.CreateRequest{Name: "pool", Type: "localfs", Config: localfs.Config{Path: "/srv/pool"}})
			require.NoError(b, err)
			vols := volume.NewService(st.Volumes(), st.Storages(), st, be)
			vol, err := vols.Create(ctx, volume.CreateRequest{Name: "v", StorageID: pool.ID, Format: volume.FormatRaw, Size: 4096})
			require.NoError(b, err)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				desc := fmt.Sprint(i)
				if _, err := vols.Edit(ctx, vol.ID, volume.EditRequest{Description: &desc}); err != nil {
					b.Fatal(err)
				}
			}
		})
		for _, mode := range []string{"recorded", "async+wait"} {
			b.Run(kind+"/"+mode, func(b *testing.B) {
				st := benchStore(b, kind)
				e := sdktest.New(b, st)
				pool := e.Storage(b, "pool")
				vol := e.Volume(b, pool.ID, "v", 4096)
				ctx := context.Background()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					desc := fmt.Sprint(i)
					if mode == "recorded" {
						if _, err := e.Sys.Volumes.Edit(ctx, vol.ID, volume.EditRequest{Description: &desc}); err != nil {
							b.Fatal(err)
						}
						continue
					}
					op, err := operation.Async(ctx, e.Sys.Operations, func(ctx context.Context) error {
						_, err := e.Sys.Volumes.Edit(ctx, vol.ID, volume.EditRequest{Description: &desc})
						return err
					})
					if err != nil {
						b.Fatal(err)
					}
					wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					done, err := e.Sys.Operations.Wait(wctx, op.ID)
					cancel()
					if err != nil || done.Status != openvair.OperationStatus(operation.StatusSucceeded) {
						b.Fatalf("%v %+v", err, done)
					}
				}
			})
		}
	}
}
