-- openvair schema version 1 (PostgreSQL). Timestamps are Unix nanoseconds (UTC), NULL for the zero time;
-- storage specs are JSON documents; every entity carries a version for optimistic concurrency.

CREATE TABLE storages (
    id            uuid    NOT NULL,
    name          text    NOT NULL,
    description   text    NOT NULL DEFAULT '',
    type          text    NOT NULL,
    localfs       text,
    nfs           text,
    location      text    NOT NULL,
    status        text    NOT NULL,
    status_reason text    NOT NULL DEFAULT '',
    capacity      bigint  NOT NULL DEFAULT 0,
    available     bigint  NOT NULL DEFAULT 0,
    mount_point   text    NOT NULL DEFAULT '',
    created_at    bigint,
    updated_at    bigint,
    version       bigint  NOT NULL,
    CONSTRAINT storages_pkey PRIMARY KEY (id),
    CONSTRAINT storages_name_key UNIQUE (name),
    CONSTRAINT storages_location_key UNIQUE (location)
);
CREATE INDEX storages_status_id_idx ON storages (status, id);
CREATE INDEX storages_type_id_idx ON storages (type, id);

CREATE TABLE volumes (
    id            uuid    NOT NULL,
    name          text    NOT NULL,
    description   text    NOT NULL DEFAULT '',
    storage_id    uuid    NOT NULL,
    format        text    NOT NULL,
    size          bigint  NOT NULL,
    allocated     bigint  NOT NULL DEFAULT 0,
    read_only     boolean NOT NULL DEFAULT false,
    shareable     boolean NOT NULL DEFAULT false,
    status        text    NOT NULL,
    status_reason text    NOT NULL DEFAULT '',
    created_at    bigint,
    updated_at    bigint,
    version       bigint  NOT NULL,
    CONSTRAINT volumes_pkey PRIMARY KEY (id),
    CONSTRAINT volumes_storage_id_fkey FOREIGN KEY (storage_id) REFERENCES storages (id) ON DELETE RESTRICT,
    CONSTRAINT volumes_storage_id_name_key UNIQUE (storage_id, name)
);
CREATE INDEX volumes_storage_id_id_idx ON volumes (storage_id, id);
CREATE INDEX volumes_status_id_idx ON volumes (status, id);
CREATE INDEX volumes_name_id_idx ON volumes (name, id);

CREATE TABLE images (
    id            uuid    NOT NULL,
    name          text    NOT NULL,
    description   text    NOT NULL DEFAULT '',
    storage_id    uuid    NOT NULL,
    format        text    NOT NULL,
    size          bigint  NOT NULL,
    sha256        text    NOT NULL DEFAULT '',
    status        text    NOT NULL,
    status_reason text    NOT NULL DEFAULT '',
    created_at    bigint,
    updated_at    bigint,
    version       bigint  NOT NULL,
    CONSTRAINT images_pkey PRIMARY KEY (id),
    CONSTRAINT images_storage_id_fkey FOREIGN KEY (storage_id) REFERENCES storages (id) ON DELETE RESTRICT,
    CONSTRAINT images_storage_id_name_key UNIQUE (storage_id, name)
);
CREATE INDEX images_storage_id_id_idx ON images (storage_id, id);
CREATE INDEX images_status_id_idx ON images (status, id);
CREATE INDEX images_name_id_idx ON images (name, id);

CREATE TABLE vms (
    id                uuid    NOT NULL,
    name              text    NOT NULL,
    description       text    NOT NULL DEFAULT '',
    cpu_sockets       integer NOT NULL,
    cpu_cores         integer NOT NULL,
    cpu_threads       integer NOT NULL,
    cpu_mode          text    NOT NULL DEFAULT '',
    cpu_model         text    NOT NULL DEFAULT '',
    memory_bytes      bigint  NOT NULL,
    firmware          text    NOT NULL DEFAULT '',
    machine_type      text    NOT NULL DEFAULT '',
    boot              text    NOT NULL DEFAULT '[]',
    graphics_type     text    NOT NULL DEFAULT '',
    graphics_listen   text    NOT NULL DEFAULT '',
    graphics_password text    NOT NULL DEFAULT '',
    status            text    NOT NULL,
    status_reason     text    NOT NULL DEFAULT '',
    power_state       text    NOT NULL DEFAULT '',
    created_at        bigint,
    updated_at        bigint,
    version           bigint  NOT NULL,
    CONSTRAINT vms_pkey PRIMARY KEY (id),
    CONSTRAINT vms_name_key UNIQUE (name)
);
CREATE INDEX vms_status_id_idx ON vms (status, id);
CREATE INDEX vms_power_state_id_idx ON vms (power_state, id);

CREATE TABLE vm_disks (
    vm_id           uuid    NOT NULL,
    seq             integer NOT NULL,
    volume_id       uuid    NOT NULL,
    bus             text    NOT NULL DEFAULT '',
    boot_order      integer NOT NULL DEFAULT 0,
    read_iops       bigint  NOT NULL DEFAULT 0,
    write_iops      bigint  NOT NULL DEFAULT 0,
    read_bytes_sec  bigint  NOT NULL DEFAULT 0,
    write_bytes_sec bigint  NOT NULL DEFAULT 0,
    CONSTRAINT vm_disks_pkey PRIMARY KEY (vm_id, volume_id),
    CONSTRAINT vm_disks_vm_id_fkey FOREIGN KEY (vm_id) REFERENCES vms (id) ON DELETE CASCADE,
    CONSTRAINT vm_disks_volume_id_fkey FOREIGN KEY (volume_id) REFERENCES volumes (id) ON DELETE RESTRICT
);
CREATE INDEX vm_disks_volume_id_idx ON vm_disks (volume_id);

CREATE TABLE vm_cdroms (
    vm_id      uuid    NOT NULL,
    seq        integer NOT NULL,
    image_id   uuid    NOT NULL,
    boot_order integer NOT NULL DEFAULT 0,
    CONSTRAINT vm_cdroms_pkey PRIMARY KEY (vm_id, image_id),
    CONSTRAINT vm_cdroms_vm_id_fkey FOREIGN KEY (vm_id) REFERENCES vms (id) ON DELETE CASCADE,
    CONSTRAINT vm_cdroms_image_id_fkey FOREIGN KEY (image_id) REFERENCES images (id) ON DELETE RESTRICT
);
CREATE INDEX vm_cdroms_image_id_idx ON vm_cdroms (image_id);

CREATE TABLE vm_interfaces (
    vm_id  uuid    NOT NULL,
    seq    integer NOT NULL,
    type   text    NOT NULL DEFAULT '',
    source text    NOT NULL DEFAULT '',
    model  text    NOT NULL DEFAULT '',
    mac    text    NOT NULL,
    CONSTRAINT vm_interfaces_pkey PRIMARY KEY (vm_id, seq),
    CONSTRAINT vm_interfaces_vm_id_fkey FOREIGN KEY (vm_id) REFERENCES vms (id) ON DELETE CASCADE,
    CONSTRAINT vm_interfaces_mac_key UNIQUE (mac)
);
