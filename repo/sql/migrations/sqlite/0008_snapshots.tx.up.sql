-- openvair schema version 8: volume snapshots. A snapshot is a clone of its volume's file on the volume's
-- storage; a volume cannot be deleted while it has snapshots.
CREATE TABLE snapshots (
    id            TEXT    NOT NULL,
    volume_id     TEXT    NOT NULL,
    storage_id    TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    description   TEXT    NOT NULL DEFAULT '',
    format        TEXT    NOT NULL,
    size          INTEGER NOT NULL,
    allocated     INTEGER NOT NULL DEFAULT 0,
    status        TEXT    NOT NULL,
    status_reason TEXT    NOT NULL DEFAULT '',
    created_at    INTEGER,
    updated_at    INTEGER,
    version       INTEGER NOT NULL,
    CONSTRAINT snapshots_pkey PRIMARY KEY (id),
    CONSTRAINT snapshots_volume_id_fkey FOREIGN KEY (volume_id) REFERENCES volumes (id) ON DELETE RESTRICT,
    CONSTRAINT snapshots_volume_name_key UNIQUE (volume_id, name)
) STRICT;
