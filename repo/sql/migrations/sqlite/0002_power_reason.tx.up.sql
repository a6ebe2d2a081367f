-- openvair schema version 2: why a VM is in its power state, and when the hypervisor last confirmed it.
ALTER TABLE vms ADD COLUMN power_state_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE vms ADD COLUMN power_state_observed_at INTEGER;
