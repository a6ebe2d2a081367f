-- openvair schema version 4: the records that commit with the data. Operations (the SDK's work, leased by
-- the process that runs it), the change log (events, with ids handed out in commit order under an advisory
-- lock from events_id_seq, so a rolled-back append leaves a gap, never a visible id), its pruned mark, the
-- idempotency keys and the leader leases. Times are Unix nanoseconds (UTC), NULL for the zero time.

CREATE TABLE operations (
    id               uuid    NOT NULL,
    kind             text    NOT NULL,
    target_type      text    NOT NULL DEFAULT '',
    target_id        uuid    NOT NULL,
    status           text    NOT NULL,
    progress         text    NOT NULL DEFAULT '{}',
    requester        text    NOT NULL DEFAULT '',
    request_id       text    NOT NULL DEFAULT '',
    cancellable      boolean NOT NULL DEFAULT false,
    cancel_requested boolean NOT NULL DEFAULT false,
    error            text,
    result           text,
    owner            text    NOT NULL DEFAULT '',
    lease_until      bigint,
    created_at       bigint,
    started_at       bigint,
    finished_at      bigint,
    updated_at       bigint,
    version          bigint  NOT NULL,
    payload          bytea,
    CONSTRAINT operations_pkey PRIMARY KEY (id)
);
CREATE INDEX operations_target_id_id_idx ON operations (target_id, id);
CREATE INDEX operations_request_id_id_idx ON operations (request_id, id);
CREATE INDEX operations_status_lease_until_idx ON operations (status, lease_until);
CREATE INDEX operations_owner_status_idx ON operations (owner, status);
CREATE INDEX operations_created_at_id_idx ON operations (created_at, id);
CREATE INDEX operations_finished_at_idx ON operations (finished_at);

CREATE SEQUENCE events_id_seq AS bigint;
CREATE TABLE events (
    id           bigint NOT NULL,
    type         text   NOT NULL,
    resource     text   NOT NULL,
    resource_id  uuid   NOT NULL,
    version      bigint NOT NULL DEFAULT 0,
    operation_id uuid   NOT NULL,
    request_id   text   NOT NULL DEFAULT '',
    requester    text   NOT NULL DEFAULT '',
    time         bigint,
    data         text,
    CONSTRAINT events_pkey PRIMARY KEY (id)
);
CREATE INDEX events_time_idx ON events (time);

-- One row: the greatest event id removed by pruning. (The greatest id handed out is the greater of it and
-- the greatest id in events.)
CREATE TABLE event_marks (
    id     integer NOT NULL,
    pruned bigint  NOT NULL DEFAULT 0,
    CONSTRAINT event_marks_pkey PRIMARY KEY (id),
    CONSTRAINT event_marks_one_row CHECK (id = 1)
);
INSERT INTO event_marks (id, pruned) VALUES (1, 0);

CREATE TABLE idempotency_keys (
    scope       text    NOT NULL,
    key         text    NOT NULL,
    fingerprint text    NOT NULL DEFAULT '',
    state       text    NOT NULL,
    owner       text    NOT NULL DEFAULT '',
    lease_until bigint,
    status      integer NOT NULL DEFAULT 0,
    header      text,
    body        bytea,
    created_at  bigint,
    expires_at  bigint,
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);

CREATE TABLE leases (
    name   text   NOT NULL,
    holder text   NOT NULL,
    until  bigint,
    CONSTRAINT leases_pkey PRIMARY KEY (name)
);
