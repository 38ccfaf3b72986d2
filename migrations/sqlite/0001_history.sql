-- The inference history: one row per prediction (a batch item, a v2 input and a shadow run each
-- have their own). Times are microseconds since the Unix epoch, in the same type on both databases.
-- AUTOINCREMENT: an id is never reused after pruning, so a pagination cursor never matches a new row.
CREATE TABLE predictions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_us INTEGER NOT NULL,
    replica TEXT NOT NULL,
    request_id TEXT NOT NULL,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    routing TEXT NOT NULL,
    role TEXT NOT NULL,
    item INTEGER,
    input_sha256 TEXT NOT NULL,
    text_length INTEGER,
    text_sha256 TEXT,
    text TEXT,
    label TEXT,
    confidence REAL,
    top_k TEXT,
    latency_ms REAL NOT NULL,
    cache_hit BOOLEAN NOT NULL,
    status INTEGER NOT NULL,
    error TEXT,
    sticky_key_sha256 TEXT
);
-- Newest first, and the keyset cursor (at_us, id).
CREATE INDEX predictions_at ON predictions (at_us, id);
-- /stats and the version filter over a time window.
CREATE INDEX predictions_version_at ON predictions (model, version, at_us);

-- Every change to what a server serves (the deployment log), from every replica sharing the store.
CREATE TABLE deployments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
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
    duration_ms REAL NOT NULL
);
CREATE INDEX deployments_at ON deployments (at_ms, id);
