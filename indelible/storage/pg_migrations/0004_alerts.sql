-- Indelible PostgreSQL schema, version 4: what the alert engine keeps per log (as SQLite's
-- migration 4). alert_state holds the follower's cursor and the rules' remembered state,
-- written in one transaction with the cursor; alert_deliveries one row per alert and sink,
-- never deleted. Row-level security is forced, like every per-log table.

CREATE TABLE alert_state (
    log_id bigint NOT NULL REFERENCES logs (log_id),
    key    text COLLATE "C" NOT NULL,
    value  text COLLATE "C" NOT NULL,
    PRIMARY KEY (log_id, key)
);

CREATE TABLE alert_deliveries (
    log_id          bigint NOT NULL REFERENCES logs (log_id),
    alert_id        text COLLATE "C" NOT NULL,
    sink            text COLLATE "C" NOT NULL,
    seq             bigint NOT NULL,
    payload         bytea  NOT NULL,
    status          text COLLATE "C" NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        integer NOT NULL,
    next_attempt_ms bigint NOT NULL,
    last_error      text COLLATE "C",
    created_at_ms   bigint NOT NULL,
    updated_at_ms   bigint NOT NULL,
    PRIMARY KEY (log_id, alert_id, sink)
);
CREATE INDEX alert_deliveries_due ON alert_deliveries (log_id, status, next_attempt_ms);

CREATE TRIGGER alert_deliveries_no_delete BEFORE DELETE ON alert_deliveries
    FOR EACH ROW EXECUTE FUNCTION refuse_change('alert deliveries are kept');
CREATE TRIGGER alert_deliveries_no_truncate BEFORE TRUNCATE ON alert_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change('alert deliveries are kept');

ALTER TABLE alert_state ENABLE ROW LEVEL SECURITY;
ALTER TABLE alert_state FORCE ROW LEVEL SECURITY;
CREATE POLICY per_log ON alert_state
    USING (log_id = current_log()) WITH CHECK (log_id = current_log());
ALTER TABLE alert_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE alert_deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY per_log ON alert_deliveries
    USING (log_id = current_log()) WITH CHECK (log_id = current_log());
