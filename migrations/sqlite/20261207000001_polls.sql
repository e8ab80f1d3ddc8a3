-- Live polls (src/polls): a poll belongs to a room; its options are numbered from 0.
CREATE TABLE polls (
    id            INTEGER PRIMARY KEY,
    room_id       INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    -- Who made it: an identity key (`u:<id>` or `g:<guest>`) and the name shown.
    creator_key   TEXT    NOT NULL,
    creator_name  TEXT    NOT NULL,
    question      TEXT    NOT NULL CHECK (length(question) BETWEEN 1 AND 300),
    -- Most options one voter may choose: 1 for a single-choice poll.
    max_choices   INTEGER NOT NULL CHECK (max_choices >= 1),
    anonymous     INTEGER NOT NULL DEFAULT 0,
    -- When results are shown: 'always', 'voted' (to those who voted) or 'closed'.
    show_results  TEXT    NOT NULL CHECK (show_results IN ('always', 'voted', 'closed')),
    closes_at     INTEGER,
    closed_at     INTEGER,
    created_at    INTEGER NOT NULL
);

CREATE TABLE poll_options (
    poll_id  INTEGER NOT NULL REFERENCES polls(id) ON DELETE CASCADE,
    idx      INTEGER NOT NULL CHECK (idx BETWEEN 0 AND 19),
    text     TEXT    NOT NULL CHECK (length(text) BETWEEN 1 AND 200),
    PRIMARY KEY (poll_id, idx)
) WITHOUT ROWID;

-- One row per voter and poll: one person, one vote. A vote takes this row first (its write,
-- on PostgreSQL its row lock), so a person's votes from several tabs or nodes follow each
-- other; then it replaces that voter's choices.
CREATE TABLE poll_voters (
    poll_id     INTEGER NOT NULL REFERENCES polls(id) ON DELETE CASCADE,
    voter_key   TEXT    NOT NULL,
    -- Shown in a named poll; never sent for an anonymous one.
    voter_name  TEXT    NOT NULL,
    voted_at    INTEGER NOT NULL,
    PRIMARY KEY (poll_id, voter_key)
) WITHOUT ROWID;

CREATE TABLE poll_choices (
    poll_id     INTEGER NOT NULL,
    voter_key   TEXT    NOT NULL,
    option_idx  INTEGER NOT NULL,
    PRIMARY KEY (poll_id, voter_key, option_idx),
    FOREIGN KEY (poll_id, voter_key) REFERENCES poll_voters(poll_id, voter_key) ON DELETE CASCADE,
    FOREIGN KEY (poll_id, option_idx) REFERENCES poll_options(poll_id, idx) ON DELETE CASCADE
) WITHOUT ROWID;

CREATE INDEX poll_choices_by_option ON poll_choices (poll_id, option_idx);
