-- Accounts, sessions, API tokens, private rooms and read markers.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    -- argon2id, PHC string format.
    password_hash TEXT    NOT NULL,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);

CREATE TABLE sessions (
    -- SHA-256 of the cookie's token: a copy of the database does not hold usable sessions.
    token_hash  TEXT    PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    token_hash   TEXT    NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);

ALTER TABLE rooms ADD COLUMN is_private INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rooms ADD COLUMN created_by INTEGER REFERENCES users(id) ON DELETE SET NULL;

-- Members of private rooms.
CREATE TABLE room_members (
    room_id   INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    user_id   INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    added_at  INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;

-- The last offset each user has read in each room, for unread counts.
CREATE TABLE room_reads (
    user_id   INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    room_id   INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    last_read INTEGER NOT NULL,
    PRIMARY KEY (user_id, room_id)
) WITHOUT ROWID;
