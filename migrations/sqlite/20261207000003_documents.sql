-- Shared documents (src/documents): a room's documents. Each document's edits are its durable
-- topic `doc:<id>` in `events` (the update log); a snapshot folds the log up to an offset.
CREATE TABLE documents (
    id            INTEGER PRIMARY KEY,
    room_id       INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    name          TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    -- Who made it: an identity key (`u:<id>` or `g:<guest>`) and the name shown.
    creator_key   TEXT    NOT NULL,
    creator_name  TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    -- Deleted documents are gone from lists and topics; their log goes with them.
    deleted_at    INTEGER
);

CREATE INDEX documents_by_room ON documents (room_id) WHERE deleted_at IS NULL;

-- The document's state as one Yjs update, folding its log up to offset `upto`.
CREATE TABLE document_snapshots (
    document_id  INTEGER NOT NULL PRIMARY KEY REFERENCES documents(id) ON DELETE CASCADE,
    upto         INTEGER NOT NULL,
    state        BLOB    NOT NULL,
    taken_at     INTEGER NOT NULL
);
