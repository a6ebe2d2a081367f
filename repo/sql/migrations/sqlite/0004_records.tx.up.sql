-- openvair schema version 4 (SQLite): the records that commit with the data. Operations (the SDK's work,
-- leased by the process that runs it), the change log (events, with ids handed out by incrementing
-- event_marks.last inside the writing transaction, so ids follow commit order and a rolled-back append
-- leaves no trace), the idempotency keys and the leader leases. Times are Unix nanoseconds (UTC), NULL for
-- the zero time.

CREATE TABLE operations (
    id               TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    target_type      TEXT    NOT NULL DEFAULT '',
    target_id        TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    progress         TEXT    NOT NULL DEFAULT '{}',
    requester        TEXT    NOT NULL DEFAULT '',
    request_id       TEXT    NOT NULL DEFAULT '',
    cancellable      INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    error            TEXT,
    result           TEXT,
    owner            TEXT    NOT NULL DEFAULT '',
    lease_until      INTEGER,
    created_at       INTEGER,
    started_at       INTEGER,
    finished_at      INTEGER,
    updated_at       INTEGER,
    version          INTEGER NOT NULL,
    payload          BLOB,
    CONSTRAINT operations_pkey PRIMARY KEY (id)
) STRICT;
CREATE INDEX operations_target_id_id_idx ON operations (target_id, id);
CREATE INDEX operations_request_id_id_idx ON operations (request_id, id);
CREATE INDEX operations_status_lease_until_idx ON operations (status, lease_until);
CREATE INDEX operations_owner_status_idx ON operations (owner, status);
CREATE INDEX operations_created_at_id_idx ON operations (created_at, id);
CREATE INDEX operations_finished_at_idx ON operations (finished_at);

CREATE TABLE events (
    id           INTEGER NOT NULL,
    type         TEXT    NOT NULL,
    resource     TEXT    NOT NULL,
    resource_id  TEXT    NOT NULL,
    version      INTEGER NOT NULL DEFAULT 0,
    operation_id TEXT    NOT NULL,
    request_id   TEXT    NOT NULL DEFAULT '',
    requester    TEXT    NOT NULL DEFAULT '',
    time         INTEGER,
    data         TEXT,
    CONSTRAINT events_pkey PRIMARY KEY (id)
) STRICT;
CREATE INDEX events_time_idx ON events (time);

-- One row: the greatest event id handed out and the greatest one removed by pruning.
CREATE TABLE event_marks (
    id     INTEGER NOT NULL,
    last   INTEGER NOT NULL DEFAULT 0,
    pruned INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT event_marks_pkey PRIMARY KEY (id),
    CONSTRAINT event_marks_one_row CHECK (id = 1)
) STRICT;
INSERT INTO event_marks (id, last, pruned) VALUES (1, 0, 0);

CREATE TABLE idempotency_keys (
    scope       TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL DEFAULT '',
    state       TEXT    NOT NULL,
    owner       TEXT    NOT NULL DEFAULT '',
    lease_until INTEGER,
    status      INTEGER NOT NULL DEFAULT 0,
    header      TEXT,
    body        BLOB,
    created_at  INTEGER,
    expires_at  INTEGER,
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (scope, key)
) STRICT;
CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);

CREATE TABLE leases (
    name   TEXT    NOT NULL,
    holder TEXT    NOT NULL,
    until  INTEGER,
    CONSTRAINT leases_pkey PRIMARY KEY (name)
) STRICT;
