package volume

import (
	"context"

	"github.com/google/uuid"
	"github.com/openvair/openvair/internal/operation"
)

// Operation kinds of the volume service.
const (
	OpCreate = "volume.create"
	OpEdit   = "volume.edit"
	OpExtend = "volume.extend"
	OpDelete = "volume.delete"
)

// WithOperations records every mutating call of the service as an operation of ops, and lets ops run them
// on workers (the kinds Op*). Without it, calls run directly and leave no record.
func WithOperations(ops *operation.Service) Option {
	return func(s *Service) { s.ops = ops }
}

// registerOperations lets ops run the service's operation kinds.
func (s *Service) registerOperations() {
	ops := s.ops
	operation.Register(ops, OpCreate, func(ctx context.Context, req CreateRequest) (*Volume, error) { return s.Create(ctx, req) })
	operation.Register(ops, OpEdit, func(ctx context.Context, a editArgs) (*Volume, error) { return s.Edit(ctx, a.ID, a.Req) })
	operation.Register(ops, OpExtend, func(ctx context.Context, a extendArgs) (*Volume, error) { return s.Extend(ctx, a.ID, a.Size) })
	operation.Register(ops, OpDelete, func(ctx context.Context, id uuid.UUID) (struct{}, error) { return struct{}{}, s.Delete(ctx, id) })
}

type editArgs struct {
	ID  uuid.UUID   `json:"id"`
	Req EditRequest `json:"req"`
}

type extendArgs struct {
	ID   uuid.UUID `json:"id"`
	Size int64     `json:"size"`
}

func opSpec(kind string, id uuid.UUID, cancellable bool, payload any) operation.Spec {
	return operation.Spec{Kind: kind, TargetType: "volume", TargetID: id, Cancellable: cancellable, Payload: payload}
}

// Create makes a volume on an available storage (a volume.create operation). The name must be unique on the
// storage, the size must fit in the storage's available space (ErrTooLarge, "needs N bytes, storage has M
// bytes free"). The volume's Size is the virtual size the backend reports having made, which is req.Size
// rounded up to what the format stores (a multiple of 512 bytes for the localfs and nfs backends: a qcow2 or
// raw volume asked for 1000 bytes has 1024). When the backend fails, or the operation is cancelled, nothing
// remains.
//
// With req.Source the volume's content starts from an image or another volume (see Source and CloneMode):
// the source is checked (it exists and is available, an image is not an ISO, a volume being copied is not
// written by a running VM) and so are the backends' capabilities for the mode, before anything is recorded
// or queued; a copy needs the source's allocated bytes free on the storage. Its progress is the
// operation's.
func (s *Service) Create(ctx context.Context, req CreateRequest) (*Volume, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	// The operation records the request as given (a worker resolves it again); the work uses it resolved.
	resolved, src := req, (*origin)(nil)
	if req.Source != nil {
		o, err := s.resolveSource(ctx, &resolved)
		if err != nil {
			return nil, err
		}
		if err := s.checkSourceCapabilities(ctx, resolved, o); err != nil {
			return nil, err
		}
		src = &o
	}
	return operation.Do(ctx, s.ops, opSpec(OpCreate, uuid.Nil, true, req), func(ctx context.Context) (*Volume, error) {
		return s.create(ctx, resolved, src)
	})
}

// Edit changes a volume's name, description, read-only or shareable flag (a volume.edit operation).
func (s *Service) Edit(ctx context.Context, id uuid.UUID, req EditRequest) (*Volume, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	return operation.Do(ctx, s.ops, opSpec(OpEdit, id, false, editArgs{id, req}), func(ctx context.Context) (*Volume, error) {
		return s.edit(ctx, id, req)
	})
}

// Extend grows a volume to newSize bytes (a volume.extend operation). It must grow, fit in the storage's
// free space (ErrTooLarge), and the volume must not be in use by a VM that is not shut off. As with Create,
// the new Size is the virtual size the backend reports: newSize rounded up to what the format stores.
func (s *Service) Extend(ctx context.Context, id uuid.UUID, newSize int64) (*Volume, error) {
	return operation.Do(ctx, s.ops, opSpec(OpExtend, id, false, extendArgs{id, newSize}), func(ctx context.Context) (*Volume, error) {
		return s.extend(ctx, id, newSize)
	})
}

// Delete removes a volume that no VM uses (a volume.delete operation). A volume with snapshots is refused
// (ErrInUse naming them); DeleteWithSnapshots removes them too.
func (s *Service) Delete(ctx context.Context, id uuid.UUID) error {
	_, err := operation.Do(ctx, s.ops, opSpec(OpDelete, id, false, id), func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.delete(ctx, id, false)
	})
	return err
}

// DeleteWithSnapshots removes a volume that no VM uses and all its snapshots (a volume.delete operation).
func (s *Service) DeleteWithSnapshots(ctx context.Context, id uuid.UUID) error {
	_, err := operation.Do(ctx, s.ops, opSpec(OpDelete, id, false, id), func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.delete(ctx, id, true)
	})
	return err
}

// CreateAsync starts Create as an operation that a worker runs, and returns it at once.
func (s *Service) CreateAsync(ctx context.Context, req CreateRequest) (*operation.Operation, error) {
	return operation.Async(ctx, s.ops, func(ctx context.Context) error { _, err := s.Create(ctx, req); return err })
}

// ExtendAsync starts Extend as an operation that a worker runs, and returns it at once.
func (s *Service) ExtendAsync(ctx context.Context, id uuid.UUID, newSize int64) (*operation.Operation, error) {
	return operation.Async(ctx, s.ops, func(ctx context.Context) error { _, err := s.Extend(ctx, id, newSize); return err })
}

// DeleteAsync starts Delete as an operation that a worker runs, and returns it at once.
func (s *Service) DeleteAsync(ctx context.Context, id uuid.UUID) (*operation.Operation, error) {
	return operation.Async(ctx, s.ops, func(ctx context.Context) error { return s.Delete(ctx, id) })
}
