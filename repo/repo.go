// Package repo defines what a persistence backend of openvair provides — a Store with one repository per
// aggregate and a unit of work — and a registry that opens stores by DSN scheme. Implementations:
// repo/memory (in-process, for tests and experiments) and repo/sql (PostgreSQL and SQLite through bun);
// every implementation passes the conformance suite in repo/repotest.
package repo

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

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
	InTx(ctx context.Context, fn func(ctx context.Context) error) error
	Storages() storage.Repository
	Volumes() volume.Repository
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

// Open opens the store a DSN names: "memory:", "sqlite:///path/file.db", "postgres://...".
func Open(ctx context.Context, dsn string) (Store, error) {
	scheme, _, ok := strings.Cut(dsn, ":")
	if !ok {
		return nil, errkind.New(errkind.Invalid, "repo", "", "DSN %q has no scheme (memory:, sqlite://, postgres://)", redact(dsn))
	}
	mu.RLock()
	o, found := openers[scheme]
	mu.RUnlock()
	if !found {
		return nil, errkind.New(errkind.Unsupported, "repo", "", "no store registered for scheme %q (registered: %v)", scheme, Schemes())
	}
	st, err := o(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", redact(dsn), err)
	}
	return st, nil
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
