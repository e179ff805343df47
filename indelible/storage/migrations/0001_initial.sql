-- Indelible SQLite schema, version 1.
-- entries and checkpoints are append-only: triggers abort UPDATE and DELETE.
-- tiles are derived from the leaves (C2SP tlog-tiles); the partial tile on the right edge
-- of each level is rewritten as the tree grows, and `indelible verify` recomputes them all.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE logs (
    log_id        INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    origin        TEXT NOT NULL UNIQUE,
    vkey          TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE entries (
    log_id         INTEGER NOT NULL REFERENCES logs (log_id),
    seq            INTEGER NOT NULL,
    leaf           BLOB    NOT NULL,
    leaf_hash      BLOB    NOT NULL,
    -- lookup hints only: verify checks each against the leaf
    event_id       TEXT    NOT NULL,
    event_type     TEXT    NOT NULL,
    occurred_at_ms INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL,
    actor_id       TEXT    NOT NULL,
    actor_type     TEXT    NOT NULL,
    target_type    TEXT,
    target_id      TEXT,
    action         TEXT    NOT NULL,
    outcome        TEXT    NOT NULL,
    request_id     TEXT,
    ip             TEXT
);
CREATE UNIQUE INDEX entries_seq ON entries (log_id, seq);
CREATE UNIQUE INDEX entries_event_id ON entries (log_id, event_id);
CREATE INDEX entries_target ON entries (log_id, target_type, target_id, seq);

CREATE TABLE personal_values (
    log_id  INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    pointer TEXT    NOT NULL,
    salt    BLOB    NOT NULL,
    value   BLOB    NOT NULL,
    PRIMARY KEY (log_id, seq, pointer)
);

CREATE TABLE tiles (
    log_id INTEGER NOT NULL,
    level  INTEGER NOT NULL,
    idx    INTEGER NOT NULL,
    hashes BLOB    NOT NULL
);
CREATE UNIQUE INDEX tiles_key ON tiles (log_id, level, idx);

CREATE TABLE checkpoints (
    log_id        INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    root          BLOB    NOT NULL,
    note          TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (log_id, size)
);

CREATE TRIGGER entries_no_update BEFORE UPDATE ON entries
BEGIN SELECT RAISE(ABORT, 'indelible: entries are append-only (UPDATE refused)'); END;
CREATE TRIGGER entries_no_delete BEFORE DELETE ON entries
BEGIN SELECT RAISE(ABORT, 'indelible: entries are append-only (DELETE refused)'); END;
CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'indelible: checkpoints are append-only (UPDATE refused)'); END;
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'indelible: checkpoints are append-only (DELETE refused)'); END;
-- personal values may be erased (deleted) but never rewritten
CREATE TRIGGER personal_values_no_update BEFORE UPDATE ON personal_values
BEGIN SELECT RAISE(ABORT, 'indelible: personal values are never rewritten (UPDATE refused)'); END;
