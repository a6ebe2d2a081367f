package storage

import (
	"context"

	"github.com/google/uuid"
	"github.com/openvair/openvair/internal/operation"
)

// Operation kinds of the storage service.
const (
	OpCreate = "storage.create"
	OpEdit   = "storage.edit"
	OpDelete = "storage.delete"
)

// WithOperations records every mutating call of the service as an operation of ops, and lets ops run them
// on workers (the kinds Op*). Without it, calls run directly and leave no record.
func WithOperations(ops *operation.Service) Option {
	return func(s *Service) { s.ops = ops }
}

// registerOperations lets ops run the service's operation kinds.
func (s *Service) registerOperations() {
	ops := s.ops
	operation.Register(ops, OpCreate, func(ctx context.Context, req CreateRequest) (*Storage, error) { return s.Create(ctx, req) })
	operation.Register(ops, OpEdit, func(ctx context.Context, a editArgs) (*Storage, error) { return s.Edit(ctx, a.ID, a.Req) })
	operation.Register(ops, OpDelete, func(ctx context.Context, id uuid.UUID) (struct{}, error) { return struct{}{}, s.Delete(ctx, id) })
}

type editArgs struct {
	ID  uuid.UUID   `json:"id"`
	Req EditRequest `json:"req"`
}

func opSpec(kind string, id uuid.UUID, payload any) operation.Spec {
	return operation.Spec{Kind: kind, TargetType: "storage", TargetID: id, Payload: payload}
}

// Create checks the request, records the storage as creating, prepares it on its backend and makes it
// available (a storage.create operation). When the backend refuses, nothing remains and the backend's error
// is returned.
func (s *Service) Create(ctx context.Context, req CreateRequest) (*Storage, error) {
	c, err := s.check(ctx, &req)
	if err != nil {
		return nil, err
	}
	return operation.Do(ctx, s.ops, opSpec(OpCreate, uuid.Nil, req), func(ctx context.Context) (*Storage, error) {
		return s.create(ctx, req, c)
	})
}

// Edit changes a storage's name or description (a storage.edit operation).
func (s *Service) Edit(ctx context.Context, id uuid.UUID, req EditRequest) (*Storage, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	return operation.Do(ctx, s.ops, opSpec(OpEdit, id, editArgs{id, req}), func(ctx context.Context) (*Storage, error) {
		return s.edit(ctx, id, req)
	})
}

// Delete removes a storage that holds no volumes and no images; the error names them otherwise (a
// storage.delete operation). The backend releases what it set up: it unmounts a device, and removes a
// storage directory only when openvair created it (CreatedDir) and it is empty. A directory the user gave
// stays as it is, and so does one that holds other files or has something mounted on it; the storage is
// deleted all the same.
func (s *Service) Delete(ctx context.Context, id uuid.UUID) error {
	_, err := operation.Do(ctx, s.ops, opSpec(OpDelete, id, id), func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.delete(ctx, id)
	})
	return err
}

// DeleteAsync starts Delete as an operation that a worker runs, and returns it at once.
func (s *Service) DeleteAsync(ctx context.Context, id uuid.UUID) (*operation.Operation, error) {
	return operation.Async(ctx, s.ops, func(ctx context.Context) error { return s.Delete(ctx, id) })
}

// CreateAsync starts Create as an operation that a worker runs (mounting an NFS export can take a while),
// and returns it at once.
func (s *Service) CreateAsync(ctx context.Context, req CreateRequest) (*operation.Operation, error) {
	return operation.Async(ctx, s.ops, func(ctx context.Context) error { _, err := s.Create(ctx, req); return err })
}
