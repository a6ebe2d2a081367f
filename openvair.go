// Package openvair is an embeddable virtualization management SDK: storages (local directories and
// devices, NFS exports), volumes (qcow2/raw disks), images (ISO and disk images) and VMs on libvirt.
//
// Open wires a persistence store and drivers, chosen by name, into four services — System.Storages,
// System.Volumes, System.Images and System.VMs — which hold every business rule. Every mutating call is an
// operation recorded with the data (System.Operations: list, wait, cancel) and every change an event in
// commit order (System.Events: subscribe and resume). Calls are synchronous — when one returns, its effect
// is stored and visible to the next read — and the long ones also have an asynchronous form (CreateAsync,
// StopAsync, ...) that returns the pending operation at once, run by a River worker of any process sharing
// a SQL store (by a goroutine of this process on memory:). Errors carry a kind that callers test with
// errors.Is (ErrNotFound, ErrInUse, ...) and details they read with errors.As (*Error, *ValidationError).
//
// # Drivers and stores
//
// Drivers and stores register themselves by name when their package is imported, as database/sql drivers
// do, so a program links only what it uses. This package imports repo/memory, which registers the
// "memory:" store (the default DSN; it adds no third-party dependency). The program imports the others it
// needs, for their side effect:
//
//	import (
//		_ "github.com/openvair/openvair/driver/localfs" // the "localfs" storage backend (directories, devices)
//		_ "github.com/openvair/openvair/driver/nfs"     // the "nfs" storage backend (NFSv3, no kernel mount)
//		_ "github.com/openvair/openvair/driver/btrfs"   // the "btrfs" storage backend (reflink clones)
//		_ "github.com/openvair/openvair/driver/libvirt" // the "libvirt" hypervisor (Config.Hypervisor)
//		_ "github.com/openvair/openvair/repo/sql"       // the "sqlite:", "postgres:" and "postgresql:" stores
//	)
//
// A storage type whose backend is not registered fails with ErrUnavailable when used, a DSN scheme or a
// hypervisor that is not registered makes Open fail; each error names the package to import. The SQL stores
// also bring what needs their database: the River job queue that runs asynchronous operations on any
// process sharing the store (repo.JobQueueOpener; on memory: they run in goroutines of this process) and,
// on PostgreSQL, LISTEN/NOTIFY wake-ups for events appended by other processes
// (repo.EventNotifierProvider).
package openvair

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/event"
	"github.com/openvair/openvair/internal/operation"
	"github.com/openvair/openvair/internal/reqctx"
	"github.com/openvair/openvair/internal/secret"
	"github.com/openvair/openvair/internal/telemetry"
	"github.com/openvair/openvair/internal/urlfetch"
	"github.com/openvair/openvair/repo"
	_ "github.com/openvair/openvair/repo/memory" // registers the "memory:" store, the default DSN
	"github.com/openvair/openvair/repo/outbox"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
)

// Error kinds; every error of the SDK wraps one of them.
var (
	ErrNotFound      = errkind.NotFound
	ErrAlreadyExists = errkind.AlreadyExists
	ErrInvalid       = errkind.Invalid
	ErrWrongState    = errkind.WrongState
	ErrInUse         = errkind.InUse
	ErrConflict      = errkind.Conflict
	ErrTooLarge      = errkind.TooLarge
	ErrUnavailable   = errkind.Unavailable
	ErrUnsupported   = errkind.Unsupported
	ErrTimeout       = errkind.Timeout
	ErrUnrunnable    = errkind.Unrunnable
	ErrBackendFailed = errkind.BackendFailed
	// ErrPreconditionFailed: an expected version (ExpectVersion, HTTP If-Match) did not match.
	ErrPreconditionFailed = errkind.PreconditionFailed
	// ErrGone: events asked for are older than the retention.
	ErrGone = errkind.Gone
)

type (
	// Error is the typed error of the SDK: its kind, the entity it is about, a message and related entities.
	Error = errkind.Error
	// ValidationError lists every bad field of a request.
	ValidationError = errkind.ValidationError
	// FieldError is one bad field.
	FieldError = errkind.FieldError
	// Ref names an entity an error points at.
	Ref = errkind.Ref
	// Operation is the record of one mutating call: kind, target, status, progress, outcome, owner.
	Operation = operation.Operation
	// OperationStatus is where an operation is in its life.
	OperationStatus = operation.Status
	// OperationListOptions filter and page a list of operations.
	OperationListOptions = operation.ListOptions
	// Event is one change of a storage, volume, image, VM or operation, in commit order.
	Event = event.Event
	// EventFilter selects events.
	EventFilter = event.Filter
)

// ExpectVersion returns ctx under which the next mutating call fails with ErrPreconditionFailed, changing
// nothing, unless entity id is at version when the call first writes it (HTTP If-Match).
func ExpectVersion(ctx context.Context, id uuid.UUID, version int64) context.Context {
	return reqctx.WithExpectedVersion(ctx, id, version)
}

// WithRequest returns ctx whose calls record requestID and requester in their operations and events.
func WithRequest(ctx context.Context, requestID, requester string) context.Context {
	return reqctx.WithMeta(ctx, reqctx.Meta{RequestID: requestID, Requester: requester})
}

// Config chooses the store and drivers of a System.
type Config struct {
	// DSN of the store: "memory:" (the default), "sqlite:///path/to/file.db" or "postgres://...".
	DSN string
	// Store, when set, is used instead of opening DSN; Close does not close it.
	Store repo.Store
	// DataDir is where drivers keep their state (mount points) and where the key that encrypts graphics
	// passwords at rest is kept (secret.key, 0600).
	DataDir string
	// StorageDrivers maps storage types to registered backend names (driver.RegisterStorage). Default:
	// every registered backend, for the storage type of its name ("localfs" -> "localfs").
	StorageDrivers map[storage.Type]string
	// StorageBackends gives backend instances directly; it overrides StorageDrivers.
	StorageBackends map[storage.Type]driver.StorageBackend
	// StorageOptions are passed to every storage backend factory.
	StorageOptions map[string]string
	// Hypervisor is the registered hypervisor name ("libvirt"); empty for none (VM calls then fail with
	// ErrUnavailable).
	Hypervisor string
	// HypervisorInstance gives a hypervisor directly; it overrides Hypervisor.
	HypervisorInstance driver.Hypervisor
	// HypervisorOptions are passed to the hypervisor factory ("uri", "socket").
	HypervisorOptions map[string]string
	// MaxImageSize limits uploads and imports, in bytes (default image.DefaultMaxSize).
	MaxImageSize int64
	// ImportAllowCIDRs and ImportAllowHosts open image imports from URLs (Images.Import) to addresses the
	// SSRF guard refuses by default (loopback, private, link-local, ...): a private mirror's range, or its
	// host name whatever it resolves to.
	ImportAllowCIDRs []netip.Prefix
	ImportAllowHosts []string
	// MonitorInterval is how often Run refreshes storages, volumes and images (default 10 s).
	MonitorInterval time.Duration
	// PowerResync is how often Run resynchronises every VM's power state besides events (default 30 s).
	PowerResync time.Duration
	// DefaultCPUMode is the CPU mode of VMs created without one: host-model (default), host-passthrough,
	// or custom with DefaultCPUModel (for example "qemu64" on hosts where QEMU cannot run host-model,
	// such as some nested virtualization). The domain type (kvm or TCG) is a hypervisor option.
	DefaultCPUMode, DefaultCPUModel string
	// Lease is how long this process's claim on its running operations, and on the monitors when it runs
	// them, lasts without renewal (default 30 s). Another process sharing the store recovers an operation,
	// or takes the monitors over, only once the lease has run out.
	Lease time.Duration
	// EventRetention is how long events are kept (default 7 days); a subscriber resuming from an older
	// event gets ErrGone and re-lists.
	EventRetention time.Duration
	// OperationRetention is how long finished operations are kept (default 7 days).
	OperationRetention time.Duration
	// Workers is how many asynchronous operations this process runs at once (default 10).
	Workers int
	// Logger receives the SDK's logs (default slog.Default()).
	Logger *slog.Logger
	// Metrics, when set, receives the SDK's Prometheus metrics: every driver and hypervisor call
	// (openvair_driver_calls_total and openvair_driver_call_duration_seconds, by driver, method and
	// outcome), operations (openvair_operations_total, openvair_operation_duration_seconds,
	// openvair_operations_running, by kind and status), monitor cycles (openvair_monitor_cycles_total,
	// openvair_monitor_cycle_duration_seconds), and, read from the store at scrape time, every storage's
	// capacity and free space (openvair_storage_capacity_bytes, openvair_storage_available_bytes) and VMs by
	// power state (openvair_vms). Several Systems may share a registry.
	Metrics prometheus.Registerer
	// TracerProvider, when set, traces every operation, monitor cycle and driver or hypervisor call, as
	// children of the span in the caller's context, with the request id (WithRequest) as an attribute.
	TracerProvider trace.TracerProvider
}

// System is an opened openvair: the four services over one store and one set of drivers.
type System struct {
	Storages *storage.Service
	Volumes  *volume.Service
	Images   *image.Service
	VMs      *vm.Service
	// Operations records every mutating call and lets callers follow, wait for and cancel them.
	Operations *operation.Service
	// Events is the change log: every state change, in commit order, with resume.
	Events *event.Service
	// Store is the persistence backend.
	Store repo.Store

	cfg       Config
	hv        driver.Hypervisor // the hypervisor, nil when none is configured
	ownsStore bool
	rawStore  repo.Store
	backends  backends
	queue     repo.JobQueue
	instance  *instance
	tel       *telemetry.Instruments // nil when neither metrics nor tracing is configured
	inventory func()                 // unregisters the inventory collector
	stopBg    context.CancelFunc
	bg        sync.WaitGroup
	closeOnce sync.Once
}

// Open opens the store, the drivers and the services, then finishes what an earlier process left half
// done (see the services' Recover methods).
func Open(ctx context.Context, cfg Config) (*System, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MonitorInterval <= 0 {
		cfg.MonitorInterval = 10 * time.Second
	}
	if cfg.PowerResync <= 0 {
		cfg.PowerResync = 30 * time.Second
	}
	if cfg.Lease <= 0 {
		cfg.Lease = operation.DefaultLease
	}
	if cfg.EventRetention <= 0 {
		cfg.EventRetention = 7 * 24 * time.Hour
	}
	if cfg.OperationRetention <= 0 {
		cfg.OperationRetention = 7 * 24 * time.Hour
	}
	sys := &System{cfg: cfg, Store: cfg.Store, backends: backends{}, inventory: func() {}}
	tel, err := telemetry.New(cfg.Metrics, cfg.TracerProvider)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	sys.tel = tel
	if sys.Store == nil {
		dsn := cfg.DSN
		if dsn == "" {
			dsn = "memory:"
		}
		st, err := repo.Open(ctx, dsn)
		if err != nil {
			return nil, err
		}
		sys.Store, sys.ownsStore = st, true
	}
	if err := sys.openDrivers(); err != nil {
		sys.Close()
		return nil, err
	}
	var hv driver.Hypervisor
	if cfg.HypervisorInstance != nil {
		hv = cfg.HypervisorInstance
	} else if cfg.Hypervisor != "" {
		h, err := driver.OpenHypervisor(cfg.Hypervisor, driver.Config{DataDir: cfg.DataDir, Options: cfg.HypervisorOptions})
		if err != nil {
			sys.Close()
			return nil, fmt.Errorf("open hypervisor: %w%s", err, importHint(cfg.Hypervisor, driver.Hypervisors()))
		}
		hv = h
	}
	hv = sys.tel.WrapHypervisor(hv) // measured at the seam; it keeps exactly the optional interfaces of hv
	if err := sys.openRecords(ctx); err != nil {
		sys.Close()
		return nil, err
	}
	st := sys.Store
	sys.hv = hv
	sys.Storages = storage.NewService(st.Storages(), st, sys.backends, storage.WithOperations(sys.Operations))
	volOpts := []volume.Option{volume.WithOperations(sys.Operations), volume.WithImages(st.Images()),
		volume.WithSnapshots(st.Snapshots())}
	if hv != nil { // extends check the hypervisor, not only the stored power state
		volOpts = append(volOpts, volume.WithVMStates(vm.NewRunningChecker(hv, 2*time.Minute)))
	}
	sys.Volumes = volume.NewService(st.Volumes(), st.Storages(), st, sys.backends, volOpts...)
	sys.Images = image.NewService(st.Images(), st.Storages(), st, sys.backends, image.WithOperations(sys.Operations),
		image.WithFetcher(urlfetch.New(urlfetch.Config{AllowCIDRs: cfg.ImportAllowCIDRs, AllowHosts: cfg.ImportAllowHosts,
			MaxSize: cfg.MaxImageSize, Entity: "image"})))
	if cfg.MaxImageSize > 0 {
		sys.Images.MaxSize = cfg.MaxImageSize
	}
	secrets, err := openSecrets(cfg)
	if err != nil {
		sys.Close()
		return nil, err
	}
	sys.VMs = vm.NewService(vm.Deps{Repo: st.VMs(), Tx: st, Volumes: st.Volumes(), Storages: st.Storages(), Images: st.Images(),
		VolumeSvc: sys.Volumes, Locator: sys.backends, Hypervisor: hv, Secrets: secrets,
		Seeds: seeds{storages: st.Storages(), backends: sys.backends}}, vm.WithOperations(sys.Operations))
	sys.Storages.Log, sys.Volumes.Log, sys.Images.Log, sys.VMs.Log = cfg.Logger, cfg.Logger, cfg.Logger, cfg.Logger
	if cfg.DefaultCPUMode != "" || cfg.DefaultCPUModel != "" {
		if err := sys.VMs.SetDefaultCPU(cfg.DefaultCPUMode, cfg.DefaultCPUModel); err != nil {
			sys.Close()
			return nil, err
		}
	}
	if err := sys.Recover(ctx); err != nil {
		sys.Close()
		return nil, err
	}
	if err := sys.startBackground(); err != nil {
		sys.Close()
		return nil, err
	}
	if cfg.Metrics != nil {
		unregister, err := telemetry.RegisterInventory(cfg.Metrics, sys.inventoryCollector())
		if err != nil && !errors.Is(err, telemetry.ErrDuplicate) {
			sys.Close()
			return nil, fmt.Errorf("metrics: %w", err)
		}
		sys.inventory = unregister
	}
	return sys, nil
}

// inventoryCollector reports, at scrape time, every storage's capacity and free space and the VMs by power
// state, as the store has them (the monitors refresh them): a scrape never calls a driver.
func (s *System) inventoryCollector() *telemetry.Inventory {
	return &telemetry.Inventory{
		Storages: func(ctx context.Context) ([]telemetry.StorageSample, error) {
			var out []telemetry.StorageSample
			opts := storage.ListOptions{Limit: 1000}
			for {
				page, err := s.Storages.List(ctx, opts)
				if err != nil {
					return out, err
				}
				for _, st := range page.Items {
					out = append(out, telemetry.StorageSample{ID: st.ID.String(), Name: st.Name, Type: string(st.Type),
						Status: string(st.Status), Capacity: st.Capacity, Available: st.Available})
				}
				if page.NextCursor == "" {
					return out, nil
				}
				opts.Cursor = page.NextCursor
			}
		},
		VMs: func(ctx context.Context) (map[string]int, error) {
			counts := map[string]int{}
			opts := vm.ListOptions{Limit: 1000}
			for {
				page, err := s.Store.VMs().List(ctx, opts)
				if err != nil {
					return nil, err
				}
				for _, v := range page.Items {
					counts[string(v.PowerState)]++
				}
				if page.NextCursor == "" {
					return counts, nil
				}
				opts.Cursor = page.NextCursor
			}
		},
	}
}

// openRecords wraps the store so that changes become events, and opens the operation and event services
// and, on a store that has one (repo.JobQueueOpener: SQL), the job queue that runs asynchronous operations.
func (s *System) openRecords(ctx context.Context) error {
	s.rawStore = s.Store
	var notifier event.Notifier
	if p, ok := s.rawStore.(repo.EventNotifierProvider); ok {
		notifier = p.EventNotifier() // PostgreSQL's LISTEN/NOTIFY; nil on SQLite
	}
	// Without a notifier, events that another process appends (SQLite shared by several processes) are
	// found by reading the log every 250 ms; this process's own are delivered at once.
	s.Events = event.NewService(s.rawStore.Events(), event.Config{Retention: s.cfg.EventRetention, Notifier: notifier,
		Poll: 250 * time.Millisecond, Logger: s.cfg.Logger})
	s.Store = outbox.Wrap(s.rawStore, s.Events.Notify)
	inst, err := openInstance(s.cfg.DataDir)
	if err != nil {
		return err
	}
	s.instance = inst
	s.Operations = operation.NewService(s.Store.Operations(), s.Store, operation.Config{Owner: inst.id, Lease: s.cfg.Lease, Logger: s.cfg.Logger,
		Observer: s.tel.OperationObserver()})
	if err := s.Operations.FailOrphans(ctx); err != nil {
		return fmt.Errorf("recover operations: %w", err)
	}
	if o, ok := s.rawStore.(repo.JobQueueOpener); ok {
		q, err := o.OpenJobQueue(ctx, s.Operations, repo.JobQueueConfig{Workers: s.cfg.Workers, Lease: s.cfg.Lease,
			Logger: s.cfg.Logger})
		if err != nil {
			return err
		}
		s.queue = q
		s.Operations.SetExecutor(q)
	} // otherwise (memory:) asynchronous operations run in goroutines of this process
	return nil
}

// startBackground starts what runs as long as the System is open: lease renewals of this process's
// operations, the event follower, and the job queue's workers.
func (s *System) startBackground() error {
	ctx, cancel := context.WithCancel(context.Background())
	s.stopBg = cancel
	if s.queue != nil {
		if err := s.queue.Start(ctx); err != nil {
			return fmt.Errorf("start the job queue: %w", err)
		}
	}
	s.bg.Add(2)
	go func() { defer s.bg.Done(); s.Operations.Keep(ctx) }()
	go func() { defer s.bg.Done(); s.Events.Run(ctx) }()
	return nil
}

func (s *System) openDrivers() error {
	for t, b := range s.cfg.StorageBackends {
		s.backends[t] = b
	}
	names := s.cfg.StorageDrivers
	if names == nil {
		names = map[storage.Type]string{}
		for _, n := range driver.StorageBackends() {
			names[storage.Type(n)] = n // every registered backend, for the storage type of its name
		}
	}
	for t, name := range names {
		if _, given := s.backends[t]; given {
			continue
		}
		b, err := driver.OpenStorage(name, driver.Config{DataDir: s.cfg.DataDir, Options: s.cfg.StorageOptions})
		if err != nil {
			return fmt.Errorf("open storage backend for %s: %w%s", t, err, importHint(name, driver.StorageBackends()))
		}
		s.backends[t] = b
	}
	for t, b := range s.backends { // measured at the seam; each keeps exactly the optional interfaces of b
		s.backends[t] = s.tel.WrapStorage(b)
	}
	return nil
}

// Recover finishes operations a process that stopped (this one before a restart, or another sharing the
// store) left half done: operations whose owner's lease ran out are failed, then half-created objects are
// removed and interrupted operations leave their entity in error with a reason. Entities a live operation
// works on are left alone, whichever process runs it. Open calls it, and so does Run on the process that
// holds the monitors, at every monitor cycle.
func (s *System) Recover(ctx context.Context) error { return s.recover(ctx, s.Images.Recover) }

// recoverInterrupted is what Recover does at every monitor cycle: fail the operations of stopped processes
// and clean up their entities, without sweeping upload files from the storages (which Open does).
func (s *System) recoverInterrupted(ctx context.Context) error {
	return s.recover(ctx, s.Images.RecoverInterrupted)
}

func (s *System) recover(ctx context.Context, images func(context.Context) error) error {
	err := s.Operations.FailExpired(ctx)
	return errors.Join(err, s.Storages.Recover(ctx), s.Volumes.Recover(ctx), images(ctx), s.VMs.Recover(ctx))
}

// openSecrets returns the box that keeps graphics passwords encrypted at rest: its key lives in
// <DataDir>/secret.key (0600, created at first use). Without a data directory the key lives as long as the
// process, so passwords of VMs in a persistent store cannot be read after a restart (set them again).
func openSecrets(cfg Config) (*secret.Box, error) {
	if cfg.DataDir == "" {
		if cfg.DSN != "" && cfg.DSN != "memory:" {
			cfg.Logger.Warn("no data directory: graphics passwords are encrypted with a key that lasts only as long as this process")
		}
		return secret.Ephemeral(), nil
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	return secret.LoadOrCreate(cfg.DataDir)
}

// monitorLease names the lease of the process that runs the monitors.
const monitorLease = "monitors"

// Run monitors until ctx ends, on one process at a time among those sharing the store: the process that
// holds the monitor lease follows the hypervisor's power state events (resynchronising every PowerResync),
// refreshes storages, volumes and images every MonitorInterval, recovers the work of processes whose lease
// ran out, and prunes old events and operations. The others stand by and take over within the lease when
// it stops renewing. Run returns ctx.Err().
func (s *System) Run(ctx context.Context) error {
	every := min(s.cfg.MonitorInterval, max(s.cfg.Lease/3, 100*time.Millisecond))
	tick := time.NewTicker(every)
	defer tick.Stop()
	var (
		leading   bool
		stopWatch = func() {}
		lastCycle time.Time
	)
	defer func() {
		stopWatch()
		if leading {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = s.Store.Leases().Release(rctx, monitorLease, s.Operations.Owner())
			cancel()
		}
	}()
	for {
		held := s.holdMonitors(ctx)
		switch {
		case held && !leading:
			s.cfg.Logger.Info("monitors: this process runs them", "owner", s.Operations.Owner())
			stopWatch = s.startWatch(ctx)
			lastCycle = time.Time{}
		case !held && leading:
			s.cfg.Logger.Info("monitors: another process runs them now", "owner", s.Operations.Owner())
			stopWatch()
			stopWatch = func() {}
		}
		leading = held
		if leading && time.Since(lastCycle) >= s.cfg.MonitorInterval {
			lastCycle = time.Now()
			s.MonitorOnce(ctx)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// holdMonitors takes or renews the monitor lease and reports whether this process holds it.
func (s *System) holdMonitors(ctx context.Context) bool {
	lctx, cancel := context.WithTimeout(ctx, max(s.cfg.Lease/3, time.Second))
	defer cancel()
	now := time.Now().UTC()
	held, err := s.Store.Leases().Acquire(lctx, monitorLease, s.Operations.Owner(), now, now.Add(s.cfg.Lease))
	if err != nil && ctx.Err() == nil {
		s.cfg.Logger.Warn("monitors: renewing the lease", "err", err)
	}
	return held && err == nil
}

// startWatch follows power state events until the returned func is called.
func (s *System) startWatch(ctx context.Context) func() {
	if !s.VMs.HasHypervisor() {
		return func() {}
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.VMs.Watch(wctx, s.cfg.PowerResync)
	}()
	return func() { cancel(); <-done }
}

// MonitorOnce refreshes every storage, then every volume and image, recovers what stopped processes left,
// and prunes events and operations past their retention and expired idempotency keys.
func (s *System) MonitorOnce(ctx context.Context) {
	ctx, observed := s.tel.StartMonitor(ctx)
	err := errors.Join(s.Storages.RefreshAll(ctx), s.Volumes.RefreshAll(ctx), s.Images.RefreshAll(ctx), s.recoverInterrupted(ctx),
		s.Events.Prune(ctx))
	if _, perr := s.Operations.Prune(ctx, time.Now().Add(-s.cfg.OperationRetention)); perr != nil {
		err = errors.Join(err, perr)
	}
	if _, perr := s.Store.Idempotency().Prune(ctx, time.Now().UTC()); perr != nil {
		err = errors.Join(err, perr)
	}
	observed(err)
	if err != nil && ctx.Err() == nil {
		s.cfg.Logger.Warn("monitor", "err", err)
	}
}

// Close stops the job queue's workers (waiting up to 10 s for running operations), the background work,
// and releases the drivers and the store (when Open opened it).
func (s *System) Close() error {
	var errs []error
	s.closeOnce.Do(func() {
		if s.inventory != nil {
			s.inventory()
		}
		if s.queue != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := s.queue.Stop(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				errs = append(errs, err)
			}
			cancel()
		}
		if s.stopBg != nil {
			s.stopBg()
			s.bg.Wait()
		}
		for _, b := range s.backends {
			errs = append(errs, b.Close())
		}
		if s.hv != nil && s.cfg.HypervisorInstance == nil {
			errs = append(errs, s.hv.Close())
		}
		errs = append(errs, s.instance.close())
		if s.ownsStore && s.rawStore != nil {
			errs = append(errs, s.rawStore.Close())
		} else if s.ownsStore && s.Store != nil {
			errs = append(errs, s.Store.Close())
		}
	})
	return errors.Join(errs...)
}

// backends finds the storage backend of each storage type for the services.
type backends map[storage.Type]driver.StorageBackend

func (b backends) get(t storage.Type) (driver.StorageBackend, error) {
	if be, ok := b[t]; ok {
		return be, nil
	}
	return nil, errkind.New(errkind.Unavailable, "storage", "", "no backend configured for storage type %q%s", t,
		importHint(string(t), driver.StorageBackends()))
}

// driverPackages names the package that registers each driver of this module.
var driverPackages = map[string]string{
	"localfs": "github.com/openvair/openvair/driver/localfs",
	"nfs":     "github.com/openvair/openvair/driver/nfs",
	"libvirt": "github.com/openvair/openvair/driver/libvirt",
}

// importHint tells which package to import when name, one of this module's drivers, is not among those
// registered; otherwise it is empty.
func importHint(name string, registered []string) string {
	pkg, known := driverPackages[name]
	if !known || slices.Contains(registered, name) {
		return ""
	}
	return fmt.Sprintf(" (import %s)", pkg)
}

// StorageBackend implements storage.Backends.
func (b backends) StorageBackend(t storage.Type) (storage.Backend, error) { return b.get(t) }

// VolumeBackend implements volume.Backends.
func (b backends) VolumeBackend(t storage.Type) (volume.Backend, error) { return b.get(t) }

// ImageBackend implements image.Backends.
func (b backends) ImageBackend(t storage.Type) (image.Backend, error) { return b.get(t) }

// DiskSource implements vm.Locator.
func (b backends) DiskSource(pool driver.PoolSpec, kind driver.ObjectKind, id uuid.UUID) (driver.DiskSource, error) {
	be, err := b.get(storage.Type(pool.Type))
	if err != nil {
		return driver.DiskSource{}, err
	}
	return be.DiskSource(pool, kind, id), nil
}

// StorageType is a storage type the system can create: the name storages give in their type, the backend's
// name and capabilities, and the JSON Schema of its configuration.
type StorageType struct {
	Type         storage.Type
	Info         driver.StorageInfo
	ConfigSchema json.RawMessage
}

// StorageTypes lists the storage types the system has a backend for, sorted by type.
func (s *System) StorageTypes() []StorageType {
	out := make([]StorageType, 0, len(s.backends))
	for t, b := range s.backends {
		out = append(out, StorageType{Type: t, Info: b.Info(), ConfigSchema: b.ConfigSchema()})
	}
	slices.SortFunc(out, func(a, b StorageType) int { return strings.Compare(string(a.Type), string(b.Type)) })
	return out
}

// seeds keeps cloud-init seed ISOs (vm.Seeds) on storages through their backends, as image files no image
// row names.
type seeds struct {
	storages storage.Repository
	backends backends
}

func (s seeds) backend(ctx context.Context, storageID uuid.UUID) (*storage.Storage, driver.StorageBackend, error) {
	st, err := s.storages.Get(ctx, storageID)
	if err != nil {
		return nil, nil, err
	}
	be, err := s.backends.get(st.Type)
	return st, be, err
}

// WriteSeed implements vm.Seeds.
func (s seeds) WriteSeed(ctx context.Context, storageID, id uuid.UUID, iso []byte) error {
	st, be, err := s.backend(ctx, storageID)
	if err != nil {
		return err
	}
	_, err = be.WriteImage(ctx, st.Pool(), driver.ImageWrite{ID: id, MaxSize: int64(len(iso))}, bytes.NewReader(iso))
	return err
}

// DeleteSeed implements vm.Seeds.
func (s seeds) DeleteSeed(ctx context.Context, storageID, id uuid.UUID) error {
	st, be, err := s.backend(ctx, storageID)
	if err != nil {
		return err
	}
	return be.DeleteImage(ctx, st.Pool(), id)
}
