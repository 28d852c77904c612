-- Webhook deliveries: the outbox. A change that emits an event inserts one row per active
-- subscription that wants it, in the change's own transaction; the delivery loop claims due
-- rows, sends them, records each attempt and schedules the next. Nothing about a delivery
-- lives only in memory, so a restart or a crash loses none, and several replicas can
-- deliver side by side (a claim is a conditional UPDATE).

CREATE TABLE webhook_deliveries (
    -- Also the `webhook-id` header (Standard Webhooks), the same for every attempt.
    id               TEXT PRIMARY KEY,
    -- No foreign keys: a workspace's deletion removes its subscriptions in the transaction
    -- that emits `workspace.deleted`, whose deliveries must still go out. Deleting one
    -- subscription deletes its deliveries explicitly.
    webhook_id       TEXT NOT NULL,
    workspace_id     TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    -- The body, exactly as sent and signed: {"type", "timestamp", "data"}.
    payload          TEXT NOT NULL,
    -- pending (waits for next_attempt_at), delivering (claimed until next_attempt_at, then
    -- claimable again: the claimant died), succeeded, failed.
    state            TEXT NOT NULL,
    -- Attempts ever made (numbers the attempts), and in the current round (drives the
    -- schedule; a manual redelivery starts a new round).
    attempts         BIGINT NOT NULL DEFAULT 0,
    round_attempts   BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  TEXT,
    -- Random per claim: a claimant records its outcome only while the claim is its own.
    claim            TEXT,
    last_status      INTEGER,
    last_error       TEXT,
    -- Set only when the subscription goes away with its workspace: where the remaining
    -- deliveries go, and the secret that signs them.
    target_url       TEXT,
    target_secret    TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
-- The loop's queries: due rows by state and time.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
-- Listing a subscription's deliveries, by id.
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id);
CREATE INDEX webhook_deliveries_by_workspace ON webhook_deliveries (workspace_id, state);

CREATE TABLE webhook_attempts (
    delivery_id   TEXT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    -- 1, 2, 3 … across rounds. A gap means an attempt whose claimant died before recording.
    number        BIGINT NOT NULL,
    attempted_at  TEXT NOT NULL,
    -- The receiver's HTTP status; NULL when there was none (refused, unreachable, timeout).
    status        INTEGER,
    latency_ms    BIGINT NOT NULL,
    error         TEXT,
    PRIMARY KEY (delivery_id, number)
);

-- mock.validation_failed and mock.rate_limited come from analytics ingest, possibly many a
-- second: at most one event per API and type a minute. The minute (Unix minutes) last used.
CREATE TABLE webhook_event_windows (
    api_id      TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    minute      BIGINT NOT NULL,
    PRIMARY KEY (api_id, event_type)
);
