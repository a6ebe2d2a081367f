-- openvair schema version 3: whether openvair created a storage's directory (directory mode). Deleting the
-- storage removes the directory, when empty, only then; storages recorded before keep their directories.
ALTER TABLE storages ADD COLUMN created_dir INTEGER NOT NULL DEFAULT 0;
