-- The log of every durable topic (src/store/events.rs): each event at its offset in its topic,
-- with its publisher's id and the feature's payload. Chat's messages move here, under their
-- room's topic, with their offsets, ids and times unchanged.
CREATE TABLE events (
    topic       TEXT    NOT NULL,
    -- The event's offset in its topic: 1, 2, 3, ... with no gaps.
    seq         INTEGER NOT NULL,
    -- The publisher's idempotency key.
    client_id   TEXT    NOT NULL,
    payload     TEXT    NOT NULL CHECK (json_valid(payload)),
    ts          INTEGER NOT NULL,
    PRIMARY KEY (topic, seq)
) WITHOUT ROWID;

CREATE UNIQUE INDEX events_client_id ON events (topic, client_id);

INSERT INTO events (topic, seq, client_id, payload, ts)
SELECT 'chat:' || r.name, m.seq, m.client_id, json_object('author', m.author, 'text', m.body), m.ts
FROM messages m JOIN rooms r ON r.id = m.room_id;

DROP TABLE messages;
