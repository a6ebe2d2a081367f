// Package storage manages storages: places where volumes and images live, such as a local directory or block
// device (the localfs backend) or an NFS export (the nfs backend). A storage is a type, the name of a
// registered backend, and a configuration that only that backend understands and checks. It holds the Storage entity, its status machine, request validation and
// the Service with the business rules; persistence and backends are reached through the interfaces
// Repository, Transactor and Backends.
package storage

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/fsm"
)

// Type is a storage type: the name a storage backend registered under (driver.RegisterStorage), such as
// "localfs" or "nfs". The storage package names none: each backend owns its type's configuration.
type Type string

// Status is a storage's status.
type Status string

// Storage statuses.
const (
	StatusCreating  Status = "creating"
	StatusAvailable Status = "available"
	StatusDeleting  Status = "deleting"
	StatusError     Status = "error"
)

// transitions is the storage status machine; every status change goes through it. A storage that failed
// to be created is removed, a deleted one disappears; error is left by monitoring (available again when
// the backend recovers) or by a failed delete.
var transitions = fsm.Table[Status]{
	StatusCreating:  {StatusAvailable, StatusError},
	StatusAvailable: {StatusAvailable, StatusError, StatusDeleting},
	StatusError:     {StatusAvailable, StatusError, StatusDeleting},
	StatusDeleting:  {StatusError},
}

// CanTransition reports whether a storage may go from s to to.
func (s Status) CanTransition(to Status) bool { return transitions.Allows(s, to) }

// Storage is a place where volumes and images live.
type Storage struct {
	ID          uuid.UUID `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Type        Type      `json:"type"`
	// Config is the configuration the storage's backend accepted, normalized (driver.CheckedConfig): its
	// schema is the backend's (driver.StorageConfigurer.ConfigSchema).
	Config json.RawMessage `json:"config"`
	// State is what the backend keeps with the storage and reported (a filesystem UUID, whether it created
	// the directory); openvair stores it and hands it back, and never reads it.
	State json.RawMessage `json:"state,omitempty"`
	// Location is the key no two storages share, given by the backend: "dir:/srv/a", "nfs:host:/export".
	Location     string    `json:"location"`
	Status       Status    `json:"status"`
	StatusReason string    `json:"status_reason,omitempty"` // why the storage is in error
	Capacity     int64     `json:"capacity"`                // bytes
	Available    int64     `json:"available"`               // bytes free for new volumes and images
	MountPoint   string    `json:"mount_point,omitempty"`   // where the backend mounted it on this host, if it does
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
	// Version increases with every update; repositories refuse an update based on a stale version.
	Version int64 `json:"version"`
}

// SetStatus moves the storage to status to, checking the transition table; reason explains an error status
// and is cleared otherwise.
func (s *Storage) SetStatus(to Status, reason string) error {
	return transitions.Move("storage", s.ID.String(), &s.Status, &s.StatusReason, to, StatusError, reason)
}

// Pool is the storage as its backend sees it.
func (s *Storage) Pool() driver.PoolSpec {
	return driver.PoolSpec{ID: s.ID, Type: string(s.Type), Config: slices.Clone(s.Config), State: slices.Clone(s.State)}
}

// DecodeConfig decodes the storage's configuration into v, a backend's configuration type (such as
// localfs.Config).
func (s *Storage) DecodeConfig(v any) error { return json.Unmarshal(s.Config, v) }

// Clone returns a deep copy.
func (s *Storage) Clone() *Storage {
	c := *s
	c.Config, c.State = slices.Clone(s.Config), slices.Clone(s.State)
	return &c
}

// EntityID returns the storage's id (operation results and events name entities by it).
func (x *Storage) EntityID() uuid.UUID { return x.ID }

// EntityVersion returns the storage's version.
func (x *Storage) EntityVersion() int64 { return x.Version }
