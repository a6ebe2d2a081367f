// Package storage manages storages: places where volumes and images live, a local directory or block device
// (localfs) or an NFS export (nfs). It holds the Storage entity, its status machine, request validation and
// the Service with the business rules; persistence and backends are reached through the interfaces
// Repository, Transactor and Backends.
package storage

import (
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/fsm"
)

// Type is a storage type.
type Type string

// Storage types.
const (
	TypeLocalFS Type = driver.TypeLocalFS
	TypeNFS     Type = driver.TypeNFS
)

// LocalFSSpec locates a localfs storage (see driver.LocalFSSpec).
type LocalFSSpec = driver.LocalFSSpec

// NFSSpec locates an NFS storage (see driver.NFSSpec).
type NFSSpec = driver.NFSSpec

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
	ID           uuid.UUID    `json:"id"`
	Name         string       `json:"name"`
	Description  string       `json:"description"`
	Type         Type         `json:"type"`
	LocalFS      *LocalFSSpec `json:"localfs,omitempty"`
	NFS          *NFSSpec     `json:"nfs,omitempty"`
	Status       Status       `json:"status"`
	StatusReason string       `json:"status_reason,omitempty"` // why the storage is in error
	Capacity     int64        `json:"capacity"`                // bytes
	Available    int64        `json:"available"`               // bytes free for new volumes and images
	MountPoint   string       `json:"mount_point,omitempty"`   // device mode only
	// CreatedDir (directory mode) says that openvair created the directory, and so removes it, when empty,
	// with the storage. A directory that existed before is never removed.
	CreatedDir bool      `json:"created_dir,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	// Version increases with every update; repositories refuse an update based on a stale version.
	Version int64 `json:"version"`
}

// SetStatus moves the storage to status to, checking the transition table; reason explains an error status
// and is cleared otherwise.
func (s *Storage) SetStatus(to Status, reason string) error {
	return transitions.Move("storage", s.ID.String(), &s.Status, &s.StatusReason, to, StatusError, reason)
}

// Location is the key that no two storages may share: the directory, the device, or the server and export.
// A directory or device is named by its RealPath (symbolic links resolved, recorded at creation) when known,
// so that two names of one directory are one location; storages recorded before RealPath existed keep the
// path they were given.
func (s *Storage) Location() string {
	switch {
	case s.LocalFS != nil && s.LocalFS.Device != "":
		return "dev:" + firstOf(s.LocalFS.RealPath, s.LocalFS.Device)
	case s.LocalFS != nil:
		return "dir:" + firstOf(s.LocalFS.RealPath, s.LocalFS.Path)
	case s.NFS != nil:
		return "nfs:" + s.NFS.Server + ":" + s.NFS.Export
	}
	return ""
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Pool is the storage as its backend sees it; LocalFS.CreatedDir carries CreatedDir.
func (s *Storage) Pool() driver.PoolSpec {
	p := driver.PoolSpec{ID: s.ID, Type: string(s.Type)}
	if s.LocalFS != nil {
		l := *s.LocalFS
		l.CreatedDir = s.CreatedDir
		p.LocalFS = &l
	}
	if s.NFS != nil {
		n := *s.NFS
		p.NFS = &n
	}
	return p
}

// Clone returns a deep copy.
func (s *Storage) Clone() *Storage {
	c := *s
	if s.LocalFS != nil {
		l := *s.LocalFS
		c.LocalFS = &l
	}
	if s.NFS != nil {
		n := *s.NFS
		c.NFS = &n
	}
	return &c
}

// EntityID returns the storage's id (operation results and events name entities by it).
func (x *Storage) EntityID() uuid.UUID { return x.ID }

// EntityVersion returns the storage's version.
func (x *Storage) EntityVersion() int64 { return x.Version }
