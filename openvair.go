// Package openvair is an embeddable virtualization management SDK: storages (local directories and
// devices, NFS exports), volumes (qcow2/raw disks), images (ISO and disk images) and VMs on libvirt.
//
// Open wires a persistence store and drivers, chosen by name, into four services — System.Storages,
// System.Volumes, System.Images and System.VMs — which hold every business rule. Every operation is
// synchronous: when a call returns, its effect is stored and visible to the next read. Errors carry a kind
// that callers test with errors.Is (ErrNotFound, ErrInUse, ...) and details they read with errors.As
// (*Error, *ValidationError).
package openvair

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	_ "github.com/openvair/openvair/driver/libvirt" // the "libvirt" hypervisor
	_ "github.com/openvair/openvair/driver/localfs" // the "localfs" storage backend
	_ "github.com/openvair/openvair/driver/nfs"     // the "nfs" storage backend
	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/secret"
	"github.com/openvair/openvair/repo"
	_ "github.com/openvair/openvair/repo/memory" // the "memory:" store
	_ "github.com/openvair/openvair/repo/sql"    // the "sqlite:" and "postgres:" stores
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
)

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
	// localfs -> "localfs", nfs -> "nfs", for those registered.
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
	// MaxImageSize limits uploads, in bytes (default image.DefaultMaxSize).
	MaxImageSize int64
	// MonitorInterval is how often Run refreshes storages, volumes and images (default 10 s).
	MonitorInterval time.Duration
	// PowerResync is how often Run resynchronises every VM's power state besides events (default 30 s).
	PowerResync time.Duration
	// DefaultCPUMode is the CPU mode of VMs created without one: host-model (default), host-passthrough,
	// or custom with DefaultCPUModel (for example "qemu64" on hosts where QEMU cannot run host-model,
	// such as some nested virtualization). The domain type (kvm or TCG) is a hypervisor option.
	DefaultCPUMode, DefaultCPUModel string
	// Logger receives the SDK's logs (default slog.Default()).
	Logger *slog.Logger
}

// System is an opened openvair: the four services over one store and one set of drivers.
type System struct {
	Storages *storage.Service
	Volumes  *volume.Service
	Images   *image.Service
	VMs      *vm.Service
	// Store is the persistence backend.
	Store repo.Store

	cfg       Config
	ownsStore bool
	backends  backends
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
	sys := &System{cfg: cfg, Store: cfg.Store, backends: backends{}}
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
	var hv vm.Hypervisor
	if cfg.HypervisorInstance != nil {
		hv = cfg.HypervisorInstance
	} else if cfg.Hypervisor != "" {
		h, err := driver.OpenHypervisor(cfg.Hypervisor, driver.Config{DataDir: cfg.DataDir, Options: cfg.HypervisorOptions})
		if err != nil {
			sys.Close()
			return nil, fmt.Errorf("open hypervisor: %w", err)
		}
		hv = h
	}
	st := sys.Store
	sys.Storages = storage.NewService(st.Storages(), st, sys.backends)
	sys.Volumes = volume.NewService(st.Volumes(), st.Storages(), st, sys.backends)
	sys.Images = image.NewService(st.Images(), st.Storages(), st, sys.backends)
	if cfg.MaxImageSize > 0 {
		sys.Images.MaxSize = cfg.MaxImageSize
	}
	secrets, err := openSecrets(cfg)
	if err != nil {
		sys.Close()
		return nil, err
	}
	sys.VMs = vm.NewService(vm.Deps{Repo: st.VMs(), Tx: st, Volumes: st.Volumes(), Storages: st.Storages(), Images: st.Images(),
		VolumeSvc: sys.Volumes, Locator: sys.backends, Hypervisor: hv, Secrets: secrets})
	sys.Storages.Log, sys.Volumes.Log, sys.Images.Log, sys.VMs.Log = cfg.Logger, cfg.Logger, cfg.Logger, cfg.Logger
	if cfg.DefaultCPUMode != "" || cfg.DefaultCPUModel != "" {
		if err := sys.VMs.SetDefaultCPU(cfg.DefaultCPUMode, cfg.DefaultCPUModel); err != nil {
			sys.Close()
			return nil, err
		}
	}
	if hv != nil {
		sys.Volumes.VMs = sys.VMs // extends check the hypervisor, not only the stored power state
	}
	if err := sys.Recover(ctx); err != nil {
		sys.Close()
		return nil, err
	}
	return sys, nil
}

func (s *System) openDrivers() error {
	for t, b := range s.cfg.StorageBackends {
		s.backends[t] = b
	}
	names := s.cfg.StorageDrivers
	if names == nil {
		names = map[storage.Type]string{}
		registered := map[string]bool{}
		for _, n := range driver.StorageBackends() {
			registered[n] = true
		}
		for _, t := range []storage.Type{storage.TypeLocalFS, storage.TypeNFS} {
			if registered[string(t)] {
				names[t] = string(t)
			}
		}
	}
	for t, name := range names {
		if _, given := s.backends[t]; given {
			continue
		}
		b, err := driver.OpenStorage(name, driver.Config{DataDir: s.cfg.DataDir, Options: s.cfg.StorageOptions})
		if err != nil {
			return fmt.Errorf("open storage backend for %s: %w", t, err)
		}
		s.backends[t] = b
	}
	return nil
}

// Recover finishes operations an earlier process left half done: half-created objects are removed,
// interrupted operations leave their entity in error with a reason. Open calls it.
func (s *System) Recover(ctx context.Context) error {
	return errors.Join(s.Storages.Recover(ctx), s.Volumes.Recover(ctx), s.Images.Recover(ctx), s.VMs.Recover(ctx))
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

// Run monitors until ctx ends: it follows the hypervisor's power state events (resynchronising every
// PowerResync) and refreshes storages, volumes and images every MonitorInterval. It returns ctx.Err().
func (s *System) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if s.VMs.Hypervisor != nil {
			s.VMs.Watch(ctx, s.cfg.PowerResync)
		}
	}()
	tick := time.NewTicker(s.cfg.MonitorInterval)
	defer tick.Stop()
	for {
		s.MonitorOnce(ctx)
		select {
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// MonitorOnce refreshes every storage, then every volume and image.
func (s *System) MonitorOnce(ctx context.Context) {
	err := errors.Join(s.Storages.RefreshAll(ctx), s.Volumes.RefreshAll(ctx), s.Images.RefreshAll(ctx))
	if err != nil && ctx.Err() == nil {
		s.cfg.Logger.Warn("monitor", "err", err)
	}
}

// Close releases the drivers and the store (when Open opened it).
func (s *System) Close() error {
	var errs []error
	s.closeOnce.Do(func() {
		for _, b := range s.backends {
			if c, ok := b.(interface{ Close() error }); ok {
				errs = append(errs, c.Close())
			}
		}
		if s.VMs != nil {
			if c, ok := s.VMs.Hypervisor.(interface{ Close() error }); ok && s.cfg.HypervisorInstance == nil {
				errs = append(errs, c.Close())
			}
		}
		if s.ownsStore && s.Store != nil {
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
	return nil, errkind.New(errkind.Unavailable, "storage", "", "no backend configured for storage type %q", t)
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
