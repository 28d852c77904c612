-- Analytics by the minute: what the queries read (GET /api/v1/apis/{api}/analytics).
-- One row per API, minute, source, endpoint, status and country, with everything the
-- queries answer kept as sums, maxima and cumulative latency counts, so that any bucket of
-- whole minutes (minute, hour, day) and any grouping by those keys is a SUM over rows.
--
-- Why: the native runtime answers tens of thousands of requests a second; a row per
-- request cost more than answering it. It now adds each request to an in-memory tally and
-- writes the tally once a second (analytics::Tally). The edge's events still arrive one by
-- one and are still stored in analytics_events, whose primary key makes ingest idempotent;
-- each event new to it is added here in the same transaction, so both stay in step.
--
-- Cumulative latency counts: latency_le_N counts requests that took at most N ms. Sums of
-- cumulative counts are the cumulative counts of the union, which percentiles come from.
-- No endpoint is '-', no country '-' (as the queries name them).

CREATE TABLE analytics_rollups (
    api_id              TEXT NOT NULL,
    minute_ms           BIGINT NOT NULL,
    source              TEXT NOT NULL,
    endpoint            TEXT NOT NULL,
    status              INTEGER NOT NULL,
    country             TEXT NOT NULL,
    workspace_id        TEXT NOT NULL,
    requests            BIGINT NOT NULL,
    latency_sum_ms      BIGINT NOT NULL,
    latency_max_ms      BIGINT NOT NULL,
    request_bytes_sum   BIGINT NOT NULL,
    request_bytes_max   BIGINT NOT NULL,
    response_bytes_sum  BIGINT NOT NULL,
    response_bytes_max  BIGINT NOT NULL,
    validation_failures BIGINT NOT NULL DEFAULT 0,
    proxied             BIGINT NOT NULL DEFAULT 0,
    deduplicated        BIGINT NOT NULL DEFAULT 0,
    latency_le_1      BIGINT NOT NULL DEFAULT 0,
    latency_le_2      BIGINT NOT NULL DEFAULT 0,
    latency_le_5      BIGINT NOT NULL DEFAULT 0,
    latency_le_10     BIGINT NOT NULL DEFAULT 0,
    latency_le_25     BIGINT NOT NULL DEFAULT 0,
    latency_le_50     BIGINT NOT NULL DEFAULT 0,
    latency_le_100    BIGINT NOT NULL DEFAULT 0,
    latency_le_250    BIGINT NOT NULL DEFAULT 0,
    latency_le_500    BIGINT NOT NULL DEFAULT 0,
    latency_le_1000   BIGINT NOT NULL DEFAULT 0,
    latency_le_2500   BIGINT NOT NULL DEFAULT 0,
    latency_le_5000   BIGINT NOT NULL DEFAULT 0,
    latency_le_10000  BIGINT NOT NULL DEFAULT 0,
    latency_le_30000  BIGINT NOT NULL DEFAULT 0,
    latency_le_60000  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (api_id, minute_ms, source, endpoint, status, country)
);
-- Queries go by API and time (the primary key's prefix); retention deletes by time.
CREATE INDEX analytics_rollups_by_time ON analytics_rollups (minute_ms);

-- What was stored before this migration.
INSERT INTO analytics_rollups (
    api_id, minute_ms, source, endpoint, status, country, workspace_id, requests,
    latency_sum_ms, latency_max_ms, request_bytes_sum, request_bytes_max,
    response_bytes_sum, response_bytes_max, validation_failures, proxied, deduplicated,
    latency_le_1, latency_le_2, latency_le_5, latency_le_10, latency_le_25, latency_le_50, latency_le_100, latency_le_250, latency_le_500, latency_le_1000, latency_le_2500, latency_le_5000, latency_le_10000, latency_le_30000, latency_le_60000
)
SELECT api_id, (occurred_at_ms / 60000) * 60000, source,
       COALESCE(endpoint_method || ' ' || endpoint_pattern, '-'), status, COALESCE(country, '-'),
       MIN(workspace_id), COUNT(*),
       SUM(latency_ms), MAX(latency_ms), SUM(request_bytes), MAX(request_bytes),
       SUM(response_bytes), MAX(response_bytes),
       SUM(validation_failed), SUM(proxied), SUM(deduplicated),
       SUM(CASE WHEN latency_ms <= 1 THEN 1 ELSE 0 END),
       SUM(CASE WHEN latency_ms <= 2 THEN 1 ELSE 0 END),
       SUM(CASE WHEN latency_ms <= 5 THEN 1 ELSE 0 END),
       SUM(CASE WHEN latency_ms <= 10 THEN 1 ELSE 0 END),
       SUM(CASE WHEN latency_ms <= 25 THEN 1 ELSE 0 END),
       SUM(CASE WHEN latency_ms <= 50 THEN 1 ELSE 0 END),
       SUM(CASE WHEN latency_ms <= 100 THEN 1 ELSE 0 END),
       SUM(CASE WHEN latency_ms <= 250 THEN 1 ELSE 0 END),
       SUM(CASE WHEN latency_ms <= 500 THEN 1 ELSE 0 END),
       SUM(CASE WHEN latency_ms <= 1000 THEN 1 ELSE 0 END),
       SUM(CASE WHEN latency_ms <= 2500 THEN 1 ELSE 0 END),
       SUM(CASE WHEN latency_ms <= 5000 THEN 1 ELSE 0 END),
       SUM(CASE WHEN latency_ms <= 10000 THEN 1 ELSE 0 END),
       SUM(CASE WHEN latency_ms <= 30000 THEN 1 ELSE 0 END),
       SUM(CASE WHEN latency_ms <= 60000 THEN 1 ELSE 0 END)
FROM analytics_events
GROUP BY api_id, (occurred_at_ms / 60000) * 60000, source,
         COALESCE(endpoint_method || ' ' || endpoint_pattern, '-'), status, COALESCE(country, '-');
