-- A document is named once in its room (the Yjs endpoint finds it by `<room>/<name>`).
CREATE UNIQUE INDEX documents_unique_name ON documents (room_id, name) WHERE deleted_at IS NULL;
