-- Live polls' tallies (src/polls/server.rs): each tally sent bumps `version`, so that every
-- node numbers them alike and a client keeps the newest; `tallied_at` (ms) spaces them out
-- across every node (at most one tally per poll per window).
ALTER TABLE polls ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE polls ADD COLUMN tallied_at BIGINT NOT NULL DEFAULT 0;
-- Polls that close by themselves, found by every node's closer.
CREATE INDEX polls_closing ON polls (closes_at) WHERE closed_at IS NULL AND closes_at IS NOT NULL;
