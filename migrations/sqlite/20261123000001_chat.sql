-- Rooms and their durable chat history.
CREATE TABLE rooms (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    -- Changes only when the room's history is reset; clients resume within one epoch.
    epoch       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE messages (
    room_id     INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    -- The message's offset in its room: 1, 2, 3, ... with no gaps.
    seq         INTEGER NOT NULL,
    -- The publisher's idempotency key.
    client_id   TEXT    NOT NULL,
    author      TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    ts          INTEGER NOT NULL,
    PRIMARY KEY (room_id, seq)
) WITHOUT ROWID;

CREATE UNIQUE INDEX messages_client_id ON messages (room_id, client_id);

INSERT INTO rooms (name, epoch, created_at)
VALUES ('lobby', lower(hex(randomblob(8))), CAST(strftime('%s', 'now') AS INTEGER) * 1000);
