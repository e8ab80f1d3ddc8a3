-- Secrets of the installation itself, made once on first use: the key that signs guests'
-- cookies, so that a guest keeps their identity across restarts.
CREATE TABLE server_keys (
    name       TEXT    PRIMARY KEY,
    secret     TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
