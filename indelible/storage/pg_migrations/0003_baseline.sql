-- Indelible PostgreSQL schema, version 3 (the same tables, in the same version, as the SQLite
-- store after its migrations 1 to 3). Everything lives in the schema `indelible`.
--
-- Append-only at the database level: triggers refuse UPDATE, DELETE and TRUNCATE of entries,
-- checkpoints, anchors and entry references, even for the table owner (only a superuser, or
-- the owner dropping the triggers, gets past them; `indelible verify` catches what they then
-- change). Row-level security is FORCED on every per-log table: a session sees and writes the
-- rows of the log named by the setting `indelible.log_id`, and of no other, owner included.
-- Text columns use the "C" collation: they compare bytewise, as SQLite's do.

CREATE TABLE meta (
    key   text COLLATE "C" PRIMARY KEY,
    value text COLLATE "C" NOT NULL
);

CREATE TABLE logs (
    log_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text COLLATE "C"   NOT NULL UNIQUE,
    origin        text COLLATE "C"   NOT NULL UNIQUE,
    vkey          text COLLATE "C"   NOT NULL,
    created_at_ms bigint NOT NULL
);

-- entries.log_id has no foreign key: its check (a row lock on logs per inserted row) cost a
-- quarter of the statement's time in batches of 1,000 (measured with EXPLAIN ANALYZE), and
-- the forced row-level security already holds every row to the one log its session names.
CREATE TABLE entries (
    log_id         bigint NOT NULL,
    seq            bigint NOT NULL,
    leaf           bytea  NOT NULL,
    leaf_hash      bytea  NOT NULL,
    -- lookup hints only: verify checks each against the leaf
    event_id       text COLLATE "C"   NOT NULL,
    event_type     text COLLATE "C"   NOT NULL,
    occurred_at_ms bigint NOT NULL,
    received_at_ms bigint NOT NULL,
    actor_id       text COLLATE "C"   NOT NULL,
    actor_type     text COLLATE "C"   NOT NULL,
    target_type    text COLLATE "C",
    target_id      text COLLATE "C",
    action         text COLLATE "C"   NOT NULL,
    outcome        text COLLATE "C"   NOT NULL,
    request_id     text COLLATE "C",
    ip             text COLLATE "C",
    CONSTRAINT entries_seq PRIMARY KEY (log_id, seq)
);
CREATE UNIQUE INDEX entries_event_id ON entries (log_id, event_id);
CREATE INDEX entries_target ON entries (log_id, target_type, target_id, seq);
CREATE INDEX entries_actor ON entries (log_id, actor_id, seq);
CREATE INDEX entries_event_type ON entries (log_id, event_type, seq);
CREATE INDEX entries_occurred ON entries (log_id, occurred_at_ms, seq);
CREATE INDEX entries_received ON entries (log_id, received_at_ms, seq);
CREATE INDEX entries_request ON entries (log_id, request_id, seq) WHERE request_id IS NOT NULL;
CREATE INDEX entries_ip ON entries (log_id, ip, seq) WHERE ip IS NOT NULL;

CREATE TABLE personal_values (
    log_id  bigint NOT NULL,
    seq     bigint NOT NULL,
    pointer text COLLATE "C"   NOT NULL,
    salt    bytea  NOT NULL,
    value   bytea  NOT NULL,
    PRIMARY KEY (log_id, seq, pointer)
);

CREATE TABLE tiles (
    log_id bigint  NOT NULL,
    level  integer NOT NULL,
    idx    bigint  NOT NULL,
    hashes bytea   NOT NULL,
    PRIMARY KEY (log_id, level, idx)
);

CREATE TABLE checkpoints (
    log_id        bigint NOT NULL REFERENCES logs (log_id),
    size          bigint NOT NULL,
    root          bytea  NOT NULL,
    note          text COLLATE "C"   NOT NULL,
    created_at_ms bigint NOT NULL,
    PRIMARY KEY (log_id, size)
);

-- API keys: only a SHA-256 of each secret is kept; revoked once, never deleted.
CREATE TABLE api_keys (
    key_id        text COLLATE "C"   PRIMARY KEY,
    log_id        bigint NOT NULL REFERENCES logs (log_id),
    name          text COLLATE "C"   NOT NULL,
    role          text COLLATE "C"   NOT NULL,
    secret_hash   bytea  NOT NULL,
    created_at_ms bigint NOT NULL,
    created_by    text COLLATE "C",
    revoked_at_ms bigint
);
CREATE INDEX api_keys_log ON api_keys (log_id, created_at_ms);

CREATE TABLE log_settings (
    log_id bigint NOT NULL REFERENCES logs (log_id),
    name   text COLLATE "C"   NOT NULL,
    value  text COLLATE "C"   NOT NULL,
    PRIMARY KEY (log_id, name)
);

CREATE TABLE entry_refs (
    log_id   bigint NOT NULL,
    ref_type text COLLATE "C"   NOT NULL,
    ref_id   text COLLATE "C"   NOT NULL,
    seq      bigint NOT NULL,
    PRIMARY KEY (log_id, ref_type, ref_id, seq)
);

CREATE TABLE anchors (
    log_id        bigint NOT NULL,
    size          bigint NOT NULL,
    kind          text COLLATE "C"   NOT NULL CHECK (kind IN ('rfc3161', 'cosignature')),
    authority     text COLLATE "C"   NOT NULL,
    evidence      bytea  NOT NULL,
    created_at_ms bigint NOT NULL,
    PRIMARY KEY (log_id, size, kind, authority),
    FOREIGN KEY (log_id, size) REFERENCES checkpoints (log_id, size)
);
CREATE INDEX anchors_by_authority ON anchors (log_id, kind, authority, size);

-- ---- append-only, enforced by the database

CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'indelible: % (% refused)', TG_ARGV[0], TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries
    FOR EACH ROW EXECUTE FUNCTION refuse_change('entries are append-only');
CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON entries
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change('entries are append-only');
CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION refuse_change('checkpoints are append-only');
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change('checkpoints are append-only');
CREATE TRIGGER anchors_append_only BEFORE UPDATE OR DELETE ON anchors
    FOR EACH ROW EXECUTE FUNCTION refuse_change('anchors are append-only');
CREATE TRIGGER anchors_no_truncate BEFORE TRUNCATE ON anchors
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change('anchors are append-only');
CREATE TRIGGER entry_refs_append_only BEFORE UPDATE OR DELETE ON entry_refs
    FOR EACH ROW EXECUTE FUNCTION refuse_change('entry references are append-only');
CREATE TRIGGER entry_refs_no_truncate BEFORE TRUNCATE ON entry_refs
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change('entry references are append-only');
-- personal values may be erased (deleted, one by one) but never rewritten
CREATE TRIGGER personal_values_no_update BEFORE UPDATE ON personal_values
    FOR EACH ROW EXECUTE FUNCTION refuse_change('personal values are never rewritten');
CREATE TRIGGER personal_values_no_truncate BEFORE TRUNCATE ON personal_values
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change('personal values are erased one by one');
CREATE TRIGGER api_keys_no_delete BEFORE DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION refuse_change('API keys are revoked, never deleted');
CREATE TRIGGER api_keys_no_truncate BEFORE TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change('API keys are revoked, never deleted');

CREATE FUNCTION api_key_only_revoke() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.key_id IS DISTINCT FROM OLD.key_id OR NEW.log_id IS DISTINCT FROM OLD.log_id
       OR NEW.role IS DISTINCT FROM OLD.role OR NEW.secret_hash IS DISTINCT FROM OLD.secret_hash
       OR NEW.name IS DISTINCT FROM OLD.name OR NEW.created_at_ms IS DISTINCT FROM OLD.created_at_ms
       OR NEW.created_by IS DISTINCT FROM OLD.created_by OR OLD.revoked_at_ms IS NOT NULL THEN
        RAISE EXCEPTION 'indelible: an API key can only be revoked, once'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER api_keys_only_revoke BEFORE UPDATE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION api_key_only_revoke();

-- ---- the sequencer's guard: one append goes as a single pipelined transaction, which this
-- aborts when the log is not at the size the sequencer expects (another writer moved it)

CREATE FUNCTION expect_size(wanted_log bigint, wanted_size bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    actual bigint;
BEGIN
    SELECT COALESCE(MAX(seq) + 1, 0) INTO actual FROM entries WHERE log_id = wanted_log;
    IF actual <> wanted_size THEN
        RAISE EXCEPTION 'log % has % entries, the sequencer expected %: another writer moved it',
            wanted_log, actual, wanted_size USING ERRCODE = 'IDL01';
    END IF;
END
$$;

-- ---- row-level security per log (tenant), forced for the owner too

CREATE FUNCTION current_log() RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT NULLIF(current_setting('indelible.log_id', true), '')::bigint
$$;

ALTER TABLE entries ENABLE ROW LEVEL SECURITY;
ALTER TABLE entries FORCE ROW LEVEL SECURITY;
CREATE POLICY per_log ON entries USING (log_id = current_log()) WITH CHECK (log_id = current_log());
ALTER TABLE personal_values ENABLE ROW LEVEL SECURITY;
ALTER TABLE personal_values FORCE ROW LEVEL SECURITY;
CREATE POLICY per_log ON personal_values
    USING (log_id = current_log()) WITH CHECK (log_id = current_log());
ALTER TABLE entry_refs ENABLE ROW LEVEL SECURITY;
ALTER TABLE entry_refs FORCE ROW LEVEL SECURITY;
CREATE POLICY per_log ON entry_refs
    USING (log_id = current_log()) WITH CHECK (log_id = current_log());
ALTER TABLE tiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE tiles FORCE ROW LEVEL SECURITY;
CREATE POLICY per_log ON tiles USING (log_id = current_log()) WITH CHECK (log_id = current_log());
ALTER TABLE checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE checkpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY per_log ON checkpoints
    USING (log_id = current_log()) WITH CHECK (log_id = current_log());
ALTER TABLE anchors ENABLE ROW LEVEL SECURITY;
ALTER TABLE anchors FORCE ROW LEVEL SECURITY;
CREATE POLICY per_log ON anchors USING (log_id = current_log()) WITH CHECK (log_id = current_log());
ALTER TABLE log_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE log_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY per_log ON log_settings
    USING (log_id = current_log()) WITH CHECK (log_id = current_log());
