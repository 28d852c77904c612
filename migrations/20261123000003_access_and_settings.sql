-- Access control: members (a JWT subject's role in a workspace) and API keys (a secret
-- scoped to one workspace with one role). Roles: owner, admin, editor, viewer.

CREATE TABLE members (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    -- The JWT `sub` this membership is for.
    subject       TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    UNIQUE (workspace_id, subject)
);
CREATE INDEX members_by_subject ON members (subject);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    -- The first characters of the key, shown in listings so people can tell keys apart.
    prefix        TEXT NOT NULL,
    -- SHA-256 of the whole key, hex. Keys are 256 random bits, so a fast hash is enough:
    -- there is nothing to brute-force that is cheaper than guessing the key itself.
    key_hash      TEXT NOT NULL UNIQUE,
    created_at    TEXT NOT NULL,
    last_used_at  TEXT,
    revoked_at    TEXT
);
CREATE INDEX api_keys_by_workspace ON api_keys (workspace_id, id);

-- Settings that reach the snapshot: the workspace's plan and rate limit, and the API's
-- shared response settings (base headers, default delay, CORS) as JSON
-- (edgemock_shared::ApiSettings).
ALTER TABLE workspaces ADD COLUMN plan TEXT NOT NULL DEFAULT 'free';
ALTER TABLE workspaces ADD COLUMN rate_limit_rpm BIGINT;
ALTER TABLE apis ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';

-- Deleted APIs: the edge must drop their snapshots (an outbox like apis.published_version),
-- and a slug created again must continue the old version numbers, because the edge never
-- replaces a snapshot with a lower version. Rows stay after removal for that reason.
CREATE TABLE retired_apis (
    slug             TEXT PRIMARY KEY,
    last_version     BIGINT NOT NULL,
    removed          INTEGER NOT NULL DEFAULT 0,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  TEXT,
    last_error       TEXT,
    retired_at       TEXT NOT NULL
);
CREATE INDEX retired_apis_pending ON retired_apis (removed, next_attempt_at);

-- GraphQL operations (/mock-graphql/{apiSlug}) and WebSocket mocks (/ws/{apiSlug}/…) of an
-- API, each stored whole as JSON (edgemock_shared::GraphqlOperation, WebSocketEndpoint),
-- with the name or path copied out for listing.
CREATE TABLE graphql_operations (
    id          TEXT PRIMARY KEY,
    api_id      TEXT NOT NULL REFERENCES apis (id) ON DELETE CASCADE,
    label       TEXT NOT NULL,
    definition  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX graphql_operations_by_api ON graphql_operations (api_id, id);

CREATE TABLE websocket_endpoints (
    id          TEXT PRIMARY KEY,
    api_id      TEXT NOT NULL REFERENCES apis (id) ON DELETE CASCADE,
    label       TEXT NOT NULL,
    definition  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX websocket_endpoints_by_api ON websocket_endpoints (api_id, id);

-- Webhook subscriptions per workspace (deliveries come with the operations milestone).
-- The secret signs deliveries (Standard Webhooks: "whsec_" + base64 of 32 random bytes).
CREATE TABLE webhooks (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    url          TEXT NOT NULL,
    -- JSON array of event types, or ["*"].
    events       TEXT NOT NULL,
    description  TEXT,
    secret       TEXT NOT NULL,
    active       INTEGER NOT NULL DEFAULT 1,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX webhooks_by_workspace ON webhooks (workspace_id, id);
