package image

import (
	"context"
	"io"

	"github.com/google/uuid"
	"github.com/openvair/openvair/internal/operation"
)

// Operation kinds of the image service.
const (
	OpUpload = "image.upload"
	OpEdit   = "image.edit"
	OpDelete = "image.delete"
)

// WithOperations records every mutating call of the service as an operation of ops, and lets ops run the ones that are
// not bound to this process (edits and deletes) on workers.
func WithOperations(ops *operation.Service) Option {
	return func(s *Service) { s.ops = ops }
}

// registerOperations lets ops run the service's operation kinds.
func (s *Service) registerOperations() {
	ops := s.ops
	operation.Register(ops, OpEdit, func(ctx context.Context, a editArgs) (*Image, error) { return s.Edit(ctx, a.ID, a.Req) })
	operation.Register(ops, OpDelete, func(ctx context.Context, id uuid.UUID) (struct{}, error) { return struct{}{}, s.Delete(ctx, id) })
	operation.Register(ops, OpImport, func(ctx context.Context, req ImportRequest) (*Image, error) { return s.Import(ctx, req) })
}

type editArgs struct {
	ID  uuid.UUID   `json:"id"`
	Req EditRequest `json:"req"`
}

func opSpec(kind string, id uuid.UUID, cancellable bool, payload any) operation.Spec {
	return operation.Spec{Kind: kind, TargetType: "image", TargetID: id, Cancellable: cancellable, Payload: payload}
}

// Create streams content into an available storage as a new image (an image.upload operation, bound to this
// process: only it has the bytes; its progress counts the bytes received). The content type is detected from
// the bytes; the upload is limited to MaxSize (ErrTooLarge, "larger than the upload size limit") and to the
// storage's available space (ErrTooLarge, "larger than the free space of storage ..."). Empty content is
// refused with ErrInvalid. When the upload fails, ctx is cancelled or the operation is cancelled, nothing
// remains: no row, no file.
func (s *Service) Create(ctx context.Context, req CreateRequest, content io.Reader) (*Image, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	return operation.Do(ctx, s.ops, opSpec(OpUpload, uuid.Nil, true, nil), func(ctx context.Context) (*Image, error) {
		return s.create(ctx, req, content)
	})
}

// Edit changes an image's name or description (an image.edit operation).
func (s *Service) Edit(ctx context.Context, id uuid.UUID, req EditRequest) (*Image, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	return operation.Do(ctx, s.ops, opSpec(OpEdit, id, false, editArgs{id, req}), func(ctx context.Context) (*Image, error) {
		return s.edit(ctx, id, req)
	})
}

// Delete removes an image that no VM uses (an image.delete operation).
func (s *Service) Delete(ctx context.Context, id uuid.UUID) error {
	_, err := operation.Do(ctx, s.ops, opSpec(OpDelete, id, false, id), func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.delete(ctx, id)
	})
	return err
}

// DeleteAsync starts Delete as an operation that a worker runs, and returns it at once.
func (s *Service) DeleteAsync(ctx context.Context, id uuid.UUID) (*operation.Operation, error) {
	return operation.Async(ctx, s.ops, func(ctx context.Context) error { return s.Delete(ctx, id) })
}
