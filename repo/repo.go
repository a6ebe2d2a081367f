// Package repo defines what a persistence backend of openvair provides — a Store with one repository per
// aggregate and a unit of work — and a registry that opens stores by DSN scheme. Implementations:
// repo/memory (in-process, for tests and experiments) and repo/sql (PostgreSQL and SQLite through bun);
// every implementation passes the conformance suite in repo/repotest.
//
// A store registers its DSN schemes when its package is imported, as database/sql drivers do: repo/memory
// registers "memory:", repo/sql registers "sqlite:", "postgres:" and "postgresql:". A program links only
// the stores it imports (the root package openvair imports repo/memory, the default).
//
// Besides Store, a store may implement optional interfaces that the root package looks for: JobQueueOpener
// (asynchronous operations run by a durable job queue in the store's database, so that any process sharing
// it may run them; without it they run in goroutines of the calling process) and EventNotifierProvider
// (other processes' events wake this one at once; without it they are seen by polling the log).
package repo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/event"
	"github.com/openvair/openvair/internal/idem"
	"github.com/openvair/openvair/internal/lease"
	"github.com/openvair/openvair/internal/operation"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
)

// Store is a persistence backend.
type Store interface {
	// InTx runs fn as one unit of work: repository calls made with the ctx fn receives commit together, or
	// not at all when fn returns an error. A nested InTx joins the outer unit of work.
	//
	// The store may run fn more than once (PostgreSQL, after a serialization failure): fn must read what it
	// needs inside the unit of work, keep no effect outside it, and not reuse a value an earlier attempt
	// passed to Update (its Version moved on). The services are tested over a store that runs every unit of
	// work twice (TestUnitsOfWorkRunTwice in the root package).
	InTx(ctx context.Context, fn func(ctx context.Context) error) error
	Storages() storage.Repository
	Volumes() volume.Repository
	Snapshots() volume.SnapshotRepository
	Images() image.Repository
	VMs() vm.Repository
	// Operations, Events, Idempotency and Leases keep the records of work, the change log, idempotency
	// keys and leader leases in the same database as the data, so that they commit with it.
	Operations() operation.Repository
	Events() event.Log
	Idempotency() idem.Store
	Leases() lease.Store
	io.Closer
}

// JobQueueOpener is implemented by a store that can run asynchronous operations as durable jobs in its own
// database (repo/sql: River, on SQLite and PostgreSQL). A store that does not implement it (repo/memory)
// leaves them to goroutines of the process that submitted them.
type JobQueueOpener interface {
	// OpenJobQueue prepares the queue (creating its tables if needed) whose workers run ops' operations;
	// JobQueue.Start begins working.
	OpenJobQueue(ctx context.Context, ops *operation.Service, cfg JobQueueConfig) (JobQueue, error)
}

// JobQueueConfig configures a job queue.
type JobQueueConfig struct {
	// Workers is how many operations this process runs at once (default 10).
	Workers int
	// Lease is the operations' lease: a job stuck for twice as long is rescued.
	Lease  time.Duration
	Logger *slog.Logger
}

// JobQueue runs asynchronous operations: Enqueue (operation.Executor) stores the job of an operation in
// the unit of work that stores the operation, and the workers, between Start and Stop, run it.
type JobQueue interface {
	operation.Executor
	// Start starts the workers; they run until Stop.
	Start(ctx context.Context) error
	// Stop stops fetching jobs and waits, until ctx ends, for running ones to finish, then releases the
	// queue's resources.
	Stop(ctx context.Context) error
}

// EventNotifierProvider is implemented by a store whose change log other processes append to and which can
// wake this process's followers when they do (repo/sql on PostgreSQL: LISTEN/NOTIFY).
type EventNotifierProvider interface {
	// EventNotifier returns the notifier, or nil when the store has none (repo/sql on SQLite: followers
	// poll the log).
	EventNotifier() event.Notifier
}

// Opener opens a store from a DSN.
type Opener func(ctx context.Context, dsn string) (Store, error)

var (
	mu      sync.RWMutex
	openers = map[string]Opener{}
)

// Register makes a store implementation available for DSNs starting with scheme + ":". It panics on a
// duplicate scheme.
func Register(scheme string, o Opener) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := openers[scheme]; dup {
		panic("repo: scheme registered twice: " + scheme)
	}
	openers[scheme] = o
}

// Open opens the store a DSN names: "memory:", "sqlite:///path/file.db", "postgres://...". The package of
// the store must be imported (repo/memory, repo/sql); otherwise Open fails with errkind.Unsupported naming
// it.
func Open(ctx context.Context, dsn string) (Store, error) {
	scheme, _, ok := strings.Cut(dsn, ":")
	if !ok {
		return nil, errkind.New(errkind.Invalid, "repo", "", "DSN %q has no scheme (memory:, sqlite://, postgres://)", redact(dsn))
	}
	mu.RLock()
	o, found := openers[scheme]
	mu.RUnlock()
	if !found {
		if pkg, known := storePackages[scheme]; known {
			return nil, errkind.New(errkind.Unsupported, "repo", "", "no store registered for scheme %q (import %s)", scheme, pkg)
		}
		return nil, errkind.New(errkind.Unsupported, "repo", "", "no store registered for scheme %q (registered: %v)", scheme, Schemes())
	}
	st, err := o(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", redact(dsn), err)
	}
	return st, nil
}

// storePackages names the package that registers each scheme of the stores of this module, for the error
// of a program that did not import it.
var storePackages = map[string]string{
	"memory":     "github.com/openvair/openvair/repo/memory",
	"sqlite":     "github.com/openvair/openvair/repo/sql",
	"postgres":   "github.com/openvair/openvair/repo/sql",
	"postgresql": "github.com/openvair/openvair/repo/sql",
}

// Schemes lists the registered DSN schemes, sorted.
func Schemes() []string {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]string, 0, len(openers))
	for k := range openers {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// redact hides a password in a DSN for messages.
func redact(dsn string) string {
	at := strings.LastIndex(dsn, "@")
	scheme := strings.Index(dsn, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return dsn
	}
	userinfo := dsn[scheme+3 : at]
	if user, _, ok := strings.Cut(userinfo, ":"); ok {
		return dsn[:scheme+3] + user + ":***" + dsn[at:]
	}
	return dsn
}
