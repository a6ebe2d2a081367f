package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/testenv/pg"
)

// CI defaults of the crash harness; OPENVAIR_CRASH_CYCLES and OPENVAIR_CRASH_SEED override them.
const (
	crashDefaultCycles = 15
	crashDefaultSeed   = 20261002
	crashWorkers       = 4
)

// TestCrashRecovery kills the server (SIGKILL to its process group) at a seeded random moment of a
// concurrent mixed workload — storages, volumes (qcow2 and raw) created, extended and deleted, images
// uploaded (some slowly, so kills land mid-upload) and deleted — restarts it on the same data directory and
// store, and checks after each restart that recovery left a consistent system:
//
//   - no storage, volume, image or VM is in a transitional status;
//   - no file on a storage directory lacks its row (volume-<id>, image-<id>; an upload's .part file never
//     survives a restart);
//   - no volume or image row lacks its file, whatever its status: an error row whose file vanished is
//     a failure too. An error row whose file is there is legitimate (an interrupted extend, an interrupted
//     delete that had not removed the file yet: the user deletes again). A storage row in error whose
//     directory is gone is legitimate only when its reason says its delete was interrupted;
//   - the API answers: every list is 200.
//
// It runs on SQLite and on PostgreSQL. OPENVAIR_CRASH_CYCLES=N runs N cycles per store,
// OPENVAIR_CRASH_SEED=S replays a seed (the seed is logged, and printed with every failure).
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("crash harness: skipped with -short")
	}
	cycles := crashDefaultCycles
	if s := os.Getenv("OPENVAIR_CRASH_CYCLES"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(t, err, "OPENVAIR_CRASH_CYCLES")
		cycles = n
	}
	seed := uint64(crashDefaultSeed)
	if s := os.Getenv("OPENVAIR_CRASH_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "OPENVAIR_CRASH_SEED")
		seed = n
	}
	t.Logf("crash harness: seed %d (replay with OPENVAIR_CRASH_SEED=%d), %d cycles per store", seed, seed, cycles)
	bin := crashServerBinary(t)

	t.Run("SQLite", func(t *testing.T) { crashRun(t, bin, "", seed, cycles) })
	t.Run("Postgres", func(t *testing.T) {
		var dsn string
		if os.Getenv(pg.EnvDSN) != "" {
			dsn = pg.Start(t)
		} else {
			// A cluster of its own, stopped and removed when the test ends (this package's TestMain does not
			// stop pg's shared cluster).
			dsn = pg.CreateDatabase(t, pg.NewCluster(t).AdminDSN())
		}
		crashRun(t, bin, dsn, seed, cycles)
	})
}

// crashRun runs cycles kill/restart cycles on one store.
func crashRun(t *testing.T, bin, dsn string, seed uint64, cycles int) {
	dataDir := filepath.Join(t.TempDir(), "data")
	storeRoot := filepath.Join(t.TempDir(), "stores")
	require.NoError(t, os.MkdirAll(storeRoot, 0o755))
	start := time.Now()
	p, token := crashStart(t, bin, dataDir, dsn)
	var names atomic.Int64
	totals := map[string]int{}
	failed := 0
	for cycle := 1; cycle <= cycles; cycle++ {
		rng := rand.New(rand.NewPCG(seed, uint64(cycle)))
		killAfter := time.Duration(300+rng.IntN(2200)) * time.Millisecond
		stats := &crashStats{}
		w := &crashWorkload{c: &crashClient{base: p.url, token: token, http: &http.Client{Timeout: 30 * time.Second}},
			storeRoot: storeRoot, seed: seed ^ uint64(cycle)<<32, stats: stats, nameSeq: &names}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { w.run(ctx, crashWorkers); close(done) }()
		time.Sleep(killAfter)
		p.kill()
		cancel()
		<-done

		p, token = crashStart(t, bin, dataDir, dsn)
		c := &crashClient{base: p.url, token: token, http: &http.Client{Timeout: 30 * time.Second}}
		v := crashCheck(t, c, dataDir, storeRoot)
		t.Logf("cycle %d: killed after %s, %d operations (%d succeeded); %s", cycle, killAfter,
			stats.attempts.Load(), stats.ok.Load(), v.summary())
		for k, n := range v.counts() {
			totals[k] += n
		}
		if !v.empty() {
			failed++
			assert.Failf(t, "recovery left an inconsistent system",
				"seed %d (OPENVAIR_CRASH_SEED=%d), cycle %d of %d:\n%s\n--- server log (restart) ---\n%s",
				seed, seed, cycle, cycles, v.String(), crashTail(p.logs.String(), 3000))
		}
	}
	t.Logf("crash harness: seed %d, %d cycles, %d inconsistent, totals %v, %s", seed, cycles, failed, totals,
		time.Since(start).Round(100*time.Millisecond))
}

// crashViolations is what one check found.
type crashViolations struct {
	listErrors []string // lists that did not answer 200
	stuck      []string // rows in a transitional status
	orphans    []string // files without their row
	missing    []string // rows without their file
	legitError []string // error rows whose file is there (not a violation; logged)
}

func (v *crashViolations) empty() bool {
	return len(v.listErrors)+len(v.stuck)+len(v.orphans)+len(v.missing) == 0
}

func (v *crashViolations) counts() map[string]int {
	return map[string]int{"list_errors": len(v.listErrors), "stuck": len(v.stuck), "orphans": len(v.orphans),
		"missing": len(v.missing), "error_rows_ok": len(v.legitError)}
}

func (v *crashViolations) summary() string {
	return fmt.Sprintf("list errors %d, stuck %d, orphan files %d, missing files %d, legitimate error rows %d %v",
		len(v.listErrors), len(v.stuck), len(v.orphans), len(v.missing), len(v.legitError), v.legitError)
}

func (v *crashViolations) String() string {
	var b strings.Builder
	for _, l := range []struct {
		what  string
		items []string
	}{{"lists not answering 200", v.listErrors}, {"rows in a transitional status", v.stuck},
		{"files without their row", v.orphans}, {"rows without their file", v.missing}} {
		if len(l.items) > 0 {
			fmt.Fprintf(&b, "%s:\n  %s\n", l.what, strings.Join(l.items, "\n  "))
		}
	}
	return b.String()
}

// crashTransitional are the transitional statuses of each collection (storage, volume, image and vm
// packages' Status constants); recovery must leave none of them.
var crashTransitional = map[string][]string{
	"storages": {"creating", "deleting"},
	"volumes":  {"creating", "extending", "deleting"},
	"images":   {"uploading", "deleting"},
	"vms":      {"creating", "starting", "stopping", "editing", "deleting"},
}

// crashCheck checks the four invariants on a freshly restarted server.
func crashCheck(t *testing.T, c *crashClient, dataDir, storeRoot string) *crashViolations {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	v := &crashViolations{}
	rows := map[string][]crashItem{}
	for _, what := range []string{"storages", "volumes", "images", "vms"} {
		items, code, err := c.list(ctx, what)
		if err != nil || code != http.StatusOK {
			v.listErrors = append(v.listErrors, fmt.Sprintf("GET /api/v1/%s: %d %v", what, code, err))
			continue
		}
		rows[what] = items
		for _, it := range items {
			for _, s := range crashTransitional[what] {
				if it.Status == s {
					v.stuck = append(v.stuck, fmt.Sprintf("%s %s (%s) is %s", what, it.ID, it.Name, it.Status))
				}
			}
		}
	}
	if len(v.listErrors) > 0 {
		return v
	}

	// Every storage directory that ever existed: the default one and the workload's.
	storageDir := map[string]string{} // storage id -> directory
	for _, st := range rows["storages"] {
		if st.LocalFS != nil {
			storageDir[st.ID] = st.LocalFS.Path
		}
		if _, err := os.Stat(storageDir[st.ID]); err != nil {
			if st.Status == "error" && strings.Contains(st.StatusReason, "interrupted while deleting") {
				v.legitError = append(v.legitError, fmt.Sprintf("storage %s: %s (directory gone)", st.Name, st.StatusReason))
			} else {
				v.missing = append(v.missing, fmt.Sprintf("storage %s (%s, %s %q): directory %s: %v", st.ID, st.Name, st.Status, st.StatusReason, storageDir[st.ID], err))
			}
		}
	}
	dirs := map[string]bool{filepath.Join(dataDir, "storage"): true}
	entries, _ := os.ReadDir(storeRoot)
	for _, e := range entries {
		dirs[filepath.Join(storeRoot, e.Name())] = true
	}
	for _, d := range storageDir {
		dirs[d] = true
	}
	owner := map[string]string{} // file path -> row
	for _, what := range []string{"volumes", "images"} {
		kind := strings.TrimSuffix(what, "s")
		for _, it := range rows[what] {
			dir, ok := storageDir[it.StorageID]
			if !ok {
				v.missing = append(v.missing, fmt.Sprintf("%s %s (%s): storage %s has no row", kind, it.ID, it.Name, it.StorageID))
				continue
			}
			path := filepath.Join(dir, kind+"-"+it.ID)
			owner[path] = kind + " " + it.ID
			if _, err := os.Stat(path); err != nil {
				v.missing = append(v.missing, fmt.Sprintf("%s %s (%s, %s %q): file %s: %v", kind, it.ID, it.Name, it.Status, it.StatusReason, path, err))
			} else if it.Status == "error" {
				v.legitError = append(v.legitError, fmt.Sprintf("%s %s: %s", kind, it.Name, it.StatusReason))
			}
		}
	}
	var orphans []string
	for d := range dirs {
		files, err := os.ReadDir(d)
		if err != nil {
			continue // a deleted storage's directory
		}
		for _, f := range files {
			path := filepath.Join(d, f.Name())
			if _, ok := owner[path]; !ok {
				orphans = append(orphans, path)
			}
		}
	}
	sort.Strings(orphans)
	v.orphans = orphans
	return v
}
