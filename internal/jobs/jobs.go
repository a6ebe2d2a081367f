// Package jobs runs asynchronous operations as River jobs (github.com/riverqueue/river) in the same
// database as the data: the job is inserted in the unit of work that stores its pending operation, so the
// two exist together or not at all, and any process sharing the database may run it. PostgreSQL uses River's
// database/sql driver (poll mode; operations are picked up within the fetch interval), SQLite its riversqlite
// driver. River's rescuer re-runs a job whose worker died once RescueStuckJobsAfter passes; the operation
// itself is then already failed by lease recovery, and the job finds it final and does nothing.
package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/operation"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverdatabasesql"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
)

// Database is the SQL store the queue shares.
type Database interface {
	// SQLDB is the pool units of work run on.
	SQLDB() *sql.DB
	// SQLTx is the transaction of the unit of work ctx runs in.
	SQLTx(ctx context.Context) (*sql.Tx, bool)
	// PostgresDSN is the DSN of a PostgreSQL store ("" on SQLite).
	PostgresDSN() string
}

// Config configures a Queue.
type Config struct {
	// SQLite selects the SQLite driver (PostgreSQL otherwise).
	SQLite bool
	// Workers is how many operations this process runs at once (default 10).
	Workers int
	// Poll is how often idle workers look for new jobs (default 50 ms: River runs poll-only on these
	// drivers, so this is the latency of an asynchronous operation's start).
	Poll time.Duration
	// Lease is the operations' lease: a job stuck for twice as long is rescued.
	Lease  time.Duration
	Logger *slog.Logger
}

// Queue is a River client that runs operations.
type Queue struct {
	db     Database
	client *river.Client[*sql.Tx]
	// own is the queue's own pool on PostgreSQL: River's queries carry SQL comments with quotes that bun's
	// pgdriver, which interpolates parameters itself, mangles (leader election failed with "there is no
	// parameter $2"); pgx sends them as they are. Jobs are still inserted in the store's transactions.
	own *sql.DB
}

// runArgs is the job of one operation.
type runArgs struct {
	OperationID uuid.UUID `json:"operation_id"`
}

// Kind implements river.JobArgs.
func (runArgs) Kind() string { return "openvair.operation" }

// worker runs the operation a job names.
type worker struct {
	river.WorkerDefaults[runArgs]
	ops *operation.Service
}

// Work implements river.Worker. Failures of the work are recorded in the operation, not retried by River:
// an operation runs at most once.
func (w *worker) Work(ctx context.Context, job *river.Job[runArgs]) error {
	return w.ops.Execute(ctx, job.Args.OperationID)
}

// Timeout implements river.Worker: operations bound their own steps.
func (w *worker) Timeout(*river.Job[runArgs]) time.Duration { return -1 }

// Open migrates River's tables in db and returns a queue whose workers run ops' operations. Start begins
// working.
func Open(ctx context.Context, db Database, ops *operation.Service, cfg Config) (*Queue, error) {
	if cfg.Workers <= 0 {
		cfg.Workers = 10
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 50 * time.Millisecond
	}
	if cfg.Lease <= 0 {
		cfg.Lease = operation.DefaultLease
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var (
		driver riverdriver.Driver[*sql.Tx]
		own    *sql.DB
	)
	if cfg.SQLite {
		driver = riversqlite.New(db.SQLDB())
	} else {
		var err error
		if own, err = pgxPool(db.PostgresDSN()); err != nil {
			return nil, err
		}
		driver = riverdatabasesql.New(own)
	}
	q, err := open(ctx, driver, ops, cfg)
	if err != nil {
		if own != nil {
			_ = own.Close()
		}
		return nil, err
	}
	q.db, q.own = db, own
	return q, nil
}

// pgxPool opens a small pool through pgx's database/sql driver on the store's DSN, without the parameters
// only bun's pgdriver knows.
func pgxPool(dsn string) (*sql.DB, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, fmt.Errorf("job queue: %w", err)
	}
	q := u.Query()
	q.Del("read_timeout")
	q.Del("write_timeout")
	u.RawQuery = q.Encode()
	cc, err := pgx.ParseConfig(u.String())
	if err != nil {
		return nil, fmt.Errorf("job queue: %w", err)
	}
	pool := stdlib.OpenDB(*cc)
	pool.SetMaxOpenConns(4)
	pool.SetConnMaxIdleTime(5 * time.Minute)
	return pool, nil
}

func open(ctx context.Context, driver riverdriver.Driver[*sql.Tx], ops *operation.Service, cfg Config) (*Queue, error) {
	mctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	migrator, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: quiet(cfg.Logger)})
	if err != nil {
		return nil, fmt.Errorf("job queue: %w", err)
	}
	if _, err := migrator.Migrate(mctx, rivermigrate.DirectionUp, nil); err != nil {
		return nil, errkind.Wrap(errkind.Unavailable, err, "database", "", "migrate the job queue's tables")
	}
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &worker{ops: ops}); err != nil {
		return nil, err
	}
	client, err := river.NewClient(driver, &river.Config{
		ID:                   ops.Owner(),
		Queues:               map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: cfg.Workers}},
		Workers:              workers,
		FetchPollInterval:    cfg.Poll,
		FetchCooldown:        min(cfg.Poll, 10*time.Millisecond),
		PollOnly:             true,
		MaxAttempts:          1,
		JobTimeout:           -1,
		RescueStuckJobsAfter: 2 * cfg.Lease,
		Logger:               quiet(cfg.Logger),
	})
	if err != nil {
		return nil, fmt.Errorf("job queue: %w", err)
	}
	return &Queue{client: client}, nil
}

// quiet passes River's warnings and errors on, not its routine information.
func quiet(l *slog.Logger) *slog.Logger {
	return slog.New(levelFilter{l.Handler(), slog.LevelWarn})
}

type levelFilter struct {
	slog.Handler
	min slog.Level
}

func (f levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.Handler.Enabled(ctx, l)
}

// Enqueue implements operation.Executor: it inserts the job of op in the unit of work of ctx.
func (q *Queue) Enqueue(ctx context.Context, op *operation.Operation) error {
	tx, ok := q.db.SQLTx(ctx)
	if !ok {
		return errors.New("job queue: enqueue outside a unit of work")
	}
	if _, err := q.client.InsertTx(ctx, tx, runArgs{OperationID: op.ID}, nil); err != nil {
		return fmt.Errorf("enqueue operation %s: %w", op.ID, err)
	}
	return nil
}

// Start starts the workers; they stop when Stop is called.
func (q *Queue) Start(ctx context.Context) error { return q.client.Start(ctx) }

// Stop stops fetching jobs and waits, until ctx ends, for running ones to finish, then closes the queue's
// own connections.
func (q *Queue) Stop(ctx context.Context) error {
	err := q.client.Stop(ctx)
	if q.own != nil {
		err = errors.Join(err, q.own.Close())
	}
	return err
}
