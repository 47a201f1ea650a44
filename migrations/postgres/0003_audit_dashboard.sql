-- 0003_audit_dashboard: the audit log in the shape the admin dashboard reads
-- (CONTRACT §7), with indexes for its filters.
--   resource_type  the action's first word: user, deployment, storage, cache
--   actor_email    recorded with the row, so it outlives the actor's account
--   ip_address     the client address of the request that made the change

ALTER TABLE admin_audit_log
	ADD COLUMN resource_type text GENERATED ALWAYS AS (split_part(action, '.', 1)) STORED,
	ADD COLUMN actor_email text,
	ADD COLUMN ip_address text;

UPDATE admin_audit_log a SET actor_email = u.email FROM users u WHERE u.id = a.actor_id;

CREATE INDEX admin_audit_log_resource_type_idx ON admin_audit_log (resource_type, created_at DESC);
CREATE INDEX admin_audit_log_actor_id_idx ON admin_audit_log (actor_id, created_at DESC);
CREATE INDEX admin_audit_log_actor_email_idx ON admin_audit_log (lower(actor_email), created_at DESC);
