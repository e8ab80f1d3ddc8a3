-- The ids of `reading` frames already stored, per sensor: a retry after a lost `ack` is
-- answered as a duplicate, not stored twice. Kept as long as raw readings are.
CREATE TABLE sensor_posts (
    sensor_id   INTEGER NOT NULL REFERENCES sensors(id) ON DELETE CASCADE,
    client_id   TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (sensor_id, client_id)
) WITHOUT ROWID;

CREATE INDEX sensor_posts_by_age ON sensor_posts (created_at);
