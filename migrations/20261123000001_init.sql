-- edgemock schema, version 1.
-- Written in the SQL that SQLite and PostgreSQL share, so one migration set serves both
-- (the control plane talks to either through sqlx's Any driver). Ids are UUIDv7 text,
-- timestamps RFC 3339 UTC text with fixed width, so both sort by creation time.
-- Never edit an applied migration: add a new file.

CREATE TABLE workspaces (
    id          TEXT PRIMARY KEY,
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE apis (
    id                  TEXT PRIMARY KEY,
    workspace_id        TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    -- Globally unique: it is the {apiSlug} of /mock/{apiSlug}/... at the edge.
    slug                TEXT NOT NULL UNIQUE,
    name                TEXT NOT NULL,
    -- The snapshot version: bumped in the same transaction as every change to the API.
    version             BIGINT NOT NULL DEFAULT 1,
    -- Publish state: what reached the edge, when, and the last failure if any.
    published_version   BIGINT NOT NULL DEFAULT 0,
    published_at        TEXT,
    publish_error       TEXT,
    publish_attempts    BIGINT NOT NULL DEFAULT 0,
    next_publish_at     TEXT,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);
CREATE INDEX apis_by_workspace ON apis (workspace_id, id);
CREATE INDEX apis_unpublished ON apis (published_version, version);

CREATE TABLE endpoints (
    id          TEXT PRIMARY KEY,
    api_id      TEXT NOT NULL REFERENCES apis (id) ON DELETE CASCADE,
    method      TEXT NOT NULL,
    path        TEXT NOT NULL,
    -- The whole edgemock_shared::EndpointDefinition as JSON; method and path are copied
    -- out above for listing and filtering.
    definition  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX endpoints_by_api ON endpoints (api_id, id);
