-- Sensors, their raw readings, and per-minute rollups of readings past the raw retention.
CREATE TABLE sensors (
    id          INTEGER PRIMARY KEY,
    -- NULL: registered by the tutorial's /ws/sensor_data/ in guest mode (owned by nobody).
    owner_id    INTEGER REFERENCES users(id) ON DELETE SET NULL,
    name        TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    unit        TEXT    NOT NULL DEFAULT '',
    -- The physical range: readings outside it are refused.
    range_min   REAL,
    range_max   REAL,
    -- Thresholds the dashboard highlights; readings outside them are still stored.
    alert_low   REAL,
    alert_high  REAL,
    -- SHA-256 of the sensor's own token (`sbs_...`), which may only post this sensor's readings.
    token_hash  TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

-- Raw readings within the retention (`--sensor-raw-retention-secs`).
CREATE TABLE sensor_readings (
    id          INTEGER PRIMARY KEY,
    sensor_id   INTEGER NOT NULL REFERENCES sensors(id) ON DELETE CASCADE,
    -- Milliseconds since the Unix epoch.
    ts          INTEGER NOT NULL,
    value       REAL    NOT NULL
);

CREATE INDEX sensor_readings_by_time ON sensor_readings (sensor_id, ts);

-- One row per sensor and minute for readings older than the retention.
CREATE TABLE sensor_minutes (
    sensor_id   INTEGER NOT NULL REFERENCES sensors(id) ON DELETE CASCADE,
    -- The minute's start, in milliseconds since the Unix epoch (a multiple of 60000).
    minute      INTEGER NOT NULL,
    min         REAL    NOT NULL,
    max         REAL    NOT NULL,
    avg         REAL    NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (sensor_id, minute)
) WITHOUT ROWID;
