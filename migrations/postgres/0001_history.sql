-- The inference history: one row per prediction (a batch item, a v2 input and a shadow run each
-- have their own). Times are microseconds since the Unix epoch, in the same type on both databases.
-- Identity ids are never reused, and replicas sharing the database draw from one sequence.
CREATE TABLE predictions (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_us BIGINT NOT NULL,
    replica TEXT NOT NULL,
    request_id TEXT NOT NULL,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    routing TEXT NOT NULL,
    role TEXT NOT NULL,
    item BIGINT,
    input_sha256 TEXT NOT NULL,
    text_length BIGINT,
    text_sha256 TEXT,
    text TEXT,
    label TEXT,
    confidence DOUBLE PRECISION,
    top_k TEXT,
    latency_ms DOUBLE PRECISION NOT NULL,
    cache_hit BOOLEAN NOT NULL,
    status BIGINT NOT NULL,
    error TEXT,
    sticky_key_sha256 TEXT
);
-- Newest first, and the keyset cursor (at_us, id).
CREATE INDEX predictions_at ON predictions (at_us, id);
-- /stats and the version filter over a time window.
CREATE INDEX predictions_version_at ON predictions (model, version, at_us);

-- Every change to what a server serves (the deployment log), from every replica sharing the store.
CREATE TABLE deployments (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    replica TEXT NOT NULL,
    by_whom TEXT NOT NULL,
    action TEXT NOT NULL,
    model TEXT NOT NULL,
    version TEXT,
    alias TEXT,
    from_version TEXT,
    reason TEXT,
    ok BOOLEAN NOT NULL,
    error TEXT,
    duration_ms DOUBLE PRECISION NOT NULL
);
CREATE INDEX deployments_at ON deployments (at_ms, id);
