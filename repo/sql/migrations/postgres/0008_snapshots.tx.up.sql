-- openvair schema version 8: volume snapshots. A snapshot is a clone of its volume's file on the volume's
-- storage; a volume cannot be deleted while it has snapshots.
CREATE TABLE snapshots (
    id            uuid    NOT NULL,
    volume_id     uuid    NOT NULL,
    storage_id    uuid    NOT NULL,
    name          text    NOT NULL,
    description   text    NOT NULL DEFAULT '',
    format        text    NOT NULL,
    size          bigint  NOT NULL,
    allocated     bigint  NOT NULL DEFAULT 0,
    status        text    NOT NULL,
    status_reason text    NOT NULL DEFAULT '',
    created_at    bigint,
    updated_at    bigint,
    version       bigint  NOT NULL,
    CONSTRAINT snapshots_pkey PRIMARY KEY (id),
    CONSTRAINT snapshots_volume_id_fkey FOREIGN KEY (volume_id) REFERENCES volumes (id) ON DELETE RESTRICT,
    CONSTRAINT snapshots_volume_name_key UNIQUE (volume_id, name)
);
