package sqlstore_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair/internal/cursor"
	"github.com/openvair/openvair/internal/testenv/pg"
	"github.com/openvair/openvair/repo/repotest"
	sqlstore "github.com/openvair/openvair/repo/sql"
	"github.com/openvair/openvair/volume"
	"github.com/stretchr/testify/require"
)

// benchVolumes is the size of the benchmark table; pages are benchPage volumes, the deep page is number
// deepPage.
const (
	benchVolumes = 100_000
	benchPage    = 100
	deepPage     = 500
	insertBatch  = 1000
)

// fixture is a store holding benchVolumes volumes, made once per backend per run.
type fixture struct {
	once  sync.Once
	store *sqlstore.Store
	ids   []uuid.UUID // in id order
	err   error
}

var (
	fixtures   = map[string]*fixture{"SQLite": {}, "Postgres": {}}
	fixturesMu sync.Mutex
	cleanups   []func()
)

// dropFixtures closes the fixture stores and removes their databases (from TestMain).
func dropFixtures() {
	fixturesMu.Lock()
	defer fixturesMu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
}

func onExit(f func()) {
	fixturesMu.Lock()
	cleanups = append(cleanups, f)
	fixturesMu.Unlock()
}

// volumesFixture returns the backend's store with benchVolumes volumes.
func volumesFixture(b *testing.B, backend string) *fixture {
	admin := ""
	if backend == "Postgres" {
		admin = pg.Admin(b) // may skip: before the Once
	}
	f := fixtures[backend]
	f.once.Do(func() {
		var dsn string
		switch backend {
		case "SQLite":
			dir, err := os.MkdirTemp("", "ovbench")
			if err != nil {
				f.err = err
				return
			}
			onExit(func() { _ = os.RemoveAll(dir) })
			dsn = "sqlite://" + dir + "/bench.db"
		case "Postgres":
			var drop func() error
			if dsn, drop, f.err = pg.NewDatabase(admin); f.err != nil {
				return
			}
			onExit(func() { _ = drop() })
		}
		f.store, f.ids, f.err = fill(dsn)
		if f.store != nil {
			onExit(func() { _ = f.store.Close() })
		}
	})
	require.NoError(b, f.err)
	return f
}

// fill opens a store on dsn and bulk-inserts benchVolumes volumes on one storage, in batches inside one
// unit of work.
func fill(dsn string) (*sqlstore.Store, []uuid.UUID, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, err := sqlstore.Open(ctx, dsn)
	if err != nil {
		return nil, nil, err
	}
	st := repotest.NewStorage("bench")
	if err := s.Storages().Create(ctx, st); err != nil {
		return nil, nil, err
	}
	ids := make([]uuid.UUID, benchVolumes)
	for i := range ids {
		ids[i] = uuid.Must(uuid.NewV7())
	}
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
	now := time.Now().UnixNano()
	conn, err := sqlstore.DBOf(s).BeginTx(ctx, nil)
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = conn.Rollback() }()
	for start := 0; start < benchVolumes; start += insertBatch {
		var q strings.Builder
		q.WriteString("INSERT INTO volumes (id, name, description, storage_id, format, size, allocated, read_only, shareable, status, status_reason, created_at, updated_at, version) VALUES ")
		args := make([]any, 0, insertBatch*5)
		for i := start; i < start+insertBatch; i++ {
			if i > start {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?, '', ?, 'qcow2', 1073741824, 0, FALSE, FALSE, ?, '', ?, ?, 1)")
			status := volume.StatusAvailable
			if i%10 == 0 {
				status = volume.StatusError
			}
			args = append(args, ids[i], fmt.Sprintf("vol%06d", i), st.ID, status, now, now)
		}
		if _, err := conn.ExecContext(ctx, q.String(), args...); err != nil {
			return nil, nil, err
		}
	}
	if err := conn.Commit(); err != nil {
		return nil, nil, err
	}
	if _, err := sqlstore.DBOf(s).ExecContext(ctx, "ANALYZE"); err != nil {
		return nil, nil, err
	}
	return s, ids, nil
}

func forEachBackend(b *testing.B, run func(b *testing.B, f *fixture)) {
	for _, name := range []string{"SQLite", "Postgres"} {
		b.Run(name, func(b *testing.B) { run(b, volumesFixture(b, name)) })
	}
}

// timeOps returns the mean time of n calls of op.
func timeOps(b *testing.B, n int, op func(i int) error) time.Duration {
	start := time.Now()
	for i := range n {
		if err := op(i); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start) / time.Duration(max(n, 1))
}

// BenchmarkGetByID reads random volumes by id from a table of 100,000; the ratio is against a bare
// SELECT 1 round trip on the same store.
func BenchmarkGetByID(b *testing.B) {
	forEachBackend(b, func(b *testing.B, f *fixture) {
		ctx := context.Background()
		r := rand.New(rand.NewPCG(1, 2))
		b.ResetTimer()
		per := timeOps(b, b.N, func(int) error {
			_, err := f.store.Volumes().Get(ctx, f.ids[r.IntN(len(f.ids))])
			return err
		})
		b.StopTimer()
		base := timeOps(b, b.N, func(int) error {
			var one int
			return sqlstore.DBOf(f.store).QueryRowContext(ctx, "SELECT 1").Scan(&one)
		})
		b.ReportMetric(float64(per)/float64(base), "x-roundtrip")
	})
}

// BenchmarkListFirstPage lists the first page of 100 volumes of 100,000.
func BenchmarkListFirstPage(b *testing.B) {
	forEachBackend(b, func(b *testing.B, f *fixture) {
		ctx := context.Background()
		b.ResetTimer()
		for range b.N {
			page, err := f.store.Volumes().List(ctx, volume.ListOptions{Limit: benchPage})
			if err != nil || len(page.Items) != benchPage {
				b.Fatal(err, len(page.Items))
			}
		}
	})
}

// BenchmarkListPage500 lists page 500 of 100 (volumes 49,901-50,000 of 100,000) by its cursor; the ratio
// is against the first page measured in the same run: keyset pagination makes it about 1.
func BenchmarkListPage500(b *testing.B) {
	forEachBackend(b, func(b *testing.B, f *fixture) {
		ctx := context.Background()
		deep := volume.ListOptions{Limit: benchPage, Cursor: cursor.Encode(f.ids[(deepPage-1)*benchPage-1])}
		list := func(o volume.ListOptions, first uuid.UUID) func(int) error {
			return func(int) error {
				page, err := f.store.Volumes().List(ctx, o)
				if err == nil && (len(page.Items) != benchPage || page.Items[0].ID != first) {
					err = fmt.Errorf("wrong page: %d items", len(page.Items))
				}
				return err
			}
		}
		b.ResetTimer()
		per := timeOps(b, b.N, list(deep, f.ids[(deepPage-1)*benchPage]))
		b.StopTimer()
		base := timeOps(b, b.N, list(volume.ListOptions{Limit: benchPage}, f.ids[0]))
		b.ReportMetric(float64(per)/float64(base), "x-first-page")
	})
}
