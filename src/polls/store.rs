//! Polls' queries, on both engines. One person, one vote is the database's: a voter has one
//! row per poll (`poll_voters`, its primary key), taken first by every vote, and their choices
//! (`poll_choices`) are replaced in the same transaction, with the poll's maximum checked
//! there. A hundred votes at once from one person's tabs, or from two nodes, leave one vote.

use super::protocol::{check_choices, PollError, PollSpec, ShowResults};
use crate::store::{now_ms, on_pool, BeginWrite, Store, StoreError};

/// A poll as stored: what its creator asked for, and who, where and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Poll {
    pub id: i64,
    pub room_id: i64,
    pub creator_key: String,
    pub creator_name: String,
    pub spec: PollSpec,
    pub closed_at: Option<i64>,
    pub created_at: i64,
}

impl Poll {
    /// Closed by hand, or past its closing time at `now`.
    pub fn closed(&self, now: i64) -> bool {
        self.closed_at.is_some() || self.spec.closes_at.is_some_and(|at| at <= now)
    }
}

/// Who voted: a person's identity key and the name shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter<'a> {
    pub key: &'a str,
    pub name: &'a str,
}

/// A poll's counts: per option, and how many people voted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    pub options: Vec<u64>,
    pub voters: u64,
}

/// A tally as taken: its number (each tally of a poll gets the next), the counts, and for a
/// named poll who chose what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub version: u64,
    pub counts: Counts,
    pub names: Option<Vec<Vec<String>>>,
}

/// What [`Store::take_tally`] did: took one, or found one taken less than a window ago, and
/// says how many milliseconds are left of that window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tallied {
    Taken(Taken),
    Wait(u64),
}

/// Why a poll query failed: the poll's rules, or the store.
#[derive(Debug, thiserror::Error)]
pub enum PollStoreError {
    #[error(transparent)]
    Rule(#[from] PollError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for PollStoreError {
    fn from(error: sqlx::Error) -> Self {
        PollStoreError::Store(error.into())
    }
}

/// A row of `polls`, as read.
type PollRow = (i64, i64, String, String, String, i64, i64, String, Option<i64>, Option<i64>, i64);

const POLL_COLUMNS: &str = "id, room_id, creator_key, creator_name, question, max_choices, anonymous, show_results,
     closes_at, closed_at, created_at";

fn poll(row: PollRow, options: Vec<String>) -> Poll {
    let (
        id,
        room_id,
        creator_key,
        creator_name,
        question,
        max_choices,
        anonymous,
        show,
        closes_at,
        closed_at,
        created_at,
    ) = row;
    let spec = PollSpec {
        question,
        options,
        max_choices: max_choices.clamp(1, u32::MAX as i64) as u32,
        anonymous: anonymous != 0,
        // The column's CHECK allows only the three.
        show_results: ShowResults::parse(&show).unwrap_or(ShowResults::Closed),
        closes_at,
    };
    Poll { id, room_id, creator_key, creator_name, spec, closed_at, created_at }
}

/// How many chose each option, and how many voted.
const PER_OPTION: &str = "SELECT option_idx, COUNT(*) FROM poll_choices WHERE poll_id = $1 GROUP BY option_idx";
const VOTERS: &str = "SELECT COUNT(*) FROM poll_voters WHERE poll_id = $1";
/// Who chose what, by option, then name.
const NAMES: &str = "SELECT c.option_idx, v.voter_name FROM poll_choices c
                     JOIN poll_voters v ON v.poll_id = c.poll_id AND v.voter_key = c.voter_key
                     WHERE c.poll_id = $1 ORDER BY c.option_idx, v.voter_name";

/// A poll's counts, read on `$conn` (a connection or transaction of either engine).
macro_rules! read_counts {
    ($conn:expr, $poll:expr, $options:expr) => {{
        let rows: Vec<(i64, i64)> = sqlx::query_as(PER_OPTION).bind($poll).fetch_all(&mut *$conn).await?;
        let voters: i64 = sqlx::query_scalar(VOTERS).bind($poll).fetch_one(&mut *$conn).await?;
        let mut per_option = vec![0u64; $options];
        for (option, count) in rows {
            if let Some(slot) = per_option.get_mut(option as usize) {
                *slot = count as u64;
            }
        }
        Counts { options: per_option, voters: voters as u64 }
    }};
}

/// Who chose what in a poll, per option, read on `$conn`.
macro_rules! read_names {
    ($conn:expr, $poll:expr, $options:expr) => {{
        let rows: Vec<(i64, String)> = sqlx::query_as(NAMES).bind($poll).fetch_all(&mut *$conn).await?;
        let mut names = vec![Vec::new(); $options];
        for (option, name) in rows {
            if let Some(slot) = names.get_mut(option as usize) {
                slot.push(name);
            }
        }
        names
    }};
}

impl Store {
    /// Store a poll in `room_id`; the spec is checked here too.
    pub async fn create_poll(&self, room_id: i64, creator: &Voter<'_>, spec: PollSpec) -> Result<Poll, PollStoreError> {
        let now = now_ms();
        let spec = spec.checked(now)?;
        let insert = "INSERT INTO polls (room_id, creator_key, creator_name, question, max_choices, anonymous,
                          show_results, closes_at, created_at)
                      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id";
        let option = "INSERT INTO poll_options (poll_id, idx, text) VALUES ($1, $2, $3)";
        let id: i64 = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let id: i64 = sqlx::query_scalar(insert)
                .bind(room_id)
                .bind(creator.key)
                .bind(creator.name)
                .bind(&spec.question)
                .bind(i64::from(spec.max_choices))
                .bind(i64::from(spec.anonymous))
                .bind(spec.show_results.as_str())
                .bind(spec.closes_at)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
            for (idx, text) in spec.options.iter().enumerate() {
                sqlx::query(option).bind(id).bind(idx as i64).bind(text).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            id
        });
        Ok(Poll {
            id,
            room_id,
            creator_key: creator.key.to_owned(),
            creator_name: creator.name.to_owned(),
            spec,
            closed_at: None,
            created_at: now,
        })
    }

    /// A poll with its options.
    pub async fn poll(&self, id: i64) -> Result<Option<Poll>, StoreError> {
        let select = format!("SELECT {POLL_COLUMNS} FROM polls WHERE id = $1");
        let options = "SELECT text FROM poll_options WHERE poll_id = $1 ORDER BY idx";
        let (row, options): (Option<PollRow>, Vec<String>) = on_pool!(self, pool => (
            sqlx::query_as(&select).bind(id).fetch_optional(pool).await?,
            sqlx::query_scalar(options).bind(id).fetch_all(pool).await?,
        ));
        Ok(row.map(|row| poll(row, options)))
    }

    /// Record `voter`'s choices in a poll, replacing any earlier ones: checked against the poll
    /// (open, known options, at most its maximum) in the same transaction that writes them.
    pub async fn vote(&self, poll_id: i64, voter: &Voter<'_>, choices: Vec<u32>) -> Result<Vec<u32>, PollStoreError> {
        let now = now_ms();
        // On PostgreSQL the poll's row is read FOR SHARE: a close that commits first is seen,
        // and a close waits for the votes already under way.
        let read = self.pick(
            "SELECT max_choices, closes_at, closed_at, (SELECT COUNT(*) FROM poll_options WHERE poll_id = $1)
             FROM polls WHERE id = $1",
            "SELECT max_choices, closes_at, closed_at, (SELECT COUNT(*) FROM poll_options WHERE poll_id = $1)
             FROM polls WHERE id = $1 FOR SHARE",
        );
        let voter_row = "INSERT INTO poll_voters (poll_id, voter_key, voter_name, voted_at) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (poll_id, voter_key) DO UPDATE SET voter_name = excluded.voter_name,
                             voted_at = excluded.voted_at";
        let clear = "DELETE FROM poll_choices WHERE poll_id = $1 AND voter_key = $2";
        let choose = "INSERT INTO poll_choices (poll_id, voter_key, option_idx) VALUES ($1, $2, $3)";
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let found: Option<(i64, Option<i64>, Option<i64>, i64)> =
                sqlx::query_as(read).bind(poll_id).fetch_optional(&mut *tx).await?;
            let Some((max_choices, closes_at, closed_at, options)) = found else {
                return Err(PollError::UnknownPoll.into());
            };
            if closed_at.is_some() || closes_at.is_some_and(|at| at <= now) {
                return Err(PollError::Closed.into());
            }
            let choices = check_choices(choices, options as usize, max_choices.clamp(1, u32::MAX as i64) as u32)?;
            // The voter's row first: a second vote of theirs waits here for this one.
            sqlx::query(voter_row).bind(poll_id).bind(voter.key).bind(voter.name).bind(now).execute(&mut *tx).await?;
            sqlx::query(clear).bind(poll_id).bind(voter.key).execute(&mut *tx).await?;
            for &choice in &choices {
                sqlx::query(choose).bind(poll_id).bind(voter.key).bind(i64::from(choice)).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(choices)
        })
    }

    /// Close a poll now. False when it was closed already (or does not exist).
    pub async fn close_poll(&self, poll_id: i64) -> Result<bool, StoreError> {
        let sql = "UPDATE polls SET closed_at = $1 WHERE id = $2 AND closed_at IS NULL";
        let done =
            on_pool!(self, pool => sqlx::query(sql).bind(now_ms()).bind(poll_id).execute(pool).await?.rows_affected());
        Ok(done == 1)
    }

    /// A poll's counts, per option (of `options`), and its voters.
    pub async fn poll_counts(&self, poll_id: i64, options: usize) -> Result<Counts, StoreError> {
        Ok(on_pool!(self, pool => {
            let mut conn = pool.acquire().await?;
            read_counts!(conn, poll_id, options)
        }))
    }

    /// Take a tally of a poll of `options` options: number it, and read its counts (and, when
    /// `named`, who chose what) in the same transaction, after the number: a higher number never
    /// carries older counts, whichever node took it. Unless `force`, at most one tally per
    /// `window_ms` across every node: a tally less than that ago answers `Wait`.
    pub async fn take_tally(
        &self,
        poll_id: i64,
        options: usize,
        named: bool,
        window_ms: i64,
        force: bool,
    ) -> Result<Tallied, StoreError> {
        let now = now_ms();
        let bump = "UPDATE polls SET version = version + 1, tallied_at = $2
                    WHERE id = $1 AND ($3 OR tallied_at <= $2 - $4 OR tallied_at > $2) RETURNING version";
        let last = "SELECT tallied_at FROM polls WHERE id = $1";
        let taken = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let version: Option<i64> = sqlx::query_scalar(bump)
                .bind(poll_id)
                .bind(now)
                .bind(force)
                .bind(window_ms)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(version) = version else {
                let at: Option<i64> = sqlx::query_scalar(last).bind(poll_id).fetch_optional(&mut *tx).await?;
                tx.rollback().await?;
                let Some(at) = at else { return Err(sqlx::Error::RowNotFound.into()) };
                return Ok(Tallied::Wait((at + window_ms - now).clamp(1, window_ms) as u64));
            };
            let counts = read_counts!(tx, poll_id, options);
            let names = if named { Some(read_names!(tx, poll_id, options)) } else { None };
            tx.commit().await?;
            Taken { version: version as u64, counts, names }
        });
        Ok(Tallied::Taken(taken))
    }

    /// The latest tally's number and the counts now (a subscriber's first tally: at least as
    /// new as the tally of that number).
    pub async fn read_tally(&self, poll_id: i64, options: usize, named: bool) -> Result<Taken, StoreError> {
        let version = "SELECT version FROM polls WHERE id = $1";
        Ok(on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let version: i64 = sqlx::query_scalar(version).bind(poll_id).fetch_one(&mut *tx).await?;
            let counts = read_counts!(tx, poll_id, options);
            let names = if named { Some(read_names!(tx, poll_id, options)) } else { None };
            tx.commit().await?;
            Taken { version: version as u64, counts, names }
        }))
    }

    /// The polls of a room.
    pub async fn polls_in_room(&self, room_id: i64) -> Result<Vec<i64>, StoreError> {
        let sql = "SELECT id FROM polls WHERE room_id = $1";
        Ok(on_pool!(self, pool => sqlx::query_scalar(sql).bind(room_id).fetch_all(pool).await?))
    }

    /// The names of everyone who voted in a poll (for turnout: who of those online voted).
    pub async fn voter_names(&self, poll_id: i64) -> Result<Vec<String>, StoreError> {
        let sql = "SELECT voter_name FROM poll_voters WHERE poll_id = $1";
        Ok(on_pool!(self, pool => sqlx::query_scalar(sql).bind(poll_id).fetch_all(pool).await?))
    }

    /// Close every poll whose closing time has come; returns those this call closed (on several
    /// nodes, each is closed by one).
    pub async fn close_due_polls(&self) -> Result<Vec<i64>, StoreError> {
        let due = "SELECT id FROM polls WHERE closed_at IS NULL AND closes_at IS NOT NULL AND closes_at <= $1 LIMIT 1";
        let close = "UPDATE polls SET closed_at = closes_at
                     WHERE closed_at IS NULL AND closes_at IS NOT NULL AND closes_at <= $1 RETURNING id";
        let now = now_ms();
        // Most of the time none is due: a read, not a write (SQLite would take its write lock).
        Ok(on_pool!(self, pool => {
            let any: Option<i64> = sqlx::query_scalar(due).bind(now).fetch_optional(pool).await?;
            match any {
                Some(_) => sqlx::query_scalar(close).bind(now).fetch_all(pool).await?,
                None => Vec::new(),
            }
        }))
    }

    /// The options `voter_key` chose in a poll (none: not voted).
    pub async fn choices_of(&self, poll_id: i64, voter_key: &str) -> Result<Vec<u32>, StoreError> {
        let sql = "SELECT option_idx FROM poll_choices WHERE poll_id = $1 AND voter_key = $2 ORDER BY option_idx";
        let rows: Vec<i64> =
            on_pool!(self, pool => sqlx::query_scalar(sql).bind(poll_id).bind(voter_key).fetch_all(pool).await?);
        Ok(rows.into_iter().map(|c| c as u32).collect())
    }

    /// Who chose what, per option, by name, for a named poll (never asked of an anonymous one).
    pub async fn named_votes(&self, poll_id: i64, options: usize) -> Result<Vec<Vec<String>>, StoreError> {
        Ok(on_pool!(self, pool => {
            let mut conn = pool.acquire().await?;
            read_names!(conn, poll_id, options)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::each_engine;

    fn spec(options: &[&str], max_choices: u32) -> PollSpec {
        PollSpec {
            question: "Lunch?".into(),
            options: options.iter().map(|o| o.to_string()).collect(),
            max_choices,
            anonymous: false,
            show_results: ShowResults::Always,
            closes_at: None,
        }
    }

    const ADA: Voter<'static> = Voter { key: "u:1", name: "ada" };
    const BO: Voter<'static> = Voter { key: "g:b0", name: "bo (guest b0)" };

    #[tokio::test]
    async fn a_vote_replaces_the_voters_last_one_and_counts_add_up() {
        for store in each_engine().await {
            let engine = store.engine();
            let lobby = store.room("lobby").await.unwrap().unwrap();
            let made = store.create_poll(lobby.id, &ADA, spec(&["pizza", "soup", "salad"], 2)).await.unwrap();
            assert_eq!(store.poll(made.id).await.unwrap().as_ref(), Some(&made), "{engine:?}: reads back as made");
            store.vote(made.id, &ADA, vec![0]).await.unwrap();
            store.vote(made.id, &BO, vec![2, 0]).await.unwrap();
            store.vote(made.id, &ADA, vec![1]).await.unwrap();
            let counts = store.poll_counts(made.id, 3).await.unwrap();
            assert_eq!(counts, Counts { options: vec![1, 1, 1], voters: 2 }, "{engine:?}");
            assert_eq!(store.choices_of(made.id, BO.key).await.unwrap(), vec![0, 2]);
            let names = store.named_votes(made.id, 3).await.unwrap();
            assert_eq!(
                names,
                vec![vec!["bo (guest b0)".to_owned()], vec!["ada".to_owned()], vec!["bo (guest b0)".to_owned()]]
            );

            // Refused, and nothing changed: too many, unknown, none, an unknown poll.
            let refused = [
                (made.id, vec![0, 1, 2], "too_many_choices"),
                (made.id, vec![3], "unknown_option"),
                (made.id, vec![], "invalid_field"),
                (made.id + 99, vec![0], "unknown_poll"),
            ];
            for (poll, choices, code) in refused {
                match store.vote(poll, &ADA, choices).await {
                    Err(PollStoreError::Rule(rule)) => {
                        assert_eq!(serde_json::to_value(rule.code()).unwrap(), code, "{engine:?}")
                    }
                    other => panic!("{engine:?}: expected {code}, got {other:?}"),
                }
            }
            assert_eq!(store.poll_counts(made.id, 3).await.unwrap(), counts);

            // Closed: votes are refused; closing twice says so.
            assert!(store.close_poll(made.id).await.unwrap());
            assert!(!store.close_poll(made.id).await.unwrap());
            assert!(matches!(store.vote(made.id, &BO, vec![1]).await, Err(PollStoreError::Rule(PollError::Closed))));
            assert!(store.poll(made.id).await.unwrap().unwrap().closed(now_ms()));
        }
    }

    /// A hundred votes at once from one person (tabs, or nodes on one PostgreSQL) leave one.
    #[tokio::test]
    async fn a_hundred_votes_at_once_from_one_person_leave_one_vote() {
        for store in each_engine().await {
            let engine = store.engine();
            let lobby = store.room("lobby").await.unwrap().unwrap();
            let single = store.create_poll(lobby.id, &ADA, spec(&["a", "b", "c"], 1)).await.unwrap();
            let multiple = store.create_poll(lobby.id, &ADA, spec(&["a", "b", "c"], 2)).await.unwrap();
            let mut votes = Vec::new();
            for i in 0..100u32 {
                let store = store.store.clone();
                let (single, multiple) = (single.id, multiple.id);
                votes.push(tokio::spawn(async move {
                    let one = store.vote(single, &BO, vec![i % 3]).await;
                    let two = store.vote(multiple, &BO, vec![i % 3, (i + 1) % 3]).await;
                    (one.is_ok(), two.is_ok())
                }));
            }
            for vote in votes {
                assert_eq!(vote.await.unwrap(), (true, true), "{engine:?}: every vote was taken in turn");
            }
            let counts = store.poll_counts(single.id, 3).await.unwrap();
            assert_eq!((counts.voters, counts.options.iter().sum::<u64>()), (1, 1), "{engine:?}: one vote");
            let counts = store.poll_counts(multiple.id, 3).await.unwrap();
            assert_eq!((counts.voters, counts.options.iter().sum::<u64>()), (1, 2), "{engine:?}: one vote of two");
        }
    }
}
