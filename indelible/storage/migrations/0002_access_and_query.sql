-- Indelible SQLite schema, version 2: API keys, per-log settings, related-record references
-- and the indexes the query routes use.

-- API keys: only a SHA-256 of each secret is kept. Revocation sets revoked_at_ms; a key row
-- is never deleted, so every key that ever existed can be named in the audit trail.
CREATE TABLE api_keys (
    key_id        TEXT    PRIMARY KEY,
    log_id        INTEGER NOT NULL REFERENCES logs (log_id),
    name          TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    secret_hash   BLOB    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    created_by    TEXT,
    revoked_at_ms INTEGER
);
CREATE INDEX api_keys_log ON api_keys (log_id, created_at_ms);
CREATE TRIGGER api_keys_no_delete BEFORE DELETE ON api_keys
BEGIN SELECT RAISE(ABORT, 'indelible: API keys are revoked, never deleted'); END;
CREATE TRIGGER api_keys_only_revoke BEFORE UPDATE ON api_keys
WHEN NEW.key_id IS NOT OLD.key_id OR NEW.log_id IS NOT OLD.log_id OR NEW.role IS NOT OLD.role
  OR NEW.secret_hash IS NOT OLD.secret_hash OR NEW.name IS NOT OLD.name
  OR OLD.revoked_at_ms IS NOT NULL
BEGIN SELECT RAISE(ABORT, 'indelible: an API key can only be revoked, once'); END;

-- Settings an admin may change at run time, per log (tenant).
CREATE TABLE log_settings (
    log_id INTEGER NOT NULL REFERENCES logs (log_id),
    name   TEXT    NOT NULL,
    value  TEXT    NOT NULL,
    PRIMARY KEY (log_id, name)
);

-- Lookup hints for `related` records (an entry's target is in entries itself); verify
-- checks them against the leaves like every other hint.
CREATE TABLE entry_refs (
    log_id   INTEGER NOT NULL,
    ref_type TEXT    NOT NULL,
    ref_id   TEXT    NOT NULL,
    seq      INTEGER NOT NULL,
    PRIMARY KEY (log_id, ref_type, ref_id, seq)
) WITHOUT ROWID;
CREATE TRIGGER entry_refs_no_update BEFORE UPDATE ON entry_refs
BEGIN SELECT RAISE(ABORT, 'indelible: entry references are append-only (UPDATE refused)'); END;
CREATE TRIGGER entry_refs_no_delete BEFORE DELETE ON entry_refs
BEGIN SELECT RAISE(ABORT, 'indelible: entry references are append-only (DELETE refused)'); END;

CREATE INDEX entries_actor ON entries (log_id, actor_id, seq);
CREATE INDEX entries_event_type ON entries (log_id, event_type, seq);
CREATE INDEX entries_occurred ON entries (log_id, occurred_at_ms, seq);
CREATE INDEX entries_received ON entries (log_id, received_at_ms, seq);
CREATE INDEX entries_request ON entries (log_id, request_id, seq) WHERE request_id IS NOT NULL;
CREATE INDEX entries_ip ON entries (log_id, ip, seq) WHERE ip IS NOT NULL;
