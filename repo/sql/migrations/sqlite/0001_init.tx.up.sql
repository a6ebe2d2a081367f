-- openvair schema version 1 (SQLite, STRICT tables). Timestamps are Unix nanoseconds (UTC), NULL for the zero time;
-- storage specs are JSON documents; every entity carries a version for optimistic concurrency.

CREATE TABLE storages (
    id            TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    description   TEXT    NOT NULL DEFAULT '',
    type          TEXT    NOT NULL,
    localfs       TEXT,
    nfs           TEXT,
    location      TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    status_reason TEXT    NOT NULL DEFAULT '',
    capacity      INTEGER  NOT NULL DEFAULT 0,
    available     INTEGER  NOT NULL DEFAULT 0,
    mount_point   TEXT    NOT NULL DEFAULT '',
    created_at    INTEGER,
    updated_at    INTEGER,
    version       INTEGER  NOT NULL,
    CONSTRAINT storages_pkey PRIMARY KEY (id),
    CONSTRAINT storages_name_key UNIQUE (name),
    CONSTRAINT storages_location_key UNIQUE (location)
) STRICT;
CREATE INDEX storages_status_id_idx ON storages (status, id);
CREATE INDEX storages_type_id_idx ON storages (type, id);

CREATE TABLE volumes (
    id            TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    description   TEXT    NOT NULL DEFAULT '',
    storage_id    TEXT    NOT NULL,
    format        TEXT    NOT NULL,
    size          INTEGER  NOT NULL,
    allocated     INTEGER  NOT NULL DEFAULT 0,
    read_only     INTEGER NOT NULL DEFAULT 0,
    shareable     INTEGER NOT NULL DEFAULT 0,
    status        TEXT    NOT NULL,
    status_reason TEXT    NOT NULL DEFAULT '',
    created_at    INTEGER,
    updated_at    INTEGER,
    version       INTEGER  NOT NULL,
    CONSTRAINT volumes_pkey PRIMARY KEY (id),
    CONSTRAINT volumes_storage_id_fkey FOREIGN KEY (storage_id) REFERENCES storages (id) ON DELETE RESTRICT,
    CONSTRAINT volumes_storage_id_name_key UNIQUE (storage_id, name)
) STRICT;
CREATE INDEX volumes_storage_id_id_idx ON volumes (storage_id, id);
CREATE INDEX volumes_status_id_idx ON volumes (status, id);
CREATE INDEX volumes_name_id_idx ON volumes (name, id);

CREATE TABLE images (
    id            TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    description   TEXT    NOT NULL DEFAULT '',
    storage_id    TEXT    NOT NULL,
    format        TEXT    NOT NULL,
    size          INTEGER  NOT NULL,
    sha256        TEXT    NOT NULL DEFAULT '',
    status        TEXT    NOT NULL,
    status_reason TEXT    NOT NULL DEFAULT '',
    created_at    INTEGER,
    updated_at    INTEGER,
    version       INTEGER  NOT NULL,
    CONSTRAINT images_pkey PRIMARY KEY (id),
    CONSTRAINT images_storage_id_fkey FOREIGN KEY (storage_id) REFERENCES storages (id) ON DELETE RESTRICT,
    CONSTRAINT images_storage_id_name_key UNIQUE (storage_id, name)
) STRICT;
CREATE INDEX images_storage_id_id_idx ON images (storage_id, id);
CREATE INDEX images_status_id_idx ON images (status, id);
CREATE INDEX images_name_id_idx ON images (name, id);

CREATE TABLE vms (
    id                TEXT    NOT NULL,
    name              TEXT    NOT NULL,
    description       TEXT    NOT NULL DEFAULT '',
    cpu_sockets       INTEGER NOT NULL,
    cpu_cores         INTEGER NOT NULL,
    cpu_threads       INTEGER NOT NULL,
    cpu_mode          TEXT    NOT NULL DEFAULT '',
    cpu_model         TEXT    NOT NULL DEFAULT '',
    memory_bytes      INTEGER  NOT NULL,
    firmware          TEXT    NOT NULL DEFAULT '',
    machine_type      TEXT    NOT NULL DEFAULT '',
    boot              TEXT    NOT NULL DEFAULT '[]',
    graphics_type     TEXT    NOT NULL DEFAULT '',
    graphics_listen   TEXT    NOT NULL DEFAULT '',
    graphics_password TEXT    NOT NULL DEFAULT '',
    status            TEXT    NOT NULL,
    status_reason     TEXT    NOT NULL DEFAULT '',
    power_state       TEXT    NOT NULL DEFAULT '',
    created_at        INTEGER,
    updated_at        INTEGER,
    version           INTEGER  NOT NULL,
    CONSTRAINT vms_pkey PRIMARY KEY (id),
    CONSTRAINT vms_name_key UNIQUE (name)
) STRICT;
CREATE INDEX vms_status_id_idx ON vms (status, id);
CREATE INDEX vms_power_state_id_idx ON vms (power_state, id);

CREATE TABLE vm_disks (
    vm_id           TEXT    NOT NULL,
    seq             INTEGER NOT NULL,
    volume_id       TEXT    NOT NULL,
    bus             TEXT    NOT NULL DEFAULT '',
    boot_order      INTEGER NOT NULL DEFAULT 0,
    read_iops       INTEGER  NOT NULL DEFAULT 0,
    write_iops      INTEGER  NOT NULL DEFAULT 0,
    read_bytes_sec  INTEGER  NOT NULL DEFAULT 0,
    write_bytes_sec INTEGER  NOT NULL DEFAULT 0,
    CONSTRAINT vm_disks_pkey PRIMARY KEY (vm_id, volume_id),
    CONSTRAINT vm_disks_vm_id_fkey FOREIGN KEY (vm_id) REFERENCES vms (id) ON DELETE CASCADE,
    CONSTRAINT vm_disks_volume_id_fkey FOREIGN KEY (volume_id) REFERENCES volumes (id) ON DELETE RESTRICT
) STRICT;
CREATE INDEX vm_disks_volume_id_idx ON vm_disks (volume_id);

CREATE TABLE vm_cdroms (
    vm_id      TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    image_id   TEXT    NOT NULL,
    boot_order INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT vm_cdroms_pkey PRIMARY KEY (vm_id, image_id),
    CONSTRAINT vm_cdroms_vm_id_fkey FOREIGN KEY (vm_id) REFERENCES vms (id) ON DELETE CASCADE,
    CONSTRAINT vm_cdroms_image_id_fkey FOREIGN KEY (image_id) REFERENCES images (id) ON DELETE RESTRICT
) STRICT;
CREATE INDEX vm_cdroms_image_id_idx ON vm_cdroms (image_id);

CREATE TABLE vm_interfaces (
    vm_id  TEXT    NOT NULL,
    seq    INTEGER NOT NULL,
    type   TEXT    NOT NULL DEFAULT '',
    source TEXT    NOT NULL DEFAULT '',
    model  TEXT    NOT NULL DEFAULT '',
    mac    TEXT    NOT NULL,
    CONSTRAINT vm_interfaces_pkey PRIMARY KEY (vm_id, seq),
    CONSTRAINT vm_interfaces_vm_id_fkey FOREIGN KEY (vm_id) REFERENCES vms (id) ON DELETE CASCADE,
    CONSTRAINT vm_interfaces_mac_key UNIQUE (mac)
) STRICT;
