-- Labels: key → value pairs an operator sets on a device to find groups of
-- devices (the keys and values are checked by the API, lib/device-labels.ts).
ALTER TABLE devices ADD COLUMN labels jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(labels) = 'object');

-- "A tenant's devices carrying these labels" (devices/device-repository.ts):
-- the labels are indexed under the tenant's id, {"<tenant>": {labels}}, so the
-- planner's estimate of how many devices match is the tenant's own. With an
-- index of the labels alone, a label common in one tenant looked common in
-- every tenant: a tenant without it walked all its devices in creation order
-- looking for one (0.8 s at a million devices), where this index answers at
-- once. A label most of the tenant's devices carry is still read in creation
-- order through devices_tenant_page, stopping after one page.
CREATE INDEX devices_labels ON devices USING gin ((jsonb_insert('{}', ARRAY[tenant_id], labels)) jsonb_path_ops);
