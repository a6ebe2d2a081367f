package driver

import (
	"fmt"
	"sort"
	"sync"
)

// Config is what a driver factory receives.
type Config struct {
	// DataDir is a directory the driver may use for its own state (mount points, sockets).
	DataDir string
	// Options are driver-specific settings, for example "uri" for libvirt.
	Options map[string]string
}

// StorageFactory opens a storage backend.
type StorageFactory func(cfg Config) (StorageBackend, error)

// HypervisorFactory opens a hypervisor.
type HypervisorFactory func(cfg Config) (Hypervisor, error)

var (
	mu          sync.RWMutex
	storages    = map[string]StorageFactory{}
	hypervisors = map[string]HypervisorFactory{}
)

// RegisterStorage makes a storage backend available by name. It panics on a duplicate name, like
// database/sql.Register.
func RegisterStorage(name string, f StorageFactory) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := storages[name]; dup {
		panic("driver: storage backend registered twice: " + name)
	}
	storages[name] = f
}

// RegisterHypervisor makes a hypervisor available by name. It panics on a duplicate name.
func RegisterHypervisor(name string, f HypervisorFactory) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := hypervisors[name]; dup {
		panic("driver: hypervisor registered twice: " + name)
	}
	hypervisors[name] = f
}

// OpenStorage opens the storage backend registered under name.
func OpenStorage(name string, cfg Config) (StorageBackend, error) {
	mu.RLock()
	f, ok := storages[name]
	mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("storage backend %q: %w (registered: %v)", name, ErrNotFound, StorageBackends())
	}
	return f(cfg)
}

// OpenHypervisor opens the hypervisor registered under name.
func OpenHypervisor(name string, cfg Config) (Hypervisor, error) {
	mu.RLock()
	f, ok := hypervisors[name]
	mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("hypervisor %q: %w (registered: %v)", name, ErrNotFound, Hypervisors())
	}
	return f(cfg)
}

// StorageBackends lists the registered storage backend names, sorted.
func StorageBackends() []string {
	mu.RLock()
	defer mu.RUnlock()
	return sortedKeys(storages)
}

// Hypervisors lists the registered hypervisor names, sorted.
func Hypervisors() []string {
	mu.RLock()
	defer mu.RUnlock()
	return sortedKeys(hypervisors)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
