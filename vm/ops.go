package vm

import (
	"context"

	"github.com/google/uuid"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/operation"
)

// Operation kinds of the VM service.
const (
	OpCreate       = "vm.create"
	OpEdit         = "vm.edit"
	OpAttachVolume = "vm.attach_volume"
	OpDetachVolume = "vm.detach_volume"
	OpDelete       = "vm.delete"
	OpStart        = "vm.start"
	OpStop         = "vm.stop"
	OpReboot       = "vm.reboot"
	OpReset        = "vm.reset"
)

// WithOperations records every mutating call of the service as an operation of ops, and lets ops run them on workers.
func WithOperations(ops *operation.Service) Option {
	return func(s *Service) { s.ops = ops }
}

// registerOperations lets ops run the service's operation kinds.
func (s *Service) registerOperations() {
	ops := s.ops
	operation.Register(ops, OpCreate, func(ctx context.Context, a createArgs) (*VM, error) {
		a.Req.Graphics.Password = a.Password
		return s.Create(ctx, a.Req)
	})
	operation.Register(ops, OpEdit, func(ctx context.Context, a editArgs) (*VM, error) {
		if a.Req.Graphics != nil {
			a.Req.Graphics.Password = a.Password
		}
		return s.Edit(ctx, a.ID, a.Req)
	})
	operation.Register(ops, OpAttachVolume, func(ctx context.Context, a volumeArgs) (*VM, error) {
		return s.AttachVolume(ctx, a.ID, a.VolumeID, a.Bus)
	})
	operation.Register(ops, OpDetachVolume, func(ctx context.Context, a volumeArgs) (*VM, error) {
		return s.DetachVolume(ctx, a.ID, a.VolumeID)
	})
	operation.Register(ops, OpDelete, func(ctx context.Context, a deleteArgs) (struct{}, error) {
		return struct{}{}, s.Delete(ctx, a.ID, a.Opts)
	})
	operation.Register(ops, OpStart, func(ctx context.Context, id uuid.UUID) (*VM, error) { return s.Start(ctx, id) })
	operation.Register(ops, OpStop, func(ctx context.Context, a stopArgs) (*VM, error) { return s.Stop(ctx, a.ID, a.Opts) })
	operation.Register(ops, OpReboot, func(ctx context.Context, id uuid.UUID) (*VM, error) { return s.Reboot(ctx, id) })
	operation.Register(ops, OpReset, func(ctx context.Context, id uuid.UUID) (*VM, error) { return s.Reset(ctx, id) })
}

// The payloads of asynchronous VM operations. A graphics password travels sealed (Graphics.Password is
// never encoded), so a stored payload never holds it in clear.
type (
	createArgs struct {
		Req      CreateRequest `json:"req"`
		Password string        `json:"password,omitempty"`
	}
	editArgs struct {
		ID       uuid.UUID   `json:"id"`
		Req      EditRequest `json:"req"`
		Password string      `json:"password,omitempty"`
	}
	volumeArgs struct {
		ID       uuid.UUID `json:"id"`
		VolumeID uuid.UUID `json:"volume_id"`
		Bus      string    `json:"bus,omitempty"`
	}
	deleteArgs struct {
		ID   uuid.UUID     `json:"id"`
		Opts DeleteOptions `json:"opts"`
	}
	stopArgs struct {
		ID   uuid.UUID   `json:"id"`
		Opts StopOptions `json:"opts"`
	}
)

func opSpec(kind string, id uuid.UUID, cancellable bool, payload any) operation.Spec {
	return operation.Spec{Kind: kind, TargetType: "vm", TargetID: id, Cancellable: cancellable, Payload: payload}
}

// seal returns password sealed for a stored payload ("" stays "").
func (s *Service) seal(password string) (string, error) {
	if password == "" || s.d.Secrets == nil {
		return password, nil
	}
	return s.d.Secrets.Seal(password)
}

// Create defines a new VM (a vm.create operation): it creates the volumes asked for, attaches them with the
// existing volumes and images, and defines the domain. Everything is undone when a step fails.
func (s *Service) Create(ctx context.Context, req CreateRequest) (*VM, error) {
	if _, err := s.createSpec(req); err != nil {
		return nil, err
	}
	if err := s.checkNICs(ctx, req.Interfaces, "interfaces"); err != nil {
		return nil, err
	}
	args := createArgs{Req: req}
	if operation.WantsAsync(ctx) {
		pw, err := s.seal(req.Graphics.Password)
		if err != nil {
			return nil, err
		}
		args.Password = pw
	}
	return operation.Do(ctx, s.ops, opSpec(OpCreate, uuid.Nil, false, args), func(ctx context.Context) (*VM, error) {
		return s.create(ctx, req)
	})
}

// Edit changes a VM that is shut off (a vm.edit operation). Volumes asked for with New are created; the
// domain is redefined; when a step fails, the VM and its domain stay as they were.
func (s *Service) Edit(ctx context.Context, id uuid.UUID, req EditRequest) (*VM, error) {
	if req.Interfaces != nil {
		if err := s.checkNICs(ctx, *req.Interfaces, "interfaces"); err != nil {
			return nil, err
		}
	}
	args := editArgs{ID: id, Req: req}
	if req.Graphics != nil && operation.WantsAsync(ctx) {
		pw, err := s.seal(req.Graphics.Password)
		if err != nil {
			return nil, err
		}
		args.Password = pw
	}
	return operation.Do(ctx, s.ops, opSpec(OpEdit, id, false, args), func(ctx context.Context) (*VM, error) {
		return s.editRequest(ctx, id, req)
	})
}

// AttachVolume attaches an existing volume to a VM that is shut off (a vm.attach_volume operation).
func (s *Service) AttachVolume(ctx context.Context, id, volumeID uuid.UUID, bus string) (*VM, error) {
	return operation.Do(ctx, s.ops, opSpec(OpAttachVolume, id, false, volumeArgs{id, volumeID, bus}), func(ctx context.Context) (*VM, error) {
		return s.attachVolume(ctx, id, volumeID, bus)
	})
}

// DetachVolume detaches a volume from a VM that is shut off; the volume is kept (a vm.detach_volume
// operation).
func (s *Service) DetachVolume(ctx context.Context, id, volumeID uuid.UUID) (*VM, error) {
	return operation.Do(ctx, s.ops, opSpec(OpDetachVolume, id, false, volumeArgs{ID: id, VolumeID: volumeID}), func(ctx context.Context) (*VM, error) {
		return s.detachVolume(ctx, id, volumeID)
	})
}

// Delete removes a VM that is shut off (a vm.delete operation): it undefines the domain, detaches its
// volumes and images and, when asked, deletes the volumes no other VM uses. The VM is gone when Delete
// returns nil; an error about volumes that could not be deleted is returned after the VM itself is deleted.
func (s *Service) Delete(ctx context.Context, id uuid.UUID, opts DeleteOptions) error {
	_, err := operation.Do(ctx, s.ops, opSpec(OpDelete, id, false, deleteArgs{id, opts}), func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.delete(ctx, id, opts)
	})
	return err
}

// Start boots a VM that is shut off (a vm.start operation). Its volumes must be available (not being
// extended or deleted) on available storages.
func (s *Service) Start(ctx context.Context, id uuid.UUID) (*VM, error) {
	return operation.Do(ctx, s.ops, opSpec(OpStart, id, false, id), func(ctx context.Context) (*VM, error) {
		return s.start(ctx, id)
	})
}

// Stop powers a VM off (a vm.stop operation): gracefully (the guest is asked to shut down, and Stop waits
// up to opts.Timeout) or at once with opts.Force. A graceful stop that times out leaves the VM running and
// returns an error wrapping errkind.Timeout, unless opts.ForceAfterTimeout is set. Cancelling the operation
// abandons the wait: the guest has been asked and may still shut down.
func (s *Service) Stop(ctx context.Context, id uuid.UUID, opts StopOptions) (*VM, error) {
	if opts.Timeout < 0 {
		return nil, &errkind.ValidationError{Entity: "vm stop", Fields: []errkind.FieldError{{Field: "timeout", Message: "must not be negative"}}}
	}
	return operation.Do(ctx, s.ops, opSpec(OpStop, id, true, stopArgs{id, opts}), func(ctx context.Context) (*VM, error) {
		return s.stop(ctx, id, opts)
	})
}

// Reboot asks a running VM's guest to reboot (a vm.reboot operation; the ACPI reset request: the guest
// decides, and one without ACPI support ignores it). See Reset for a hard reset.
func (s *Service) Reboot(ctx context.Context, id uuid.UUID) (*VM, error) {
	return operation.Do(ctx, s.ops, opSpec(OpReboot, id, false, id), func(ctx context.Context) (*VM, error) {
		return s.reboot(ctx, id)
	})
}

// Reset restarts a running VM at once, like a hardware reset button (a vm.reset operation): the guest is not
// asked and loses what it did not write to disk.
func (s *Service) Reset(ctx context.Context, id uuid.UUID) (*VM, error) {
	return operation.Do(ctx, s.ops, opSpec(OpReset, id, false, id), func(ctx context.Context) (*VM, error) {
		return s.reset(ctx, id)
	})
}

// CreateAsync starts Create as an operation that a worker runs, and returns it at once.
func (s *Service) CreateAsync(ctx context.Context, req CreateRequest) (*operation.Operation, error) {
	return operation.Async(ctx, s.ops, func(ctx context.Context) error { _, err := s.Create(ctx, req); return err })
}

// StopAsync starts Stop as an operation that a worker runs, and returns it at once.
func (s *Service) StopAsync(ctx context.Context, id uuid.UUID, opts StopOptions) (*operation.Operation, error) {
	return operation.Async(ctx, s.ops, func(ctx context.Context) error { _, err := s.Stop(ctx, id, opts); return err })
}

// DeleteAsync starts Delete as an operation that a worker runs, and returns it at once.
func (s *Service) DeleteAsync(ctx context.Context, id uuid.UUID, opts DeleteOptions) (*operation.Operation, error) {
	return operation.Async(ctx, s.ops, func(ctx context.Context) error { return s.Delete(ctx, id, opts) })
}

// StartAsync starts Start as an operation that a worker runs, and returns it at once.
func (s *Service) StartAsync(ctx context.Context, id uuid.UUID) (*operation.Operation, error) {
	return operation.Async(ctx, s.ops, func(ctx context.Context) error { _, err := s.Start(ctx, id); return err })
}
