// Package image manages images: ISO and disk images streamed into a storage, later attached to VMs as
// cdroms. It holds the Image entity, its status machine, request validation and the Service with the rules
// for upload, edit, delete and monitoring.
package image

import (
	"time"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/fsm"
)

// Format is an image's content type, detected from its bytes.
type Format = driver.ImageFormat

// Image formats.
const (
	FormatISO   = driver.ImageISO
	FormatQCOW2 = driver.ImageQCOW2
	FormatRaw   = driver.ImageRaw
)

// Status is an image's status.
type Status string

// Image statuses.
const (
	StatusUploading Status = "uploading"
	StatusAvailable Status = "available"
	StatusDeleting  Status = "deleting"
	StatusError     Status = "error"
)

// transitions is the image status machine; every status change goes through it. An upload that fails is
// removed rather than kept.
var transitions = fsm.Table[Status]{
	StatusUploading: {StatusAvailable, StatusError},
	StatusAvailable: {StatusAvailable, StatusDeleting, StatusError},
	StatusDeleting:  {StatusError},
	StatusError:     {StatusAvailable, StatusError, StatusDeleting},
}

// CanTransition reports whether an image may go from s to to.
func (s Status) CanTransition(to Status) bool { return transitions.Allows(s, to) }

// Attachment is a VM that uses the image as a cdrom. Repositories fill it on reads.
type Attachment struct {
	VMID   uuid.UUID `json:"vm_id"`
	VMName string    `json:"vm_name"`
}

// LinkedVolume is a volume whose backing file is the image.
type LinkedVolume struct {
	VolumeID   uuid.UUID `json:"volume_id"`
	VolumeName string    `json:"volume_name"`
}

// Image is an uploaded ISO or disk image.
type Image struct {
	ID           uuid.UUID    `json:"id"`
	Name         string       `json:"name"`
	Description  string       `json:"description"`
	StorageID    uuid.UUID    `json:"storage_id"`
	Format       Format       `json:"format"`
	Size         int64        `json:"size"`   // bytes
	SHA256       string       `json:"sha256"` // hex, computed while uploading
	Status       Status       `json:"status"`
	StatusReason string       `json:"status_reason,omitempty"`
	Attachments  []Attachment `json:"attachments"`
	// Linked are the volumes that use this image as their backing file (linked clones); it cannot be
	// deleted while there are any. Repositories fill it on reads.
	Linked    []LinkedVolume `json:"linked,omitempty"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
	// Version increases with every update; repositories refuse an update based on a stale version.
	Version int64 `json:"version"`
}

// SetStatus moves the image to status to, checking the transition table; reason explains an error status
// and is cleared otherwise.
func (i *Image) SetStatus(to Status, reason string) error {
	return transitions.Move("image", i.ID.String(), &i.Status, &i.StatusReason, to, StatusError, reason)
}

// Clone returns a deep copy.
func (i *Image) Clone() *Image {
	c := *i
	c.Attachments = append([]Attachment(nil), i.Attachments...)
	c.Linked = append([]LinkedVolume(nil), i.Linked...)
	return &c
}

// EntityID returns the image's id (operation results and events name entities by it).
func (x *Image) EntityID() uuid.UUID { return x.ID }

// EntityVersion returns the image's version.
func (x *Image) EntityVersion() int64 { return x.Version }
