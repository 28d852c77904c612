-- Analytics events: one row per mock request, sent by the edge (and later the native
-- runtime) in batches to POST /internal/v1/analytics. The id is the event's own UUID:
-- deliveries are at least once, and a redelivered event hits the primary key and is skipped
-- (INSERT ... ON CONFLICT (id) DO NOTHING), so nothing counts twice.
-- Flags are INTEGER 0/1: sqlx's Any driver reads no SQLite BOOLEAN.
-- Times are integer milliseconds since the Unix epoch, so both databases can bucket them with
-- integer arithmetic.

CREATE TABLE analytics_events (
    id                  TEXT PRIMARY KEY,
    request_id          TEXT NOT NULL,
    occurred_at_ms      BIGINT NOT NULL,
    received_at_ms      BIGINT NOT NULL,
    source              TEXT NOT NULL,
    -- No foreign keys: events outlive the APIs they describe, and an event may arrive for
    -- an API the control plane deleted meanwhile.
    workspace_id        TEXT NOT NULL,
    api_id              TEXT NOT NULL,
    api_slug            TEXT NOT NULL,
    protocol            TEXT NOT NULL,
    endpoint_method     TEXT,
    endpoint_pattern    TEXT,
    method              TEXT NOT NULL,
    path                TEXT NOT NULL,
    status              INTEGER NOT NULL,
    latency_ms          BIGINT NOT NULL,
    request_bytes       BIGINT NOT NULL,
    response_bytes      BIGINT NOT NULL,
    country             TEXT,
    city                TEXT,
    colo                TEXT,
    proxied             INTEGER NOT NULL,
    deduplicated        INTEGER NOT NULL,
    cache               TEXT NOT NULL,
    validation_failed   INTEGER NOT NULL,
    near_miss           TEXT,
    snapshot_source     TEXT
);
-- Queries go by API and time; retention deletes by time.
CREATE INDEX analytics_events_by_api_time ON analytics_events (api_id, occurred_at_ms);
CREATE INDEX analytics_events_by_time ON analytics_events (occurred_at_ms);
