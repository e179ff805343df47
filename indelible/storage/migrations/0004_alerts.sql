-- Indelible SQLite schema, version 4: what the alert engine keeps per log.
--
-- alert_state: the follower's cursor (key 'cursor': the next seq to evaluate) and the rules'
--   remembered state (first-seen values, de-duplication marks, rate limits, absence days),
--   written in one transaction with the cursor, so a restart neither repeats nor skips.
-- alert_deliveries: one row per alert and notification sink; pending rows are retried with
--   backoff until delivered or dead (a dead letter, kept and listed). Rows are never deleted.
CREATE TABLE alert_state (
    log_id INTEGER NOT NULL REFERENCES logs (log_id),
    key    TEXT    NOT NULL,
    value  TEXT    NOT NULL,
    PRIMARY KEY (log_id, key)
) WITHOUT ROWID;

CREATE TABLE alert_deliveries (
    log_id          INTEGER NOT NULL REFERENCES logs (log_id),
    alert_id        TEXT    NOT NULL,
    sink            TEXT    NOT NULL,
    seq             INTEGER NOT NULL,
    payload         BLOB    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    last_error      TEXT,
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (log_id, alert_id, sink)
);
CREATE INDEX alert_deliveries_due ON alert_deliveries (log_id, status, next_attempt_ms);
CREATE TRIGGER alert_deliveries_no_delete BEFORE DELETE ON alert_deliveries
BEGIN SELECT RAISE(ABORT, 'indelible: alert deliveries are kept (DELETE refused)'); END;
