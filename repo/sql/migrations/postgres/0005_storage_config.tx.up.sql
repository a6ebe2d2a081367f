-- openvair schema version 5: a storage is a type plus its backend's configuration (config) and state (state),
-- JSON objects that only the backend reads. The localfs and nfs columns are folded in: the nfs object becomes
-- the config as it is; the localfs object becomes the config without fs_uuid and real_path, which go, with
-- created_dir, to the state.
ALTER TABLE storages ADD COLUMN config text NOT NULL DEFAULT '{}';
ALTER TABLE storages ADD COLUMN state text;
UPDATE storages SET
    config = ((localfs::jsonb) - 'fs_uuid' - 'real_path' - 'created_dir')::text,
    state = jsonb_strip_nulls(jsonb_build_object(
        'real_path', localfs::jsonb -> 'real_path',
        'fs_uuid', localfs::jsonb -> 'fs_uuid',
        'created_dir', CASE WHEN created_dir THEN 'true'::jsonb END))::text
WHERE localfs IS NOT NULL;
UPDATE storages SET config = nfs WHERE nfs IS NOT NULL;
ALTER TABLE storages DROP COLUMN localfs, DROP COLUMN nfs, DROP COLUMN created_dir;
