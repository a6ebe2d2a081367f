-- openvair schema version 7: a VM's cloud-init configuration and where its seed ISO is, as one JSON
-- document (NULL when the VM has none).
ALTER TABLE vms ADD COLUMN cloud_init TEXT;
