-- openvair schema version 5: a storage is a type plus its backend's configuration (config) and state (state),
-- JSON objects that only the backend reads. The localfs and nfs columns are folded in: the nfs object becomes
-- the config as it is; the localfs object becomes the config without fs_uuid and real_path, which go, with
-- created_dir, to the state.
ALTER TABLE storages ADD COLUMN config TEXT NOT NULL DEFAULT '{}';
ALTER TABLE storages ADD COLUMN state TEXT;
UPDATE storages SET
    config = json_remove(localfs, '$.fs_uuid', '$.real_path', '$.created_dir'),
    state = json_patch('{}', json_object(
        'real_path', json_extract(localfs, '$.real_path'),
        'fs_uuid', json_extract(localfs, '$.fs_uuid'),
        'created_dir', CASE WHEN created_dir <> 0 THEN json('true') END))
WHERE localfs IS NOT NULL;
UPDATE storages SET config = json(nfs) WHERE nfs IS NOT NULL;
ALTER TABLE storages DROP COLUMN localfs;
ALTER TABLE storages DROP COLUMN nfs;
ALTER TABLE storages DROP COLUMN created_dir;
