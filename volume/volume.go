// Package volume manages volumes: qcow2 or raw virtual disks on a storage. It holds the Volume entity, its
// status machine, request validation and the Service with the rules for create, edit, extend, delete and
// monitoring; persistence and storage backends are reached through Repository, Transactor and Backends.
package volume

import (
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/fsm"
)

// Format is a volume's on-disk format.
type Format = driver.VolumeFormat

// Volume formats.
const (
	FormatQCOW2 = driver.FormatQCOW2
	FormatRaw   = driver.FormatRaw
)

// Status is a volume's status.
type Status string

// Volume statuses.
const (
	StatusCreating  Status = "creating"
	StatusAvailable Status = "available"
	StatusExtending Status = "extending"
	StatusReverting Status = "reverting" // its content is being replaced by a snapshot's
	StatusDeleting  Status = "deleting"
	StatusError     Status = "error"
)

// transitions is the volume status machine; every status change goes through it. A volume whose creation
// failed is removed rather than kept in error.
var transitions = fsm.Table[Status]{
	StatusCreating:  {StatusAvailable, StatusError},
	StatusAvailable: {StatusAvailable, StatusExtending, StatusReverting, StatusDeleting, StatusError},
	StatusExtending: {StatusAvailable, StatusError},
	StatusReverting: {StatusAvailable, StatusError},
	StatusDeleting:  {StatusError},
	StatusError:     {StatusAvailable, StatusError, StatusReverting, StatusDeleting},
}

// CanTransition reports whether a volume may go from s to to.
func (s Status) CanTransition(to Status) bool { return transitions.Allows(s, to) }

// Attachment is a VM that uses the volume. Repositories fill it on reads; it is not written through the
// volume repository (the VM owns its disks).
type Attachment struct {
	VMID   uuid.UUID `json:"vm_id"`
	VMName string    `json:"vm_name"`
	// Active is true unless the VM is shut off.
	Active bool `json:"active"`
}

// Volume is a virtual disk on a storage.
type Volume struct {
	ID           uuid.UUID    `json:"id"`
	Name         string       `json:"name"`
	Description  string       `json:"description"`
	StorageID    uuid.UUID    `json:"storage_id"`
	Format       Format       `json:"format"`
	Size         int64        `json:"size"`      // virtual size in bytes, as the backend made it (rounded up to what the format stores)
	Allocated    int64        `json:"allocated"` // bytes used on the storage, from monitoring
	ReadOnly     bool         `json:"read_only"`
	Shareable    bool         `json:"shareable"` // may be attached to several VMs
	Status       Status       `json:"status"`
	StatusReason string       `json:"status_reason,omitempty"`
	Attachments  []Attachment `json:"attachments"`
	// Backing, for a linked volume, is the image or volume its unallocated clusters read from.
	Backing *Backing `json:"backing,omitempty"`
	// Linked are the volumes that use this one as their backing file; it cannot be deleted while there are
	// any. Repositories fill it on reads.
	Linked    []LinkedVolume `json:"linked,omitempty"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
	// Version increases with every update; repositories refuse an update based on a stale version.
	Version int64 `json:"version"`
}

// SetStatus moves the volume to status to, checking the transition table; reason explains an error status
// and is cleared otherwise.
func (v *Volume) SetStatus(to Status, reason string) error {
	return transitions.Move("volume", v.ID.String(), &v.Status, &v.StatusReason, to, StatusError, reason)
}

// Clone returns a deep copy.
func (v *Volume) Clone() *Volume {
	c := *v
	c.Attachments = append([]Attachment(nil), v.Attachments...)
	c.Linked = append([]LinkedVolume(nil), v.Linked...)
	if v.Backing != nil {
		b := *v.Backing
		c.Backing = &b
	}
	return &c
}

// EntityID returns the volume's id (operation results and events name entities by it).
func (x *Volume) EntityID() uuid.UUID { return x.ID }

// EntityVersion returns the volume's version.
func (x *Volume) EntityVersion() int64 { return x.Version }
