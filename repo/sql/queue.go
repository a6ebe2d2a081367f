package sqlstore

import (
	"context"

	"github.com/openvair/openvair/internal/event"
	"github.com/openvair/openvair/internal/jobs"
	"github.com/openvair/openvair/internal/operation"
	"github.com/openvair/openvair/repo"
)

var (
	_ repo.JobQueueOpener        = (*Store)(nil)
	_ repo.EventNotifierProvider = (*Store)(nil)
)

// OpenJobQueue implements repo.JobQueueOpener: asynchronous operations run as River jobs in this database
// (internal/jobs), inserted in the unit of work that stores their operation, so any process sharing the
// database may run them.
func (s *Store) OpenJobQueue(ctx context.Context, ops *operation.Service, cfg repo.JobQueueConfig) (repo.JobQueue, error) {
	q, err := jobs.Open(ctx, s, ops, jobs.Config{SQLite: s.dialect != Postgres, Workers: cfg.Workers, Lease: cfg.Lease,
		Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	return q, nil
}

// EventNotifier implements repo.EventNotifierProvider: on PostgreSQL the store itself (Listen, through
// LISTEN/NOTIFY), on SQLite nil (the file has no other writers to hear from; followers poll the log).
func (s *Store) EventNotifier() event.Notifier {
	if s.dialect != Postgres {
		return nil
	}
	return s
}
