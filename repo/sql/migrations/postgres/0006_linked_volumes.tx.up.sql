-- openvair schema version 6: linked volumes. A linked volume reads its unallocated clusters from a backing
-- file, a volume or an image on the same storage, which cannot be deleted while it is used.
ALTER TABLE volumes ADD COLUMN backing_volume_id uuid REFERENCES volumes (id) ON DELETE RESTRICT,
    ADD COLUMN backing_image_id uuid REFERENCES images (id) ON DELETE RESTRICT;
CREATE INDEX volumes_backing_volume_idx ON volumes (backing_volume_id) WHERE backing_volume_id IS NOT NULL;
CREATE INDEX volumes_backing_image_idx ON volumes (backing_image_id) WHERE backing_image_id IS NOT NULL;
