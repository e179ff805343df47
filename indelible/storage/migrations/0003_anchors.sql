-- Indelible SQLite schema, version 3: anchors, the evidence held outside about checkpoints.
--
-- kind = 'rfc3161': authority is the time-stamping authority's URL and evidence the DER
--   TimeStampResp it returned for the checkpoint note of that size.
-- kind = 'cosignature': authority is the witness's key id (name+hash) and evidence the
--   cosignature line (UTF-8) it returned for that checkpoint (C2SP tlog-cosignature).
-- Anchors are append-only, like the checkpoints they are about.
CREATE TABLE anchors (
    log_id        INTEGER NOT NULL REFERENCES logs (log_id),
    size          INTEGER NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('rfc3161', 'cosignature')),
    authority     TEXT    NOT NULL,
    evidence      BLOB    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (log_id, size, kind, authority),
    FOREIGN KEY (log_id, size) REFERENCES checkpoints (log_id, size)
);
CREATE INDEX anchors_by_authority ON anchors (log_id, kind, authority, size);
CREATE TRIGGER anchors_no_update BEFORE UPDATE ON anchors
BEGIN SELECT RAISE(ABORT, 'indelible: anchors are append-only (UPDATE refused)'); END;
CREATE TRIGGER anchors_no_delete BEFORE DELETE ON anchors
BEGIN SELECT RAISE(ABORT, 'indelible: anchors are append-only (DELETE refused)'); END;
